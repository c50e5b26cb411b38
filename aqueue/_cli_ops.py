"""The ``aqueue`` commands that look at and steer a running fleet: status, workers, pause,
resume, job, enqueue, purge, check, control.

Registered on the ``aqueue`` group by ``cli.py``. Exit codes: 0 on success, 1 for an error a
user can fix (one line on stderr: Redis unreachable, an unknown job), 2 for a usage error.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import click
import orjson

from ._control import COMMANDS, send_command
from ._events import named_queues as _known_queues
from ._inspect import QueueStatus, job_record, queue_status, queued_arguments
from ._job import JobInfo, JobStatus
from ._redis._errors import translate_errors
from ._redis._keys import check_name
from ._registry import WorkerInfo
from .cli import (
    _fail_cleanly,
    app_argument,
    format_table,
    load_app,
    loop_option,
    queue_option,
    run_async,
)
from .cli import main as cli
from .exceptions import AqueueError, JobNotFound


class NoLiveWorker(AqueueError):
    """``aqueue check``: a queue has no live worker."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _to_json(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        raise TypeError

    return orjson.dumps(value, default=default, option=orjson.OPT_INDENT_2)


def _worker_rows(workers: list[WorkerInfo]) -> list[list[str]]:
    return [
        [
            w.id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            str(w.concurrency),
            str(w.running),
            str(w.processed),
            str(w.failed),
            w.started.strftime("%Y-%m-%d %H:%M:%S"),
            w.version,
            ",".join(w.tasks) or "-",
        ]
        for w in workers
    ]


WORKER_HEADER = [
    "worker",
    "host",
    "pid",
    "queues",
    "concurrency",
    "running",
    "processed",
    "failed",
    "started (UTC)",
    "version",
    "tasks",
]


def _print_workers(workers: list[WorkerInfo]) -> None:
    if not workers:
        click.echo("no live workers")
        return
    click.echo(format_table(WORKER_HEADER, _worker_rows(workers), numeric=False))


@cli.command()
@app_argument
@json_option
@loop_option
@_fail_cleanly
def workers(app_path: str, as_json: bool, loop: str) -> None:
    """List APP's live workers.

    Each with its id, host, pid, queues, concurrency, jobs running, counters, start time,
    aqueue version and the tasks it knows.
    """
    app = load_app(app_path)

    async def collect() -> list[WorkerInfo]:
        async with app:
            return await app.workers()

    found = run_async(collect, loop)
    if as_json:
        click.echo(_to_json([dataclasses.asdict(w) for w in found]))
    else:
        _print_workers(found)


@cli.command()
@app_argument
@queue_option
@json_option
@loop_option
@_fail_cleanly
def status(app_path: str, queues: tuple[str, ...], as_json: bool, loop: str) -> None:
    """Show APP's queues and live workers.

    Per queue: queued, scheduled, running and dead-lettered jobs, live workers, whether it
    is paused, and jobs run per second lately (summed over the workers' last heartbeats).
    """
    app = load_app(app_path)
    names = [check_name("queue", q) for q in queues] or _known_queues(app)

    async def collect() -> tuple[list[QueueStatus], list[WorkerInfo]]:
        async with app:
            found = await app.workers()
            return await queue_status(app, names, found), found

    statuses, found = run_async(collect, loop)
    if as_json:
        queues_json = [s.as_json() for s in statuses]
        workers_json = [dataclasses.asdict(w) for w in found]
        click.echo(_to_json({"queues": queues_json, "workers": workers_json}))
        return
    header = ["queue", "queued", "scheduled", "running", "dead", "workers", "paused", "jobs/s"]
    rows = []
    for s in statuses:
        st = s.stats
        counts = (st.queued, st.scheduled, st.running, st.dead, st.workers)
        paused = "yes" if s.paused else "no"
        rows.append([st.queue, *map(str, counts), paused, f"{s.rate:.1f}"])
    click.echo(format_table(header, rows))
    click.echo()
    _print_workers(found)


paused_queues_option = click.option(
    "-q",
    "--queue",
    "queue_names",
    multiple=True,
    required=True,
    help="The queue; repeat for several.",
)


def _set_paused(app_path: str, queue_names: tuple[str, ...], loop: str, *, paused: bool) -> None:
    app = load_app(app_path)
    queues = [app.queue(check_name("queue", name)) for name in queue_names]

    async def apply() -> None:
        async with app:
            for queue in queues:
                await (queue.pause() if paused else queue.resume())

    run_async(apply, loop)
    for queue in queues:
        click.echo(f"{queue.name}: {'paused' if paused else 'resumed'}")


