"""The app: the task registry and the client side (enqueue, jobs, queues). No worker machinery."""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, Unpack, cast, overload

from redis.asyncio import Redis

from ._checks import seconds, whole_number, whole_seconds
from ._connections import Connections
from ._events import Event, follow
from ._hooks import H, Lifecycle
from ._job import Job
from ._middleware import Middleware, MiddlewareStack
from ._options import TaskOptions, check_task_name, checked
from ._queue import Queue
from ._redis._connect import check_url
from ._redis._keys import EVENTS_LIMIT, check_name
from ._registry import WorkerInfo, live_workers
from ._schedule import Misfire, Schedule, cron_schedule, every_schedule
from ._serialize import JsonSerializer, Serializer, encode_call
from ._settings import Settings
from ._task import Task, TaskConfig
from ._typed import task_types
from ._write import Writer
from .exceptions import ConfigurationError, TaskRegistrationError

P = ParamSpec("P")
R = TypeVar("R")


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: turns a function into a :class:`Task`."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


def _check_task_name(name: object) -> None:
    if isinstance(name, Task):
        raise ConfigurationError(
            "app.enqueue takes a task's name, not the task: call the task's own "
            f"enqueue(...), or app.enqueue({name.name!r}, ...)"
        )
    check_task_name(name)


def _queue_lengths(value: int | Mapping[str, int], what: str) -> int | Mapping[str, int]:
    """``max_queue_length`` checked: 0 for no limit, a limit, or one per queue."""
    if isinstance(value, Mapping):
        return {
            check_name("queue", queue): whole_number(limit, f"{what}[{queue!r}]", least=0)
            for queue, limit in value.items()
        }
    return whole_number(value, what, least=0)


