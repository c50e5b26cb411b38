"""Every error aqueue raises on purpose, under one root.

```
AqueueError
├── ConfigurationError        (also ValueError)   an option or a name is wrong
├── TaskRegistrationError                         two tasks under one name, unknown task
├── InvalidArguments          (also TypeError)    arguments do not bind to the task
├── SerializationError        (also TypeError)    an argument or a result is not encodable
├── PayloadTooLarge           (also ValueError)   the encoded job is over the size limit
├── QueueFull                                     the queue holds its max_queue_length
├── ConnectionFailed          (also ConnectionError) Redis could not be reached in time
├── ServerError                                   Redis refused a command (ACL, OOM, WRONGTYPE)
├── JobNotFound               (also LookupError)  no record of this job id
├── ResultTimeout             (also TimeoutError) waiting for a result ran out of time
├── JobCancelled                                  the job was cancelled before it finished
├── NotInJob                  (also LookupError)  current_job() outside a running task
├── ResourceNotProvided       (also LookupError)  no worker hook provided this resource
├── WorkerStartError                              an on_worker_start hook failed
└── TaskFailed                                    the task raised; carries the remote error
    ├── TaskTimeout                               the task ran past its time limit
    └── ResultTooLarge                            the task's result is over the size limit
```

``aqueue.Retry`` is not an error but a request: raise it in a task to be tried again.

A job that fails on a worker carries the name of its error's type (``TaskFailed.type``): the
qualified name of the task's exception, or one of :class:`ErrorType` for what aqueue itself
decided (a timeout, an unknown task, a cancellation, ...).

redis-py's own exceptions never leave the public API: they are wrapped at the boundary
(``raise ConnectionFailed(...) from exc``).
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "AqueueError",
    "ConfigurationError",
    "ConnectionFailed",
    "ErrorType",
    "InvalidArguments",
    "JobCancelled",
    "JobNotFound",
    "NotInJob",
    "PayloadTooLarge",
    "QueueFull",
    "ResourceNotProvided",
    "ResultTimeout",
    "ResultTooLarge",
    "Retry",
    "SerializationError",
    "ServerError",
    "TaskFailed",
    "TaskRegistrationError",
    "TaskTimeout",
    "WorkerStartError",
]


class ErrorType(enum.StrEnum):
    """The error types aqueue records for a job itself, as ``TaskFailed.type`` and
    ``JobInfo.error.type`` name them (strings: ``failure.type == ErrorType.UNKNOWN_TASK``).

    An exception a task raises is named by its class instead, e.g. ``"builtins.ValueError"``.
    """

    TASK_TIMEOUT = "aqueue.TaskTimeout"
    """The task ran past its timeout (raised as :class:`TaskTimeout`)."""
    RESULT_TOO_LARGE = "aqueue.ResultTooLarge"
    """The task's result is over the size limit (raised as :class:`ResultTooLarge`)."""
    CANCELLED = "aqueue.JobCancelled"
    """The job was cancelled, by request or purged from its queue."""
    EXPIRED = "aqueue.Expired"
    """The job's ``expires`` passed before a worker started it (it ends cancelled)."""
    UNKNOWN_TASK = "aqueue.UnknownTask"
    """No live worker knew the job's task for ``unknown_task_grace`` (dead-lettered)."""
    INVALID_ARGUMENTS = "aqueue.InvalidArguments"
    """The job's arguments do not bind to the task on the worker (dead-lettered)."""
    INVALID_OPTIONS = "aqueue.InvalidOptions"
    """The entry's options cannot be read (dead-lettered)."""
    UNDECODABLE_ENTRY = "aqueue.UndecodableEntry"
    """The entry lacks a job id, task or payload (dead-lettered)."""
    UNDECODABLE_PAYLOAD = "aqueue.UndecodablePayload"
    """The serializer cannot decode the job's arguments (dead-lettered)."""
    POISON = "aqueue.Poison"
    """Delivered more than ``max_deliveries`` times without an outcome (dead-lettered)."""
    WORKER_ERROR = "aqueue.WorkerError"
    """The worker could not handle the entry: a bug of aqueue's (dead-lettered)."""
    DEPENDENCY_FAILED = "aqueue.DependencyFailed"
    """A job this one waited for (``after=``) failed or was cancelled."""
    JOB_NOT_FOUND = "aqueue.JobNotFound"
    """A job this one waited for has no record."""
    UNKNOWN_ERROR = "aqueue.UnknownError"
    """The record of a failure names no error."""


