"""Running one delivery: decode it, find its task, call it, and turn what happened into an outcome.

Anything wrong with the entry itself (undecodable, unknown task, arguments that do not bind)
becomes a dead letter with the reason; the worker never crashes on bad input.
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from .._app import connections_of, middleware_of
from .._context import JobContext, ProgressReporter, _current
from .._hooks import ResourceKey
from .._job import encode_error
from .._redis._wire import ENTRY, PROTOCOL_VERSION, reads
from ..exceptions import (
    AqueueError,
    ErrorType,
    ResultTooLarge,
    Retry,
    SerializationError,
    TaskTimeout,
)
from ._outcome import Action, Delivery, Outcome
from ._threads import DaemonThreads

if TYPE_CHECKING:
    from .._app import App
    from .._task import Task

logger = logging.getLogger("aqueue.worker")

LEAST_BULK_LIMIT = 1 << 20
"""The smallest ``proto-max-bulk-len`` a server accepts: a value up to this always fits."""
DEFAULT_BULK_LIMIT = 512 << 20
"""A server's ``proto-max-bulk-len`` unless configured otherwise."""


class _DeadLetter(Exception):
    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class Runner:
    """Runs deliveries for one worker."""

    def __init__(
        self,
        app: App,
        worker_name: str,
        threads: int,
        resources: Mapping[ResourceKey[Any], Any],
    ) -> None:
        self._app = app
        self._connections = connections_of(app)
        self._worker_name = worker_name
        self._pool = DaemonThreads(threads, "aqueue-sync")
        self._log_each = logger.isEnabledFor(logging.INFO)
        self._resources = resources
        self._bulk_limit: int | None = None
        """The server's ``proto-max-bulk-len``, once a result large enough to need it came;
        until then every result fits (none is over the least a server takes)."""
        # Middleware read once, at the worker's start; None keeps a run free of them.
        self._middleware = middleware_of(app).for_runs()
        middleware = self._middleware
        self._invoke = self._call if middleware is None else middleware.wrap(self._call)

    async def run(self, delivery: Delivery, attempt: int) -> Outcome:
        """Run ``delivery`` as its ``attempt``-th try and return what to record.

        Cancellation from outside (worker shutdown) propagates; the caller hands the entry back.
        """
        if self._middleware is None:
            return await self._run(delivery, attempt)
        return await self._middleware.run(self._run, delivery, attempt)

    async def _run(self, delivery: Delivery, attempt: int) -> Outcome:
        started = time.perf_counter()
        try:
            task, args, kwargs, timeout = self._decode(delivery)
        except _DeadLetter as dead:
            logger.error("dead-lettered entry %s: %s", delivery.entry_id.decode(), dead.reason)
            return failure_outcome(
                delivery, dead.error_type, dead.reason, "", dead_reason=dead.reason
            )
        context = self._context(delivery, task.name, attempt)
        token = _current.set(context)
        try:
            value = await self._invoke(task, args, kwargs, timeout)
        except _TaskTimedOut:
            message = f"task ran longer than its timeout of {timeout} s"
            timed_out = TaskTimeout(context.id, ErrorType.TASK_TIMEOUT, message, "")
            await _flush_progress(context)
            return self._failed(delivery, task, attempt, timed_out, started)
        except (asyncio.CancelledError, SystemExit) as exc:
            if isinstance(exc, asyncio.CancelledError) and _cancelled_from_outside():
                raise  # the worker's: a shutdown, or the job was cancelled
            # Not the task's to raise: a CancelledError of its own (a library cancelled a
            # future it awaited) is no shutdown, and sys.exit() must not stop a worker that
            # runs other jobs. Either fails the job like any other error.
            own = RuntimeError(f"the task raised {type(exc).__name__} itself ({exc!r})")
            own.__cause__ = exc
            await _flush_progress(context)
            return self._failed(delivery, task, attempt, own, started)
        except Exception as exc:
            await _flush_progress(context)
            return self._failed(delivery, task, attempt, exc, started)
        finally:
            _current.reset(token)
        await _flush_progress(context)
        conversion = task._config.types.result
        try:
            if conversion is not None and value is not None:
                value = conversion.to_wire(value)
            encoded = self._app.serializer.dumps(value)
        except Exception as exc:
            error = SerializationError(
                f"task {task.name} returned a {type(value).__name__} that cannot be encoded: "
                f"{exc}. Return JSON values or a value of the task's return annotation."
            )
            return self._failed(delivery, task, attempt, error, started)
        size, limit = len(encoded), self._app.max_result_size
        if size > LEAST_BULK_LIMIT and self._bulk_limit is None:
            self._bulk_limit = await self._server_bulk_limit()
        if self._bulk_limit is not None:
            limit = min(limit, self._bulk_limit)
        if size > limit:
            # A value the server cannot (or must not) store would fail every write of the
            # outcome (over its bulk limit, the server even drops the connection): the job
            # fails instead, saying why.
            message = (
                f"task {task.name} returned a result of {size} bytes, over the limit "
                f"of {limit}: store large data elsewhere (a blob store, a database) and return "
                "its key, or raise App(max_result_size=...)"
            )
            too_large = ResultTooLarge(context.id, ErrorType.RESULT_TOO_LARGE, message, "")
            return self._failed(delivery, task, attempt, too_large, started)
        if self._log_each:
            self._log(delivery, f"succeeded in {_elapsed(started)}", logging.INFO)
        return Outcome(delivery, Action.FINISH, "succeeded", "result", encoded)

    async def _server_bulk_limit(self) -> int:
        """The most bytes the server takes in one value (``proto-max-bulk-len``): asked only
        once a result is larger than every server takes."""
        try:
            reply = await self._app.redis.config_get("proto-max-bulk-len")
            value = reply.get("proto-max-bulk-len")
            return int(value) if value else DEFAULT_BULK_LIMIT
        except (RedisError, OSError, ValueError):
            # Not allowed to ask (a minimal ACL user has no CONFIG): the default holds.
            return DEFAULT_BULK_LIMIT

    def _decode(self, delivery: Delivery) -> tuple[Task[Any, Any], list[Any], dict[str, Any], Any]:
        fields = delivery.fields
        if not reads(fields):
            raise _DeadLetter(
                ErrorType.UNDECODABLE_ENTRY,
                unread_version_reason(delivery, self._app.unknown_task_grace),
            )
        name, payload = delivery.task_name, fields.get(ENTRY.payload)
        if delivery.job_id is None or name is None or payload is None:
            raise _DeadLetter(ErrorType.UNDECODABLE_ENTRY, "entry lacks a job id, task or payload")
        task = self._app.tasks.get(name)
        if task is None:
            reason = unknown_task_reason(name, self._app.tasks, self._app.unknown_task_grace)
            raise _DeadLetter(ErrorType.UNKNOWN_TASK, reason)
        try:
            args, kwargs = self._app.serializer.loads(payload)
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ValueError("the payload is not [args, kwargs]")
        except Exception as exc:
            raise _DeadLetter(
                ErrorType.UNDECODABLE_PAYLOAD, f"cannot decode payload: {exc}"
            ) from None
        try:
            task._check_binds(args, kwargs)
        except TypeError as exc:
            raise _DeadLetter(
                ErrorType.INVALID_ARGUMENTS, f"arguments do not bind: {exc}"
            ) from None
        arguments = task._config.types.arguments
        if arguments is not None:
            try:
                args, kwargs = arguments.from_wire(args, kwargs)
            except TypeError as exc:
                reason = f"arguments do not convert into their annotated types: {exc}"
                raise _DeadLetter(ErrorType.INVALID_ARGUMENTS, reason) from None
        return task, args, kwargs, _timeout(fields.get(ENTRY.options), task._config.timeout)

    def _context(self, delivery: Delivery, task_name: str, attempt: int) -> JobContext:
        enqueued_ms = int(delivery.entry_id.split(b"-", 1)[0])
        return JobContext(
            id=delivery.job_id or "",
            task=task_name,
            queue=delivery.keys.queue,
            attempt=attempt,
            enqueued_at=datetime.fromtimestamp(enqueued_ms / 1000, UTC),
            worker=self._worker_name,
            _progress=(
                ProgressReporter(self._connections.direct, delivery.record, self._app.url)
                if delivery.result_ttl > 0
                else None
            ),
            _options=delivery.fields.get(ENTRY.options),
            _resources=self._resources,
        )

    async def _call(
        self, task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], timeout: Any
    ) -> Any:
        if not task.is_async:
            return await self._call_in_thread(task.fn, args, kwargs, timeout)
        if timeout is None:
            return await task.fn(*args, **kwargs)
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await task.fn(*args, **kwargs)
        except TimeoutError:
            if deadline.expired():
                raise _TaskTimedOut() from None
            raise

    async def _call_in_thread(
        self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], timeout: Any
    ) -> Any:
        # Sync tasks run in the worker's own pool, so they never block the loop and never
        # exceed `threads` at once. A thread cannot be interrupted: past its timeout the job
        # fails and its slot frees, while the thread runs on (still counted in the pool).
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        context = contextvars.copy_context()

        def run() -> Any:
            loop.call_soon_threadsafe(started.set)
            return context.run(fn, *args, **kwargs)

        future = loop.run_in_executor(self._pool, run)
        try:
            await started.wait()  # waiting for a free thread is not running: no timeout yet
        except asyncio.CancelledError:
            future.cancel()
            raise
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if not done:
            raise _TaskTimedOut()
        return future.result()

    def close(self) -> None:
        """Let go of the threads (those still running finish on their own, or stop when the
        process exits)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _failed(
        self,
        delivery: Delivery,
        task: Task[Any, Any],
        attempt: int,
        exc: Exception,
        started: float,
    ) -> Outcome:
        config = task._config
        if isinstance(exc, TaskTimeout | ResultTooLarge):
            # Its str() already says "job ... failed with aqueue.TaskTimeout: ...".
            type_name, message, text = exc.type, exc.message, ""
        else:
            kind = type(exc)
            # Escaped here already: the log lines below carry it too.
            type_name, message = f"{kind.__module__}.{kind.__qualname__}", _utf8(str(exc))
            text = "".join(traceback.format_exception(exc))
        wanted = isinstance(exc, (Retry, *config.retry_on))
        what = f"{type_name}: {message}" if message else type_name
        if wanted and attempt <= config.retries:
            delay = exc.delay if isinstance(exc, Retry) and exc.delay is not None else None
            if delay is None:
                delay = config.backoff.delay(attempt)
            self._log(
                delivery,
                f"attempt {attempt} failed in {_elapsed(started)} ({what}); "
                f"retry {attempt} of {config.retries} in {delay:.2f} s",
                logging.WARNING,
            )
            outcome = failure_outcome(
                delivery, type_name, message, text, status="scheduled", exception=exc
            )
            outcome.retry_delay_ms = int(delay * 1000)
            outcome.attempt = attempt
            return outcome
        # The job's end: an error to look into, with where the task failed (a retry to come
        # is a warning, without it). The traceback goes in as escaped text, not exc_info: a
        # UTF-8 log stream cannot carry a lone surrogate of the message.
        ending = f"failed in {_elapsed(started)}: {what}"
        self._log(delivery, f"{ending}\n{_utf8(text).rstrip()}" if text else ending, logging.ERROR)
        dead = f"failed after {attempt} attempt(s): {what}" if config.dead_letter_failures else ""
        return failure_outcome(
            delivery,
            type_name,
            message,
            text,
            timed_out=isinstance(exc, TaskTimeout),
            dead_reason=dead,
            exception=exc,
        )

    def _log(self, delivery: Delivery, what: str, level: int) -> None:
        logger.log(level, "job %s %s %s", delivery.job_id, delivery.task_name, what)


def _timeout(raw_options: bytes | None, default: float | None) -> float | None:
    """The job's time limit from its options (written by the producer), checked."""
    if raw_options is None:
        return default
    try:
        options = orjson.loads(raw_options)
    except orjson.JSONDecodeError as exc:
        raise _DeadLetter(ErrorType.INVALID_OPTIONS, f"cannot decode options: {exc}") from None
    timeout = options.get("timeout", default) if isinstance(options, dict) else False
    if timeout is None or (
        isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0
    ):
        return timeout
    raise _DeadLetter(ErrorType.INVALID_OPTIONS, f"invalid job options: {raw_options!r}")


