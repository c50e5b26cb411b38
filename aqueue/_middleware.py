"""Middleware: code around enqueueing and around each run, and the job signals, in one class.

A :class:`Middleware` overrides only the methods it needs; the app keeps, per method, the
middleware that override it, so a method nobody overrides costs nothing, and an app without
middleware pays one truthiness check per enqueued job and per run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, cast

from ._context import JobContext, _current
from ._options import JobOptions
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._task import TaskConfig
    from ._worker._outcome import Delivery, Outcome

logger = logging.getLogger("aqueue.middleware")

_JOB_OPTIONS = sorted(JobOptions.__optional_keys__)

P = ParamSpec("P")

CallNext: TypeAlias = Callable[[], Awaitable[Any]]
"""What :meth:`Middleware.around_run` calls to run the rest of the chain and the task."""


class OutgoingJob:
    """A job about to be enqueued, as :meth:`Middleware.on_enqueue` sees it.

    Attributes:
        id: The job's id (what ``job.id`` will be).
        args: The positional arguments of the call.
        kwargs: The keyword arguments of the call.
        metadata: Strings that travel with the job, in its stream entry, to the worker:
            set keys here (a tenant, a trace id); the worker shows them as
            ``JobContext.metadata``.
    """

    __slots__ = ("_config", "args", "id", "kwargs", "metadata")

    def __init__(
        self, job_id: str, config: TaskConfig, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        self.id = job_id
        self.args = args
        self.kwargs = kwargs
        self.metadata: dict[str, str] = {}
        self._config = config

    def __repr__(self) -> str:
        return f"<OutgoingJob {self.id} {self.task}>"

    @property
    def task(self) -> str:
        """The task's registered name."""
        return self._config.name

    @property
    def queue(self) -> str:
        """The queue the job goes to."""
        return self._config.queue

    @property
    def options(self) -> JobOptions:
        """Every option of :class:`JobOptions` with the value this job is enqueued with: the
        task's, or what ``options()`` set (durations in seconds)."""
        return cast(JobOptions, {name: getattr(self._config, name) for name in _JOB_OPTIONS})


class Middleware:
    """Subclass and override the methods you need; add it with ``app.add_middleware(...)``.

    Producer side: :meth:`on_enqueue`. Worker side: :meth:`around_run` wraps each run, and
    the signals :meth:`on_started`, :meth:`on_succeeded`, :meth:`on_failed` and
    :meth:`on_retried` report what happened. Several middleware run in the order they were
    added: the first added is the outermost around a run, and is notified first.

    A signal handler that raises is logged (logger ``aqueue.middleware``) and changes
    nothing: the job's outcome is recorded as if the handler had not run. An
    :meth:`around_run` that raises is part of the run: the job fails (or is retried) with
    that error, like a task that raised.
    """

    def on_enqueue(self, job: OutgoingJob) -> None:
        """Called for each job before it is written, in the producer's process.

        Add ``job.metadata`` entries to send along with the job; raise to refuse the
        enqueue (the exception reaches the caller, nothing of the call is written). It is
        a plain function on purpose: it runs for every job of an ``enqueue_many`` batch,
        which is written in one round trip, so it must not do I/O of its own.
        """

    async def around_run(self, job: JobContext, call_next: CallNext) -> Any:
        """Wrap one run of a task: return ``await call_next()`` (its result), or something else.

        The exception the task raised propagates out of ``call_next()`` (a ``TimeoutError``
        when the task ran past its ``timeout``, which covers the task alone, not middleware).
        """
        return await call_next()

    async def on_started(self, job: JobContext) -> None:
        """A run is about to start (the task's arguments were decoded and bind)."""

    async def on_succeeded(self, job: JobContext, result: Any) -> None:
        """The run returned ``result``; called before the result is recorded."""

    async def on_failed(self, job: JobContext, error: Exception) -> None:
        """The run failed for good (no retry left, or not an error to retry)."""

    async def on_retried(self, job: JobContext, error: Exception, delay: float) -> None:
        """The run failed and the job runs again after ``delay`` seconds."""


def _overrides(middleware: Middleware, method: str) -> bool:
    return getattr(type(middleware), method) is not getattr(Middleware, method)