@cli.command()
@app_argument
@paused_queues_option
@loop_option
@_fail_cleanly
def pause(app_path: str, queue_names: tuple[str, ...], loop: str) -> None:
    """Stop every worker of APP from reading the queues.

    Running jobs go on; producers still enqueue, and delayed jobs still become due, to wait
    in the queue for `aqueue resume`. Workers learn of it within a fraction of a second.
    """
    _set_paused(app_path, queue_names, loop, paused=True)


@cli.command()
@app_argument
@paused_queues_option
@loop_option
@_fail_cleanly
def resume(app_path: str, queue_names: tuple[str, ...], loop: str) -> None:
    """Let every worker of APP read the queues again."""
    _set_paused(app_path, queue_names, loop, paused=False)


# -- jobs -------------------------------------------------------------------------------------


def _print_job(record: dict[str, Any]) -> None:
    lines: list[tuple[str, Any]] = [
        ("id", record["id"]),
        ("status", record["status"]),
        ("task", record["task"]),
        ("queue", record["queue"]),
    ]
    if record["arguments"] is not None:
        lines.append(("args", _to_json_line(record["arguments"]["args"])))
        lines.append(("kwargs", _to_json_line(record["arguments"]["kwargs"])))
    lines.append(("attempts", record["attempts"]))
    lines.extend(
        (name.replace("_", " "), record[name].isoformat(" ", "milliseconds"))
        for name in ("enqueued_at", "due_at", "started_at", "finished_at")
        if record[name] is not None
    )
    lines.append(("worker", record["worker"]))
    if record["progress"] is not None:
        message = record["progress_message"]
        lines.append(("progress", f"{record['progress']:.0%}" + (f" {message}" if message else "")))
    if record["status"] == "succeeded":
        lines.append(("result", _to_json_line(record["result"])))
    error = record["error"]
    if error is not None:
        lines.append(("error", f"{error['type']}: {error['message']}"))
    width = max(len(name) for name, _ in lines) + 1
    for name, value in lines:
        if value is not None:
            click.echo(f"{name + ':':<{width}} {value}")
    if error is not None and error["traceback"]:
        click.echo("traceback:")
        click.echo(error["traceback"].rstrip("\n"))


def _to_json_line(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


@cli.command()
@app_argument
@click.argument("job_id", metavar="JOB_ID")
@json_option
@loop_option
@_fail_cleanly
def job(app_path: str, job_id: str, as_json: bool, loop: str) -> None:
    """Show a job's record.

    Status, task, arguments (while it waits in its queue), attempts, timestamps, worker,
    progress, and its result or error with the traceback. Exit 1 when there is no record.
    """
    app = load_app(app_path)

    async def collect() -> tuple[JobInfo, list[Any] | None]:
        async with app:
            info = await app.job(job_id).info()
            arguments = None
            if info.status is JobStatus.QUEUED:
                with translate_errors(app.url):
                    arguments = await queued_arguments(app, job_id)
            return info, arguments

    info, arguments = run_async(collect, loop)
    if info.status is JobStatus.UNKNOWN:
        raise JobNotFound(
            f"no record of job {job_id}: never enqueued, enqueued with result_ttl=0, or its "
            "record expired"
        )
    record = job_record(info, arguments)
    if as_json:
        click.echo(_to_json(record))
    else:
        _print_job(record)


def _json_value(kind: type, text: str, flag: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint=flag) from None
    if not isinstance(value, kind):
        expected = "an array, e.g. '[1, 2]'" if kind is list else "an object, e.g. '{\"x\": 1}'"
        raise click.BadParameter(f"must be {expected}", param_hint=flag)
    return value


@cli.command()
@app_argument
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", default="[]", help="Positional arguments: a JSON array.")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments: a JSON object.")
@click.option("-q", "--queue", "queue_name", default=None, help="Queue (default: the task's).")
@click.option(
    "--delay", type=click.FloatRange(min=0), default=None, help="Seconds before it may run."
)
@click.option("--wait", is_flag=True, help="Wait for the result and print it (JSON).")
@loop_option
@_fail_cleanly
def enqueue(
    app_path: str,
    task_name: str,
    args_json: str,
    kwargs_json: str,
    queue_name: str | None,
    delay: float | None,
    wait: bool,
    loop: str,
) -> None:
    """Enqueue TASK with JSON arguments and print the job's id.

    With --wait, print the result too; exit 1 when the job failed or was cancelled. -q and
    --delay need a task APP registers; a task it does not know is enqueued by name, to its
    routed queue.
    """
    app = load_app(app_path)
    args = _json_value(list, args_json, "--args")
    kwargs = _json_value(dict, kwargs_json, "--kwargs")
    task = app.tasks.get(task_name)
    if task is None and (queue_name is not None or delay is not None):
        raise click.UsageError(
            f"-q and --delay need a task that {app_path} registers; {task_name!r} is not one "
            f"(known: {', '.join(sorted(app.tasks)) or 'none'})"
        )

    async def send() -> None:
        async with app:
            if task is None:
                job = await app.enqueue(task_name, *args, **kwargs)
            else:
                options = task.options(queue=queue_name, delay=delay)
                job = await options.enqueue(*args, **kwargs)
            click.echo(job.id)
            if wait:
                click.echo(_to_json_line(await job.result()))

    run_async(send, loop)