class AqueueError(Exception):
    """The root of every error aqueue raises on purpose."""


class ConfigurationError(AqueueError, ValueError):
    """An option, a queue name or a URL is not valid."""


class TaskRegistrationError(AqueueError):
    """A task name is registered twice, or no task is registered under a name."""


class InvalidArguments(AqueueError, TypeError):
    """The arguments given to ``enqueue`` do not bind to the task's signature."""


class SerializationError(AqueueError, TypeError):
    """An argument or a result cannot be encoded by the app's serializer."""


class PayloadTooLarge(AqueueError, ValueError):
    """The encoded job is larger than the app's ``max_payload_size``; nothing was written."""


class QueueFull(AqueueError):
    """The queue holds its ``max_queue_length``; the job was not written.

    Retry later, or enqueue with ``task.options(wait=True)`` to wait for room.

    Attributes:
        jobs: The jobs of an ``enqueue_many`` batch enqueued before the queue filled.
    """

    jobs: list[Any]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.jobs = []


class ConnectionFailed(AqueueError, ConnectionError):
    """Redis could not be reached (or stopped answering) within the allowed time."""


class ServerError(AqueueError):
    """Redis refused a command: missing ACL permissions, ``maxmemory`` reached, or a key of
    the wrong type under aqueue's namespace."""


class JobNotFound(AqueueError, LookupError):
    """No record of the job: never enqueued, enqueued without a result, or expired."""


class ResultTimeout(AqueueError, TimeoutError):
    """``job.result(timeout=...)`` ran out of time; the job itself goes on."""


class JobCancelled(AqueueError):
    """The job was cancelled and will not produce a result."""


class NotInJob(AqueueError, LookupError):
    """``current_job()`` was called outside of a task run by a worker."""


class ResourceNotProvided(AqueueError, LookupError):
    """A task asked for a resource that no ``on_worker_start`` hook provided."""


class WorkerStartError(AqueueError):
    """An ``on_worker_start`` hook raised, so the worker did not start (the cause is chained)."""


class TaskFailed(AqueueError):
    """The task raised an exception on the worker.

    Attributes:
        job_id: The id of the job that failed.
        type: The qualified name of the remote exception's type, e.g. ``"builtins.ValueError"``.
        message: ``str()`` of the remote exception.
        traceback: The formatted remote traceback, as text.
    """

    def __init__(self, job_id: str, type: str, message: str, traceback: str) -> None:
        super().__init__(f"job {job_id} failed with {type}: {message}")
        self.job_id = job_id
        self.type = type
        self.message = message
        self.traceback = traceback
        if traceback:
            # As concurrent.futures does for a worker process's error: a printed traceback
            # (traceback.print_exc(), an uncaught error, pytest) shows where the task failed
            # on the worker, then "the direct cause of" where the caller awaited it.
            self.__cause__ = _RemoteTraceback(traceback)


class _RemoteTraceback(AqueueError):
    """The traceback a task's exception had on the worker; only ever a ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__("the task's traceback on the worker:\n" + text.rstrip("\n"))


class TaskTimeout(TaskFailed):
    """The task ran longer than its ``timeout`` and was cancelled on the worker."""


class ResultTooLarge(TaskFailed):
    """The task's encoded result is larger than the app's ``max_result_size`` (or than the
    server takes in one value), so the job failed instead of storing it.

    A waiter sees it as a :class:`TaskFailed` whose ``type`` is :attr:`ErrorType.RESULT_TOO_LARGE`.
    """


class Retry(Exception):
    """Raise inside a task to run it again later, counting as one of its ``retries``.

    Args:
        delay: Seconds to wait; ``None`` uses the task's backoff policy.
    """

    def __init__(self, delay: float | None = None) -> None:
        super().__init__(
            f"retry requested (delay {delay} s)" if delay is not None else "retry requested"
        )
        self.delay = delay
