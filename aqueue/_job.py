"""A handle on one enqueued job: its status, its details and its result."""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import enum
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeGuard, TypeVar, cast

import orjson

from ._checks import seconds
from ._depend import ERROR_MARK
from ._events import named_queues
from ._redis import _calls as scripts
from ._redis._errors import translate_errors
from ._redis._keys import FOLLOWED_TTL, Keys, keys_of, queue_of
from ._redis._wire import ENTRY
from .exceptions import (
    ConnectionFailed,
    ErrorType,
    JobCancelled,
    JobNotFound,
    ResultTimeout,
    SerializationError,
    TaskFailed,
    TaskTimeout,
)

if TYPE_CHECKING:
    from ._app import App
    from ._connections import Connections
    from ._typed import Conversion

R = TypeVar("R")

_DUE_AT = b"due_at"
"""The record's field of a scheduled job's due time (ms)."""

_FIELDS = (
    b"status",
    b"task",
    b"attempts",
    b"enqueued_at",
    b"started_at",
    b"finished_at",
    b"worker",
    b"progress",
    b"progress_message",
    b"error",
    _DUE_AT,
    b"result",
)


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    """In its queue's stream, waiting for a worker."""
    SCHEDULED = "scheduled"
    """Waiting for its time to come, or for a retry."""
    RUNNING = "running"
    """A worker runs it now."""
    SUCCEEDED = "succeeded"
    """It returned; ``result()`` gives the value."""
    FAILED = "failed"
    """It raised (or could not run); ``result()`` raises :class:`aqueue.TaskFailed`."""
    CANCELLED = "cancelled"
    """It was cancelled; ``result()`` raises :class:`aqueue.JobCancelled`."""
    UNKNOWN = "unknown"
    """No record: never enqueued, kept no result (``result_ttl=0``), or the record expired."""

    @property
    def is_final(self) -> bool:
        """Whether the job has reached an end and will not change any more."""
        return self in _FINAL


_FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclasses.dataclass(frozen=True)
class RemoteError:
    """The exception a task raised on a worker."""

    type: str
    """Qualified name of the exception type, e.g. ``"builtins.ValueError"``."""
    message: str
    traceback: str
    timed_out: bool = False


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """A snapshot of a job's record."""

    id: str
    status: JobStatus
    task: str | None = None
    attempts: int = 0
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    error: RemoteError | None = None
    due_at: datetime | None = None
    """When a ``scheduled`` job (delayed, or waiting for a retry) is due."""
    result: Any = None
    """The returned value once the job ``succeeded`` (read in the same step as the status)."""