class MiddlewareStack:
    """An app's middleware, grouped by the methods they override."""

    def __init__(self) -> None:
        self._all: list[Middleware] = []
        self.enqueue: tuple[Middleware, ...] = ()
        """The middleware with an ``on_enqueue``: empty means the enqueue path skips it all."""

    def add(self, middleware: Middleware) -> None:
        if not isinstance(middleware, Middleware):
            raise ConfigurationError(
                f"middleware must be an instance of an aqueue.Middleware subclass, "
                f"not {middleware!r}"
            )
        self._all.append(middleware)
        self.enqueue = tuple(m for m in self._all if _overrides(m, "on_enqueue"))

    def metadata(
        self, job_id: str, config: TaskConfig, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> dict[str, str]:
        """Run the enqueue middleware on one job; the metadata they set."""
        job = OutgoingJob(job_id, config, args, kwargs)
        for middleware in self.enqueue:
            middleware.on_enqueue(job)
        for name, value in job.metadata.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise ConfigurationError(
                    f"job metadata must map strings to strings, not {name!r}: {value!r}; "
                    "encode other values (str(), json.dumps) in the middleware"
                )
        return job.metadata

    def for_runs(self) -> RunMiddleware | None:
        """What a worker runs around each job, or None when no middleware acts there."""
        run_side = RunMiddleware(self._all)
        return run_side if run_side.active else None


@dataclass(slots=True)
class _RunRecord:
    """What one run produced, gathered for the signals that follow its outcome."""

    job: JobContext | None = None
    """Set once the task is called; None when the entry was dead-lettered before."""
    result: Any = None


# The run in progress in this asyncio task: set by RunMiddleware.run around the runner, filled
# in by the wrapped call inside it, so the runner's code need not pass it along.
_current_run: ContextVar[_RunRecord] = ContextVar("aqueue_run")

Handler: TypeAlias = Callable[..., Awaitable[None]]


class RunMiddleware:
    """The worker side of the middleware: the around-run chain and the signals."""

    def __init__(self, middleware: Sequence[Middleware]) -> None:
        def bound(method: str) -> list[Any]:
            return [getattr(m, method) for m in middleware if _overrides(m, method)]

        self._around: list[Callable[[JobContext, CallNext], Awaitable[Any]]] = bound("around_run")
        self._started: list[Handler] = bound("on_started")
        self._succeeded: list[Handler] = bound("on_succeeded")
        self._failed: list[Handler] = bound("on_failed")
        self._retried: list[Handler] = bound("on_retried")
        self.active = any(
            [self._around, self._started, self._succeeded, self._failed, self._retried]
        )

    def wrap(self, call: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        """``call`` (the runner's call of a task) with the signal and the middleware around it."""

        @functools.wraps(call)
        async def wrapped(*args: P.args, **kwargs: P.kwargs) -> Any:
            run = _current_run.get()
            job = run.job = _current.get()
            await _notify(self._started, job)
            chain: CallNext = functools.partial(call, *args, **kwargs)
            for around in reversed(self._around):
                chain = functools.partial(around, job, chain)
            run.result = await chain()
            return run.result

        return wrapped

    async def run(
        self,
        runner: Callable[[Delivery, int], Awaitable[Outcome]],
        delivery: Delivery,
        attempt: int,
    ) -> Outcome:
        """Run ``delivery`` through ``runner``, then signal its outcome."""
        run = _RunRecord()
        token = _current_run.set(run)
        try:
            outcome = await runner(delivery, attempt)
        finally:
            _current_run.reset(token)
        job = run.job
        if job is None:
            return outcome
        # current_job() works in the handlers too, e.g. to enqueue a follow-up job.
        current = _current.set(job)
        try:
            if outcome.status == "succeeded":
                await _notify(self._succeeded, job, run.result)
            elif outcome.error is not None and outcome.status == "scheduled":
                await _notify(self._retried, job, outcome.error, outcome.retry_delay_ms / 1000)
            elif outcome.error is not None:
                await _notify(self._failed, job, outcome.error)
        finally:
            _current.reset(current)
        return outcome


async def _notify(handlers: list[Handler], job: JobContext, *args: Any) -> None:
    for handler in handlers:
        try:
            await handler(job, *args)
        except Exception:
            # A signal only observes: its failure must not change or lose the job's outcome.
            logger.exception(
                "middleware %s failed for job %s; the job's outcome is recorded as it was",
                getattr(handler, "__qualname__", repr(handler)),
                job.id,
            )