class _TaskTimedOut(TimeoutError):
    """The task's own time limit ran out (not a TimeoutError raised by the task's code)."""


def failure_outcome(
    delivery: Delivery,
    error_type: str,
    message: str,
    text: str,
    *,
    status: str = "failed",
    timed_out: bool = False,
    dead_reason: str = "",
    exception: Exception | None = None,
) -> Outcome:
    """An outcome that records an error: a failure, a retry to schedule, or a dead letter."""
    message, text, dead_reason = _utf8(message), _utf8(text), _utf8(dead_reason)
    error = encode_error(error_type, message, text, timed_out=timed_out)
    outcome = Outcome(delivery, Action.FINISH, status, "error", error, dead_reason=dead_reason)
    outcome.error = exception
    return outcome


def expired_outcome(delivery: Delivery) -> Outcome:
    """The outcome of a job whose ``expires`` passed before it started: cancelled, not run."""
    message = "the job expired before a worker started it"
    return failure_outcome(delivery, ErrorType.EXPIRED, message, "", status="cancelled")


def unread_version_reason(delivery: Delivery, grace: float) -> str:
    """Why a job of a protocol version this worker does not read is dead-lettered."""
    version = delivery.fields.get(ENTRY.version, b"").decode(errors="replace")
    return (
        f"the entry is of protocol version {version!r}, which this worker does not read (it "
        f"reads up to {PROTOCOL_VERSION}), nor did a live worker that reads it read the queue "
        f"for {grace:g} s (unknown_task_grace): run workers of the release that wrote it"
    )