class Job(Generic[R]):
    """A handle on an enqueued job. Cheap to make: ``app.job(id)`` gives one from an id.

    Attributes:
        id: The job's id, ``"<queue>:<hex>"``; pass it around to find the job elsewhere.
        queue: The queue the job was enqueued to.
    """

    __slots__ = ("_app", "_connections", "_keeps_result", "_task", "id", "queue")

    def __init__(
        self,
        app: App,
        connections: Connections,
        job_id: str,
        *,
        keeps_result: bool = True,
        task: str | None = None,
        queue: str | None = None,
    ) -> None:
        # Made for every enqueued job: key names are worked out only when a read needs them,
        # and the id is checked only when the caller does not know its queue (one it made).
        self._app = app
        self._connections = connections
        self.id = job_id
        self.queue = queue_of(job_id) if queue is None else queue
        self._keeps_result = keeps_result
        self._task = task
        """The task whose return annotation the result has, when the handle was made by
        enqueueing (a chain's is its last step's); else the record's task is read."""

    @property
    def _keys(self) -> Keys:
        return keys_of(self._app.namespace, self.queue)

    @property
    def _key(self) -> bytes:
        """The job's record."""
        return self._keys.job(self.id)

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other._app is self._app

    def __hash__(self) -> int:
        return hash(self.id)

    async def status(self) -> JobStatus:
        """The job's current status (``unknown`` when there is no record of it)."""
        with translate_errors(self._app.url):
            [raw] = await self._read(b"status")
        return JobStatus.UNKNOWN if raw is None else JobStatus(raw.decode())

    async def info(self) -> JobInfo:
        """Everything the job's record says: status, attempts, timestamps, worker, progress,
        and the result once it succeeded (one read: no waiting machinery for a poll)."""
        with translate_errors(self._app.url):
            values = await self._read(*_FIELDS)
        raw = dict(zip(_FIELDS, values, strict=True))
        info = _info_from(self.id, raw)
        if info.status is JobStatus.SUCCEEDED and raw[b"result"] is not None:
            task = self._task or info.task
            try:
                value = self._typed(self._app.serializer.loads(raw[b"result"]), task)
            except Exception:
                return info  # not readable with this app's serializer: result() says why
            if _holds_marks(value):
                value = _members_failed(value, raw[b"task"])
            return dataclasses.replace(info, result=value)
        return info

    async def result(self, timeout: float | timedelta | None = None) -> R:
        """Wait for the job to end and return its value.

        Args:
            timeout: Seconds (or a timedelta) to wait at most; ``None`` waits as long as it
                takes.

        Raises:
            TaskFailed: The task raised (:class:`TaskTimeout` when it ran out of time).
            JobCancelled: The job was cancelled.
            ResultTimeout: ``timeout`` passed first; the job goes on.
            JobNotFound: There is no record to wait for (see :attr:`JobStatus.UNKNOWN`).
        """
        if not self._keeps_result:
            raise JobNotFound(
                f"job {self.id} was enqueued with result_ttl=0 (fire and forget): it keeps no "
                "result to wait for. Give it a result_ttl to await its result."
            )
        wait = seconds(timeout, "timeout", allow_zero=True)
        deadline = None if wait is None else time.monotonic() + wait
        with translate_errors(self._app.url):
            # Woken by final statuses only: "running" or "progress" would cost a read each.
            async with self._watch(only=_FINAL_RAW) as woken:
                while True:
                    # Cleared before reading: a wake-up that lands during the read must stay.
                    woken.clear()
                    status, result, error = await self._read(b"status", b"result", b"error")
                    if status is None or status in _FINAL_RAW:
                        value = self._outcome(status, result, error)
                        if _holds_marks(value):
                            # Only a group's result holds its failed members as marks: the
                            # record says whether it is one (read in this rare case only).
                            return cast(R, _members_failed(value, await self._read_task()))
                        if self._task is None and _typed_results(self._app):
                            # A handle from app.job(id): the record names the task.
                            task = (await self._read_task() or b"").decode()
                            return cast(R, self._typed(value, task))
                        return cast(R, self._typed(value, self._task))
                    # Only this wait is bounded by the timeout, never a Redis command in
                    # flight: cancelling one mid-reply is what corrupted redis-py connections.
                    remaining = None if deadline is None else deadline - time.monotonic()
                    try:
                        # asyncio.timeout, not wait_for: no task of its own, so the
                        # wake-up that ends the wait reaches us one loop turn sooner.
                        async with asyncio.timeout(remaining):
                            await woken.wait()
                    except TimeoutError:
                        raise ResultTimeout(await self._still_waiting(wait)) from None

    async def _read_task(self) -> bytes | None:
        [task] = await self._connections.direct.commands([(b"HGET", self._key, b"task")])
        return cast("bytes | None", task)

    def _typed(self, value: Any, task_name: str | None) -> Any:
        """``value`` as the return type its task (when registered on this app) annotates."""
        conversion = _result_conversion(self._app, task_name)
        if conversion is None or value is None:
            return value
        try:
            return conversion.from_wire(value)
        except Exception as exc:
            raise SerializationError(
                f"the result of job {self.id} does not convert into {task_name}'s return "
                f"annotation: {exc}. Was the task's return type changed since the job ran?"
            ) from exc

    async def _still_waiting(self, wait: float | None) -> str:
        """What :class:`ResultTimeout` says: a job still queued when the wait ends most often
        has no worker serving its queue (the quickstart's first trap)."""
        message = f"job {self.id} did not finish within {wait:g} s (it goes on; wait again"
        [status] = await self._read(b"status")
        if status == JobStatus.QUEUED.value.encode():
            return (
                f"{message}): it is still queued, so no worker has taken it. Is a worker "
                f"serving queue {self.queue!r}? (aqueue worker APP -q {self.queue}, with "
                f"namespace {self._app.namespace!r} and this app's Redis URL){self._typo()}"
            )
        return f"{message} or check job.status())"

    def _typo(self) -> str:
        """A hint when the job's queue looks like a misspelt queue of the app's: a worker
        started without ``-q`` serves only the queues its app names."""
        named = named_queues(self._app)
        alike = difflib.get_close_matches(self.queue, named)
        if self.queue in named or not alike:
            return ""
        return f". This app names no queue {self.queue!r}: did you mean {alike[0]!r}?"

    async def cancel(self) -> bool:
        """Cancel the job unless it already ended.

        A queued or scheduled job never runs. A running one is cancelled on its worker within
        about a second (a synchronous task's thread cannot be interrupted: it runs on, but its
        outcome is dropped). Either way the status is ``cancelled`` at once, ``result()``
        raises :class:`JobCancelled`, and a uniqueness key the job held is freed.

        A job enqueued with ``result_ttl=0`` keeps no record, so nothing tells whether it
        already ran: cancelled through the handle its enqueue returned, it does not start
        from now on (within the hour the workers keep cancellations) and a run is stopped;
        its status stays ``unknown``.

        Returns:
            True if this call cancelled the job; False if it had already ended.

        Raises:
            JobNotFound: There is no record of the job (never enqueued, or expired; or
                ``result_ttl=0`` and this handle does not know it): nothing to cancel.
        """
        from ._cancel import cancel

        return await cancel(
            self._app,
            self._connections,
            self.id,
            keeps_record=self._keeps_result,
            task=self._task,
        )

    async def events(self) -> AsyncIterator[JobInfo]:
        """Follow the job: a snapshot each time its status or progress changes.

        The first snapshot is the job's state now; the iteration ends after the job ends
        (its last snapshot has a final status). Changes that come faster than they are read
        are merged into the next snapshot, which is always the latest state.

        Raises:
            JobNotFound: There is no record of the job to follow.
        """
        last: JobInfo | None = None
        with translate_errors(self._app.url):
            async with self._following(), self._watch() as woken:
                while True:
                    woken.clear()  # before the read: a change during the read wakes us again
                    info = await self.info()
                    if info.status is JobStatus.UNKNOWN:
                        if last is None:
                            raise JobNotFound(f"no record of job {self.id} to follow")
                        return  # deleted (purged) while followed
                    if last is None or _changed(last, info):
                        last = info
                        yield info
                    if info.status.is_final:
                        return
                    await woken.wait()

    @asynccontextmanager
    async def _following(self) -> AsyncIterator[None]:
        """Count this follower in the queue's followed set (Keys.followed) while inside: the
        start script tells only followed jobs that they run. Counted before the subscription,
        so a start after the first read is told."""
        followed, member = self._keys.followed, self.id.encode()
        await self._connections.direct.commands(
            [(b"ZINCRBY", followed, b"1", member), (b"EXPIRE", followed, FOLLOWED_TTL)]
        )
        try:
            yield
        finally:
            # A count left behind (a follower gone without this) only has the job's start told
            # to nobody, until the set expires.
            await self._connections.direct.commands(
                [
                    (b"ZINCRBY", followed, b"-1", member),
                    (b"ZREMRANGEBYSCORE", followed, b"-inf", b"0"),
                ]
            )

    async def _read(self, *fields: bytes) -> list[bytes | None]:
        """``fields`` (``status`` first) of the job's record. A queued job that has no record
        yet reads as ``status: queued`` with its task and enqueue time (see Keys.queued); so
        does a scheduled one that has left the delayed set (see _scheduled_status)."""
        # The "queued" field first: the start script moves it into the record in one step,
        # so a job between the two reads is found in the second, never in neither.
        queued, values = cast(
            "tuple[bytes | None, list[bytes | None]]",
            await self._connections.direct.commands(
                [
                    (b"HGET", self._keys.queued(self.id), self.id.partition(":")[2]),
                    (b"HMGET", self._key, *fields),
                ]
            ),
        )
        if values[0] == _SCHEDULED:
            now = await self._scheduled_status()
            if now not in (_SCHEDULED, _QUEUED):
                return await self._read(*fields)  # it moved on since: read it whole again
            values[0] = now
        if queued is None or values[0] is not None:
            return values
        entry, _, level = queued.partition(b" ")
        known: dict[bytes, bytes | None] = {
            b"status": _QUEUED,
            b"enqueued_at": entry.partition(b"-")[0],
        }
        if b"task" in fields:
            # Only the stream entry names the task: one more round trip, for info() alone.
            stream = self._keys.stream_at(int(level)) if level else self._keys.stream
            found, values = cast(
                "tuple[list[tuple[bytes, list[bytes]]], list[bytes | None]]",
                await self._connections.direct.commands(
                    [(b"XRANGE", stream, entry, entry), (b"HMGET", self._key, *fields)]
                ),
            )
            if values[0] is not None:
                return values  # it started meanwhile
            pairs = found[0][1] if found else []
            known[b"task"] = dict(zip(pairs[::2], pairs[1::2], strict=True)).get(ENTRY.task)
        return [known.get(field) for field in fields]

    async def _scheduled_status(self) -> bytes:
        """The status, as it is now, of the job whose record said scheduled: the look that
        moves a due job into its stream leaves its record as it was (lua/poll.lua), so one
        that has left the delayed set is queued, until its start marks it running (see
        lua/moved.lua)."""
        call = scripts.moved(delayed=self._keys.delayed, record=self._key, job_id=self.id)
        return cast("bytes", await self._connections.direct.call(call))

    @asynccontextmanager
    async def _watch(self, *, only: frozenset[bytes] | None = None) -> AsyncIterator[asyncio.Event]:
        # The subscription is a round trip: bounded like any command, not by the caller's
        # timeout (which bounds the wait for the job, and may be 0 for a finished job).
        subscribing = True
        try:
            async with self._connections.result_waiter.watch(
                self._key, SUBSCRIBE_TIMEOUT, only=only
            ) as woken:
                subscribing = False
                yield woken
        except TimeoutError:
            if not subscribing:
                raise
            raise ConnectionFailed(
                f"Redis did not confirm the subscription for job {self.id} within "
                f"{SUBSCRIBE_TIMEOUT} s; check the server"
            ) from None

    def _outcome(self, status: bytes | None, result: bytes | None, error: bytes | None) -> R:
        if status is None:
            raise JobNotFound(
                f"no record of job {self.id}: it was never enqueued, was enqueued with "
                "result_ttl=0, or its record expired after its result_ttl"
            )
        if status == b"succeeded":
            return cast(R, None if result is None else self._app.serializer.loads(result))
        if status == b"cancelled":
            why = "" if error is None else f": {_error_from(error).message}"
            raise JobCancelled(f"job {self.id} was cancelled{why}")
        remote = _error_from(error)
        failure = TaskTimeout if remote.timed_out else TaskFailed
        raise failure(self.id, remote.type, remote.message, remote.traceback)