class App:
    """An aqueue application: where tasks are registered and jobs are enqueued.

    Every setting but ``serializer`` (an object, given in code) can also come from an
    environment variable: ``AQUEUE_`` and its name in capitals (``AQUEUE_URL``,
    ``AQUEUE_NAMESPACE``, ``AQUEUE_RESULT_TTL``, ...). An argument given (not None) wins;
    else the variable, when set and not empty; else the default. The environment is read
    when the App is created.

    Args:
        url: Redis URL (``redis://``, ``rediss://`` or ``unix://``); by default
            ``redis://localhost:6379/0``.
        namespace: Prefix of every key, so several apps can share one server; by default
            ``"aqueue"``.
        default_queue: The queue of tasks that name none; by default ``"default"``.
        result_ttl: How long a result is kept, in seconds or as a timedelta; 0 keeps none.
            By default an hour.
        lease: Seconds after which a silent worker's jobs go to another worker (30).
        serializer: How arguments and results are encoded; JSON (orjson) by default.
        max_payload_size: Largest encoded job in bytes; a larger one is refused at enqueue.
        max_result_size: Largest encoded result in bytes; a task returning a larger one fails
            with ``aqueue.ResultTooLarge`` instead of leaving a value the server cannot store.
        max_connections: Most connections the app opens at once; more callers wait (64).
        max_deliveries: Most times one job is delivered (crashes included) before it goes to
            the dead-letter stream as poison; a task with more ``retries`` gets that many (5).
        routes: Task-name glob patterns to queues, e.g. ``{"emails.*": "emails"}``, for tasks
            that name no queue (first match wins), so producers need not know queues. In the
            environment, a JSON object.
        max_queue_length: Most jobs a queue may hold (queued, running and scheduled), for
            every queue or per queue name; past it ``enqueue`` raises :class:`QueueFull`.
            0 (the default) sets no limit. In the environment, a number or a JSON object.
        events: Keep each queue's recent job events (enqueued, started, succeeded, ...)
            for :meth:`events` and dashboards. Off by default: it adds a write to every
            enqueue, start and finish. Turn it on in producers and workers alike.
        unknown_task_grace: How long a worker keeps a job of a task it does not know while
            no live worker reading the job's queue knows the task, in seconds or as a
            timedelta (5 minutes); then the job goes to the dead letters. A job that a live
            worker knows is left to it at once (a rolling deploy: see the Deployment guide).
        kept_arguments_size: Largest encoded arguments, in bytes, that the record of a job
            keeping a result holds once the job ran, for ``aqueue job`` (larger ones are
            noted by their size only); 0 keeps none. 1024 by default. Read by workers.

    Connects lazily, on first use. Close with ``await app.close()`` or use ``async with app:``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        default_queue: str | None = None,
        result_ttl: float | timedelta | None = None,
        lease: float | timedelta | None = None,
        serializer: Serializer | None = None,
        max_payload_size: int | None = None,
        max_result_size: int | None = None,
        max_connections: int | None = None,
        max_deliveries: int | None = None,
        routes: Mapping[str, str] | None = None,
        max_queue_length: int | Mapping[str, int] | None = None,
        events: bool | None = None,
        unknown_task_grace: float | timedelta | None = None,
        kept_arguments_size: int | None = None,
    ) -> None:
        given = Settings.resolve(
            url=url,
            namespace=namespace,
            default_queue=default_queue,
            result_ttl=result_ttl,
            lease=lease,
            max_payload_size=max_payload_size,
            max_result_size=max_result_size,
            max_connections=max_connections,
            max_deliveries=max_deliveries,
            routes=routes,
            max_queue_length=max_queue_length,
            events=events,
            unknown_task_grace=unknown_task_grace,
            kept_arguments_size=kept_arguments_size,
        )
        label = given.label
        self.url = check_url(given.url, given.variable("url"))
        self.namespace = check_name(label("namespace"), given.namespace)
        self.default_queue = check_name(label("default_queue"), given.default_queue)
        self.result_ttl = whole_seconds(given.result_ttl, label("result_ttl"))
        self.lease = seconds(given.lease, label("lease")) or 30.0
        self.serializer: Serializer = serializer or JsonSerializer()
        self.max_payload_size = whole_number(
            given.max_payload_size, f"{label('max_payload_size')} (bytes)"
        )
        self.max_result_size = whole_number(
            given.max_result_size, f"{label('max_result_size')} (bytes)"
        )
        self.max_deliveries = whole_number(given.max_deliveries, label("max_deliveries"))
        self.routes = {
            pattern: check_name("queue", target) for pattern, target in given.routes.items()
        }
        self._max_queue_length = _queue_lengths(given.max_queue_length, label("max_queue_length"))
        self.events_limit = EVENTS_LIMIT if given.events else 0
        """Events each queue keeps, about (0: the app writes none)."""
        self.unknown_task_grace = (
            seconds(given.unknown_task_grace, label("unknown_task_grace"), allow_zero=True) or 0.0
        )
        """Seconds a worker keeps a job of a task no live worker knows before dead-lettering it."""
        self.kept_arguments_size = whole_number(
            given.kept_arguments_size, f"{label('kept_arguments_size')} (bytes)", least=0
        )
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._schedules: list[Schedule] = []
        self._connections = Connections(
            self, whole_number(given.max_connections, label("max_connections"))
        )
        self._lifecycle = Lifecycle()
        self._middleware = MiddlewareStack()
        self._writer = Writer(self, self._connections, self._middleware)

    def __repr__(self) -> str:
        return f"<App namespace={self.namespace!r} tasks={len(self._tasks)}>"

    # -- registry ---------------------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks by name (read-only)."""
        return MappingProxyType(self._tasks)

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: None = None, /, **options: Unpack[TaskOptions]) -> TaskDecorator: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskOptions]) -> Any:
        """Register a function as a task; use bare (``@app.task``) or with options.

        Args:
            **options: Any of :class:`aqueue.TaskOptions` (its name, queue, timeout, retries,
                limits...). Checked now, so a bad option fails where it is written, not at
                the decorated def.

        Raises:
            TaskRegistrationError: Another task is already registered under the name.
        """
        given = {"result_ttl": self.result_ttl} | checked(options, TaskOptions, "app.task()")

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            name = given.get("name") or f"{function.__module__}.{function.__qualname__}"
            queue = given.get("queue") or self.route(name)
            config = TaskConfig(
                **given | {"name": name, "queue": queue}, types=task_types(function, name)
            )
            if config.name in self._tasks:
                raise TaskRegistrationError(
                    f"a task named {config.name!r} is already registered on this app; "
                    "give one of them another name with @app.task(name=...)"
                )
            registered: Task[Any, Any] = Task(self, self._writer, function, config)
            self._tasks[config.name] = registered
            return registered

        return register if fn is None else register(fn)

    # -- schedules --------------------------------------------------------------------------

    @property
    def schedules(self) -> list[Schedule]:
        """The periodic tasks registered with :meth:`cron` and :meth:`periodic`."""
        return list(self._schedules)

    def cron(
        self,
        expression: str,
        *,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        misfire: Misfire = "skip",
        name: str | None = None,
        queue: str | None = None,
        timeout: float | timedelta | None = None,
        retries: int = 0,
    ) -> TaskDecorator:
        """Register a task that runs once per cron tick, however many workers run.

        Args:
            expression: Five fields (minute hour day month weekday), six with seconds first,
                or a nickname: ``@hourly``, ``@daily`` (or ``@midnight``), ``@weekly``,
                ``@monthly``, ``@yearly`` (or ``@annually``).
            args: The positional arguments every tick's job is enqueued with.
            kwargs: The keyword arguments every tick's job is enqueued with.
            timezone: The zone the expression is read in, e.g. ``"Europe/Paris"``.
            misfire: Ticks missed while no worker ran: ``"skip"`` them (default), or
                ``"run_once"`` for the latest of them when a worker starts.

        Every worker runs the scheduler; each tick is enqueued once, under a uniqueness key
        for the tick, and due-ness is read from the Redis server's clock. The arguments are
        bound to the task's signature and encoded when the task is decorated, so a mistake
        stops the program at import rather than at each tick.
        """
        if not isinstance(expression, str):
            # A bare @app.cron hands it the function: @app.task is used bare, so this is met.
            raise ConfigurationError(
                f"@app.cron needs its schedule, as in @app.cron('*/5 * * * *'), not {expression!r}"
            )
        schedule = cron_schedule("", expression, timezone, misfire)
        return self._scheduled(schedule, args, kwargs, name, queue, timeout, retries)

    def periodic(
        self,
        *,
        every: float | timedelta,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        misfire: Misfire = "skip",
        name: str | None = None,
        queue: str | None = None,
        timeout: float | timedelta | None = None,
        retries: int = 0,
    ) -> TaskDecorator:
        """Register a task that runs once every ``every`` (ticks aligned on multiples of it).

        ``args`` and ``kwargs`` are the arguments of every tick's job, as for :meth:`cron`.
        """
        schedule = every_schedule("", every, misfire)
        return self._scheduled(schedule, args, kwargs, name, queue, timeout, retries)

    def _scheduled(
        self,
        schedule: Schedule,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        name: str | None,
        queue: str | None,
        timeout: float | timedelta | None,
        retries: int,
    ) -> TaskDecorator:
        decorate = self.task(name=name, queue=queue, timeout=timeout, retries=retries)
        # A copy: a caller changing its dict later does not change the ticks.
        call_kwargs = dict(kwargs or {})

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            try:
                inspect.signature(function).bind(*args, **call_kwargs)
            except TypeError as exc:
                raise ConfigurationError(
                    f"periodic task {function.__qualname__} cannot be called with "
                    f"args={args!r} and kwargs={call_kwargs!r}: {exc}. Give args= and kwargs= "
                    "that fit its signature"
                ) from None
            types = task_types(function, function.__qualname__)
            encode_call(self.serializer, function.__qualname__, args, call_kwargs, types.arguments)
            registered: Task[Any, Any] = decorate(function)
            self._schedules.append(
                dataclasses.replace(
                    schedule, task_name=registered.name, args=args, kwargs=call_kwargs
                )
            )
            return registered

        return cast(TaskDecorator, register)

    # -- hooks and middleware ---------------------------------------------------------------

    def on_worker_start(self, hook: H, /) -> H:
        """Register a function every worker of this app runs before it fetches any job.

        Use it to set up what tasks share and hand it over with ``worker.provide(KEY,
        value)``; tasks get it with ``aqueue.current_job().resource(KEY)``. The hook takes
        the :class:`Worker`; it may be ``async def`` or a quick plain ``def``. Hooks run in
        the order they were registered. If one raises, the worker does not start: it raises
        :class:`WorkerStartError`, after running the stop hooks registered before the failed
        hook.
        """
        return self._lifecycle.on_start(hook)

    def on_worker_stop(self, hook: H, /) -> H:
        """Register a function every worker of this app runs after it stopped.

        It runs once every job has finished (or was handed back) and its outcome was
        written. Stop hooks run last registered first, and only those registered after
        start hooks that all succeeded: register each right after the start hook whose work
        it undoes. A stop hook that raises is logged, and the others still run.
        """
        return self._lifecycle.on_stop(hook)

    def add_middleware(self, middleware: Middleware, /) -> None:
        """Add middleware around enqueueing and running this app's jobs (see :class:`Middleware`).

        Add it before enqueueing and before workers start: a worker reads the app's
        middleware when it starts.
        """
        self._middleware.add(middleware)

    # -- producing --------------------------------------------------------------------------

    async def enqueue(self, task_name: str, /, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue a job by task name, without the task's code (e.g. from another service).

        The arguments are checked against the signature when the task is registered here;
        otherwise the worker checks them and dead-letters a job whose arguments do not bind.
        """
        _check_task_name(task_name)
        registered = self._tasks.get(task_name)
        if registered is not None:
            return await registered.enqueue(*args, **kwargs)
        config = TaskConfig(task_name, self.route(task_name), self.result_ttl)
        writer = self._writer
        [job] = await writer.write(config.queue, [writer.outgoing(config, args, kwargs)])
        return job

    def route(self, task_name: str) -> str:
        """The queue of a task that names none: the first matching route, else the default."""
        for pattern, target in self.routes.items():
            if fnmatch.fnmatchcase(task_name, pattern):
                return target
        return self.default_queue

    def max_queue_length(self, queue: str) -> int:
        """The most jobs ``queue`` may hold (0: no limit)."""
        limit = self._max_queue_length
        return limit if isinstance(limit, int) else limit.get(queue, 0)

    def job(self, job_id: str) -> Job[Any]:
        """A handle on the job with this id (e.g. received from another process).

        Its ``result()`` converts the value into the return annotation of the job's task
        when that task is registered on this app; otherwise it returns the JSON values (a
        datetime as an ISO 8601 string, a dataclass as a dict).
        """
        return Job(self, self._connections, job_id)

    def queue(self, name: str | None = None) -> Queue:
        """A handle on a queue, for statistics and maintenance."""
        return Queue(self, self._connections, check_name("queue", name or self.default_queue))

    async def workers(self) -> list[WorkerInfo]:
        """The live workers of this app (every process that beat within its lease).

        Each record says what the worker said at its last heartbeat (a third of a lease
        ago at most): its queues, concurrency, jobs running, counters and the tasks it knows.
        A worker that stopped is gone at once; one that died, within about a lease.
        """
        return await live_workers(self)

    async def events(
        self, *, queues: Sequence[str] | None = None, after: str | None = None
    ) -> AsyncIterator[Event]:
        """Yield what happens to the jobs of ``queues`` (all the app names if None), as it
        happens: ``async for event in app.events(): ...``.

        Starts with the events from now on, or with those after the event whose ``id`` is
        ``after`` (each queue keeps its last ~10,000). Events are written only by apps made
        with ``App(events=True)``: set it in the producers and workers you want to hear from.
        Events of one queue come in order; those of different queues may interleave.
        """
        async for event in follow(self, queues, after):
            yield event

    # -- connections ------------------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        """The app's redis-py client (created on first use)."""
        return self._connections.client

    async def close(self) -> None:
        """Close the app's connections. The app connects again if used afterwards."""
        await self._connections.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


# The seam for the parts of aqueue that are handed an App rather than made by it (the worker,
# the dashboard, the synchronous facade): what App makes (tasks, jobs, queues) is given these
# when it is made, and nothing else reads an App's private attributes.


def connections_of(app: App) -> Connections:
    """The connections of ``app``."""
    return app._connections


def middleware_of(app: App) -> MiddlewareStack:
    """The middleware added to ``app``, which a worker runs its jobs in."""
    return app._middleware


def lifecycle_of(app: App) -> Lifecycle:
    """The start and stop hooks registered on ``app``, which a worker runs."""
    return app._lifecycle