def unknown_task_reason(name: str, known: Iterable[str], grace: float) -> str:
    """Why a job of a task the worker's app lacks is dead-lettered (no live worker that knows
    it read its queue for ``grace`` seconds), with the registered names it likely meant: a
    typo, or a task whose name a script run as ``__main__`` set."""
    known = sorted(known)
    module, _, function = name.rpartition(".")
    # The same function in another module first: the worker imported, under its real module
    # name, the script that enqueued it as __main__.
    alike = [other for other in known if other.rpartition(".")[2] == function]
    alike += [other for other in difflib.get_close_matches(name, known) if other not in alike]
    reason = f"no task named {name!r} is registered on this worker's app"
    if alike:
        reason += f" (did you mean {' or '.join(repr(other) for other in alike[:3])}?)"
    reason += (
        f", nor did a live worker that knows it read the queue for {grace:g} s (unknown_task_grace)"
    )
    if module == "__main__":
        return (
            f"{reason}; a task defined in a script run as __main__ is named after __main__, "
            "which no worker imports: define it in a module both import, or give it a name "
            "with @app.task(name=...)"
        )
    return f"{reason}; deploy the task and replay the dead letter"


def _utf8(text: str) -> str:
    """``text`` as UTF-8 can carry it: an exception's message may hold lone surrogates (a
    file name decoded with surrogateescape), which neither JSON nor Redis take, and an
    error that cannot be written would leave its job running forever."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="backslashreplace").decode()
    return text


def _cancelled_from_outside() -> bool:
    """Whether the running asyncio task was asked to stop (Task.cancel()), rather than a
    CancelledError just raised through it."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def _flush_progress(context: JobContext) -> None:
    # The last progress report lands before the outcome (which ends the job's record).
    if context._progress is not None:
        try:
            await context._progress.flush()
        except AqueueError as exc:
            logger.warning("cannot record the progress of job %s: %s", context.id, exc)


def _elapsed(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.1f} ms"