_FINAL_RAW = frozenset({b"succeeded", b"failed", b"cancelled"})
_QUEUED = JobStatus.QUEUED.value.encode()
_SCHEDULED = JobStatus.SCHEDULED.value.encode()
SUBSCRIBE_TIMEOUT = 10.0


def _changed(before: JobInfo, after: JobInfo) -> bool:
    return (before.status, before.attempts, before.progress, before.progress_message) != (
        after.status,
        after.attempts,
        after.progress,
        after.progress_message,
    )


GROUP_TASK = b"aqueue.group"
"""The ``task`` of a group's record (its job runs no task of its own)."""


def _holds_marks(value: object) -> TypeGuard[list[Any]]:
    """Whether ``value`` is a list holding a failed member's mark (see :data:`ERROR_MARK`)."""
    return isinstance(value, list) and any(
        isinstance(item, dict) and ERROR_MARK in item for item in value
    )


def _members_failed(values: list[Any], task: bytes | None) -> list[Any]:
    """A group's results with each failed member's mark made a :class:`TaskFailed`, as
    ``group(..., return_exceptions=True)`` promises (any other job's list as it is)."""
    if task != GROUP_TASK:
        return values
    return [_failure(value) for value in values]


def _failure(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(mark := value.get(ERROR_MARK), dict):
        return TaskFailed(
            str(mark.get("job", "")),
            str(mark.get("type", "")),
            str(mark.get("message", "")),
            str(mark.get("traceback", "")),
        )
    return value


def encode_error(
    error_type: str, message: str, traceback: str = "", *, timed_out: bool = False
) -> bytes:
    """The ``error`` field of a job's record, as :class:`RemoteError` reads it back."""
    return orjson.dumps(
        {"type": error_type, "message": message, "traceback": traceback, "timed_out": timed_out}
    )


def _time(raw: bytes | None) -> datetime | None:
    return None if raw is None else datetime.fromtimestamp(int(raw) / 1000, UTC)


def _error_from(raw: bytes | None) -> RemoteError:
    if raw is None:
        return RemoteError(ErrorType.UNKNOWN_ERROR, "the worker recorded no error", "")
    data: dict[str, Any] = orjson.loads(raw)
    return RemoteError(
        type=data.get("type", ErrorType.UNKNOWN_ERROR),
        message=data.get("message", ""),
        traceback=data.get("traceback", ""),
        timed_out=bool(data.get("timed_out", False)),
    )


def _typed_results(app: App) -> bool:
    """Whether a task registered on ``app`` has a return annotation to convert into."""
    return any(task._config.types.result for task in app.tasks.values())


def _result_conversion(app: App, task_name: str | None) -> Conversion | None:
    """How the result of the task named ``task_name`` converts, when this app registers it."""
    task = app.tasks.get(task_name) if task_name else None
    return None if task is None else task._config.types.result


def json_result(app: App, task_name: str | None, value: Any) -> Any:
    """A typed result as the JSON values its task's return annotation sends (a pydantic model
    as its fields, bytes as base64, a Decimal as text), for what shows a result to people or
    to other programs: orjson alone knows none of those."""
    conversion = _result_conversion(app, task_name)
    return value if conversion is None or value is None else conversion.to_wire(value)


def _info_from(job_id: str, raw: dict[bytes, bytes | None]) -> JobInfo:
    status = raw[b"status"]
    if status is None:
        return JobInfo(id=job_id, status=JobStatus.UNKNOWN)
    progress = raw[b"progress"]
    message = raw[b"progress_message"]
    task, worker, error = raw[b"task"], raw[b"worker"], raw[b"error"]
    if status == b"succeeded":
        error = None  # the record keeps a retried job's last failure: not its outcome now
    return JobInfo(
        id=job_id,
        status=JobStatus(status.decode()),
        task=None if task is None else task.decode(),
        attempts=int(raw[b"attempts"] or 0),
        enqueued_at=_time(raw[b"enqueued_at"]),
        started_at=_time(raw[b"started_at"]),
        finished_at=_time(raw[b"finished_at"]),
        worker=None if worker is None else worker.decode(),
        progress=None if progress is None else float(progress),
        progress_message=None if message is None else message.decode(),
        error=None if error is None else _error_from(error),
        # A record keeps its last due time once the job left the delayed set: a look moved it.
        due_at=_time(raw[_DUE_AT]) if status == _SCHEDULED else None,
    )
