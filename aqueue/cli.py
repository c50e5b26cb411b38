"""The ``aqueue`` command: run workers and look at queues.

Every option also reads an ``AQUEUE_*`` environment variable (shown in ``--help``); a flag
given on the command line wins over the environment.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from ._app import App
from ._events import named_queues as _known_queues
from ._logging import JobLogFilter, JsonLogFormatter
from ._processes import RECYCLE_EXIT, Supervisor
from ._version import __version__, pip_install
from ._worker import Worker
from .exceptions import AqueueError

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
logger = logging.getLogger("aqueue.cli")


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the :class:`App` it names."""
    module_name, sep, attribute = target.partition(":")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        # A file path is what a newcomer types first; the worker imports modules, not files.
        raise click.BadParameter(
            f"{module_name!r} is a file path: name the module as Python imports it, "
            f"{_import_path(module_name, attribute or 'app')}",
            param_hint="APP",
        )
    if not module_name:
        raise click.BadParameter(f"{target!r} is not of the form 'module:app'", param_hint="APP")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name != missing and not module_name.startswith(f"{missing}."):
            # The module was found, but something it imports is not installed here: most often
            # the command runs in another environment than the project's.
            raise click.BadParameter(
                f"module {module_name!r} imports {missing!r}, which is not installed in the "
                f"environment of {sys.executable}: install it there, or run the aqueue of the "
                "project's environment",
                param_hint="APP",
            ) from None
        raise click.BadParameter(
            f"cannot import module {module_name!r} ({exc}); run from the project's directory "
            "or install it",
            param_hint="APP",
        ) from None
    # What to write instead, when the module holds apps.
    apps = [name for name, value in vars(module).items() if isinstance(value, App)]
    candidates = " or ".join(f"'{module_name}:{name}'" for name in apps)
    hint = f"; did you mean {candidates}?" if candidates else ""
    if not sep or not attribute:
        raise click.BadParameter(
            f"{target!r} is not of the form 'module:app'{hint}", param_hint="APP"
        )
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        found = "missing" if app is None else type(app).__name__
        raise click.BadParameter(
            f"{module_name}.{attribute} is {found}, not an aqueue.App{hint}", param_hint="APP"
        )
    return app


def _import_path(path: str, attribute: str) -> str:
    """How to name the module at ``path`` (a file or package) for the worker to import it."""
    relative = os.path.relpath(path.removesuffix(".py"))
    if relative.startswith(os.pardir):
        directory, module = os.path.split(os.path.abspath(relative))
        return f"'{module}:{attribute}' run from {directory}"
    return f"'{relative.replace(os.sep, '.')}:{attribute}' from this directory"