@cli.command()
@app_argument
@click.option("-q", "--queue", "queue_name", required=True, help="The queue to empty.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@loop_option
@_fail_cleanly
def purge(app_path: str, queue_name: str, yes: bool, loop: str) -> None:
    """Drop every job waiting in a queue (they end as cancelled).

    Running and scheduled jobs are left alone. Asks first, unless --yes.
    """
    app = load_app(app_path)
    queue = app.queue(check_name("queue", queue_name))
    if not yes:
        click.confirm(f"drop every queued job of {queue.name}?", abort=True)

    async def drop() -> int:
        async with app:
            return await queue.purge_queued()

    click.echo(f"dropped {run_async(drop, loop)} queued job(s) from {queue.name}")


@cli.command()
@app_argument
@queue_option
@loop_option
@_fail_cleanly
def check(app_path: str, queues: tuple[str, ...], loop: str) -> None:
    """Exit 0 when Redis answers and each queue has a live worker, else 1 with the reason.

    For liveness and readiness probes. Default queues: every queue APP's tasks and routes
    name.
    """
    app = load_app(app_path)
    names = [check_name("queue", q) for q in queues] or _known_queues(app)

    async def unserved() -> list[str]:
        async with app:
            return [n for n in names if (await app.queue(n).stats()).workers == 0]

    missing = run_async(unserved, loop)
    if missing:
        raise NoLiveWorker(f"no live worker serves queue(s) {', '.join(missing)}")
    click.echo(f"ok: Redis answers; {', '.join(names)} served")


# -- remote control ---------------------------------------------------------------------------


class NoAnswer(AqueueError):
    """``aqueue control``: a worker did not answer in time."""


@cli.command()
@app_argument
@click.argument("command", type=click.Choice(COMMANDS))
@click.option("--worker", "worker_ids", multiple=True, help="A worker's id; repeat for several.")
@click.option("--all", "to_all", is_flag=True, help="Every live worker.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for the answers.",
)
@loop_option
@_fail_cleanly
def control(
    app_path: str,
    command: str,
    worker_ids: tuple[str, ...],
    to_all: bool,
    timeout: float,
    loop: str,
) -> None:
    """Send COMMAND to live workers; each that hears it answers.

    ping: each answers "pong". shutdown: each stops gracefully, as on SIGTERM (running jobs
    finish within the grace period, the rest go back to their queues). Name workers with
    --worker (ids from `aqueue workers`) or --all; ping without either reaches all. Exit 1
    when a worker did not answer in time.
    """
    if worker_ids and to_all:
        raise click.UsageError("give --worker or --all, not both")
    if command == "shutdown" and not (worker_ids or to_all):
        raise click.UsageError("shutdown needs --worker ID or --all")
    app = load_app(app_path)

    async def send() -> tuple[dict[str, str], list[str]]:
        async with app:
            return await send_command(app, command, list(worker_ids) or None, timeout)

    answers, silent = run_async(send, loop)
    for worker_id, answer in sorted(answers.items()):
        click.echo(f"{worker_id}: {answer}")
    if not answers and not silent:
        click.echo("no live workers")
    if silent:
        raise NoAnswer(f"no answer within {timeout:g} s from {', '.join(silent)}")