def run_async(main: Callable[[], Coroutine[Any, Any, T]], loop: str) -> T:
    """Run ``main()`` on uvloop (when available and not opted out) or asyncio."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise click.UsageError("--loop uvloop needs uvloop: pip install uvloop") from None
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _fail_cleanly(func: Callable[..., None]) -> Callable[..., None]:
    # Errors a user can fix get one line on stderr and exit 1, never a traceback.
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except AqueueError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


app_argument = click.argument("app_path", metavar="APP", envvar="AQUEUE_APP")
queue_option = click.option(
    "-q",
    "--queue",
    "queues",
    multiple=True,
    show_envvar=True,
    envvar="AQUEUE_QUEUES",
    help="Queue to use; repeat for several. Default: every queue the app's tasks and routes name.",
)
loop_option = click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_LOOP",
    help="Event loop: uvloop where installed (auto), or plain asyncio.",
)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """aqueue: an asyncio-native task queue on Redis Streams."""


@main.command()
@app_argument
@queue_option
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_CONCURRENCY",
    help="Most jobs run at once.",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_GRACE_PERIOD",
    help="Seconds running jobs get to finish on SIGTERM before they are handed back.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_THREADS",
    help="Most synchronous (def) tasks run at once.",
)
@click.option(
    "--starvation-guard",
    type=click.IntRange(min=2),
    default=None,
    show_envvar=True,
    envvar="AQUEUE_STARVATION_GUARD",
    help="Every Nth read takes the lowest waiting priority level first (default: off).",
)
@click.option(
    "-p",
    "--processes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_PROCESSES",
    help="Worker processes, under one supervisor that restarts a crashed one.",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    default=None,
    show_envvar=True,
    envvar="AQUEUE_MAX_TASKS_PER_CHILD",
    help="Replace a worker process after it has started this many jobs (default: never).",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    default=None,
    metavar="MIB",
    show_envvar=True,
    envvar="AQUEUE_MAX_MEMORY_PER_CHILD",
    help="Replace a worker process once a job ends with it above this many MiB resident.",
)
@click.option(
    "--burst",
    is_flag=True,
    show_envvar=True,
    envvar="AQUEUE_BURST",
    help="Exit 0 once the queues hold no job ready to run and none is running.",
)
@click.option(
    "--reload",
    is_flag=True,
    help="Restart the workers when a .py file under this directory changes (development).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_LOG_LEVEL",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    show_envvar=True,
    envvar="AQUEUE_LOG_FORMAT",
    help="json: one object per line, with the job id, task, queue and attempt of each record.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    show_envvar=True,
    envvar="AQUEUE_METRICS_PORT",
    help="Serve Prometheus metrics on this port at /metrics (needs aqueue-redis[prometheus]).",
)
@click.option("--supervised", is_flag=True, hidden=True)
@loop_option
@click.pass_context
@_fail_cleanly
def worker(
    ctx: click.Context,
    app_path: str,
    queues: tuple[str, ...],
    concurrency: int,
    grace_period: float,
    threads: int,
    starvation_guard: int | None,
    processes: int,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    burst: bool,
    reload: bool,
    log_level: str,
    log_format: str,
    supervised: bool,
    metrics_port: int | None,
    loop: str,
) -> None:
    """Run a worker for APP (module:attribute) until SIGTERM or SIGINT.

    The first signal stops gracefully; a second one stops at once, handing running jobs
    back to their queues. With --max-tasks-per-child or --max-memory-per-child and no
    supervisor (-p 1, no --reload), the worker exits 0 when its limit is reached, for the
    service manager to start it again.
    """
    configure_logging(log_level, log_format)
    if metrics_port is not None:
        try:
            # Imported only when asked for: prometheus-client is an optional extra.
            from .contrib import prometheus
        except ImportError:
            _needs_extra("--metrics-port", "prometheus-client", "prometheus")
    if (processes > 1 or reload) and not supervised:
        # Checked here, once, rather than N times over in the children.
        load_app(app_path)
        watch = None
        if reload:
            try:
                from ._reload import watch_code
            except ImportError:
                _needs_extra("--reload", "watchfiles", "reload")
            watch = watch_code
        ended = None
        if metrics_port is not None:
            # One endpoint for all the children: each records into a shared directory.
            ended = prometheus.serve_children(metrics_port)
        supervisor = Supervisor(_child_arguments(ctx), processes, watch=watch, ended=ended)
        sys.exit(supervisor.run())
    app = load_app(app_path)
    if not app.tasks:
        # Tasks kept in modules that the app's module does not import are a first project's
        # usual layout: every job would be dead-lettered as an unknown task.
        module = app_path.partition(":")[0]
        logger.warning(
            "importing %s registered no task on the app: every job this worker takes will be "
            "dead-lettered as an unknown task. Name the module that defines the tasks as APP "
            "(it imports the app), or import it in %s",
            module,
            module,
        )
    known = _known_queues(app)
    if strays := [queue for queue in queues if queue not in known]:
        # Served all the same (jobs can be sent to any queue), but most often a typo: the
        # worker would wait on a queue none of the app's jobs go to.
        logger.warning(
            "the app names no queue %s: its tasks, routes and default use %s",
            ", ".join(strays),
            ", ".join(known),
        )
    the_worker = Worker(
        app,
        queues=list(queues) or known,
        concurrency=concurrency,
        grace_period=grace_period,
        threads=threads,
        starvation_guard=starvation_guard,
        max_jobs=max_tasks_per_child,
        max_memory_mib=max_memory_per_child,
        burst=burst,
    )
    if metrics_port is not None:
        prometheus.serve_metrics(the_worker, metrics_port, supervised=supervised)

    async def serve() -> None:
        async with app:
            if supervised:
                async with asyncio.TaskGroup() as group:
                    orphaned = group.create_task(_stop_when_orphaned(the_worker))
                    await the_worker.run()
                    orphaned.cancel()
            else:
                await the_worker.run()

    run_async(serve, loop)
    if supervised and the_worker.recycled:
        sys.exit(RECYCLE_EXIT)


def _needs_extra(flag: str, package: str, extra: str) -> NoReturn:
    # A usage error (exit 2) in one line, with the command that fixes it: no traceback.
    click.echo(
        f"error: {flag} needs {package}, which is not installed: {pip_install(extra)}", err=True
    )
    sys.exit(2)


SUPERVISOR_ONLY = frozenset({"processes", "reload"})
"""The worker command's options that the supervisor keeps to itself."""


def _child_arguments(ctx: click.Context) -> list[str]:
    """The worker command's arguments, as given, for a supervised child to run alone."""
    arguments: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name in SUPERVISOR_ONLY or value is None:
            continue
        if isinstance(param, click.Argument):
            arguments.append(str(value))
            continue
        flag = max(param.opts, key=len)
        if isinstance(param, click.Option) and param.is_flag:
            arguments += [flag] if value else []
        elif param.multiple:
            arguments += [part for item in value for part in (flag, str(item))]
        else:
            arguments += [flag, str(value)]
    return arguments


async def _stop_when_orphaned(the_worker: Worker) -> None:
    # A supervisor killed outright cannot stop its children: each notices it is gone
    # (adopted by another parent) and stops gracefully on its own.
    parent = os.getppid()
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    logger.warning("the supervisor (pid %d) is gone: stopping", parent)
    the_worker.stop()


def configure_logging(level: str, log_format: str) -> None:
    """The command's logging: to stderr, each record knowing the job it came from."""
    handler = logging.StreamHandler()
    handler.addFilter(JobLogFilter())
    handler.setFormatter(
        JsonLogFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])


# The other commands live in the modules of aqueue/_cli, one concept each; importing the
# package registers them on `main`.
from . import _cli  # noqa: E402, F401
