"""A task's and a job's options, each declared once: its name, type and meaning here, its
default in :class:`aqueue._task.TaskConfig`, its check in :data:`CHECKS`.

``App.task(**options)`` takes :class:`TaskOptions` and ``Task.options(**options)`` (and a
signature's) takes :class:`JobOptions`, unpacked, so type checkers check every call by these
declarations; the value each call sets is the one :data:`CHECKS` makes of what was passed, and
lands in the task's :class:`~aqueue._task.TaskConfig`, which every path reads (the enqueue, its
middleware, the worker).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Final, TypedDict

from ._checks import seconds, whole_number, whole_seconds
from ._job import Job
from ._limits import max_concurrency as check_concurrency
from ._limits import rate_limit as check_rate
from ._redis._keys import DEFAULT_PRIORITY, PRIORITIES, check_name, queue_of
from .backoff import Backoff
from .exceptions import ConfigurationError


class _Options(TypedDict, total=False):
    """The options of both a task and a job. None, or leaving one out, keeps its default (for
    a job: the task's value)."""

    queue: str | None
    """The queue its jobs go to; by default the app's route for the task's name (``routes``),
    else its ``default_queue``."""
    result_ttl: float | timedelta | None
    """Seconds (or a timedelta) its result is kept; 0 keeps none (fire and forget). By
    default the app's ``result_ttl``."""
    timeout: float | timedelta | None
    """Seconds (or a timedelta) a run may take before it is cancelled and fails."""
    priority: int | None
    """0 (lowest) to 9 (highest): with a backlog, a worker runs higher levels first. Jobs
    that set none run at 5, which leaves room below and above."""


class TaskOptions(_Options, total=False):
    """The options of :meth:`App.task`: how the task's jobs run, set at registration."""

    name: str | None
    """The name the task is registered and enqueued under; by default ``module.qualname``
    of the function."""
    retries: int | None
    """How many times a failed run is tried again (0)."""
    retry_on: tuple[type[BaseException], ...] | None
    """Exception types that are retried; others fail at once (``(Exception,)``)."""
    backoff: Backoff | None
    """How long to wait before each retry (see :mod:`aqueue.backoff`; exponential)."""
    dead_letter_failures: bool | None
    """Also put jobs that failed for good in the dead-letter stream, so they can be replayed."""
    rate_limit: str | float | None
    """Most jobs let through by all workers together, as ``"N/s"``, ``"N/m"`` or ``"N/h"``
    (or a number per second), spaced evenly; jobs that come too early wait, status
    ``scheduled``, without holding a worker slot."""
    max_concurrency: int | None
    """Most jobs running at once on all workers together."""


class JobOptions(_Options, total=False):
    """The options of :meth:`Task.options` (and :meth:`Signature.options`): set for the jobs
    one copy of a task enqueues."""

    delay: float | timedelta | None
    """Run no sooner than this many seconds from now (on the Redis server's clock); the
    job's status is ``scheduled`` until then."""
    at: datetime | None
    """Run no sooner than this time (an aware datetime)."""
    wait: bool | None
    """When the queue holds its ``max_queue_length``, wait for room instead of raising
    :class:`QueueFull` (bound the wait with ``asyncio.timeout``)."""
    key: str | None
    """Uniqueness: while a job with this key is queued, scheduled or running, enqueueing
    again returns that job instead of adding one."""
    key_ttl: float | timedelta | None
    """Keep deduplicating for this long after the job ended (needs ``key``)."""
    after: Iterable[Job[Any] | str] | None
    """Jobs (or job ids) that must succeed first: the job waits (status ``scheduled``) and
    is enqueued when the last of them succeeded; when one fails or is cancelled, it fails
    with "dependency failed" and never runs."""
    expires: float | timedelta | datetime | None
    """Seconds (or a timedelta) from now, or an aware datetime: a job not started by then is
    not run but ends ``cancelled`` (reason: expired)."""


def check_priority(value: int) -> int:
    """``value`` if it is a priority level, else raise ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in PRIORITIES:
        raise ConfigurationError(
            f"priority must be a whole number from {PRIORITIES[0]} (lowest) to "
            f"{PRIORITIES[-1]} (highest), not {value!r}; jobs that set none run at "
            f"{DEFAULT_PRIORITY}"
        )
    return value


def check_task_name(name: object) -> str:
    """``name`` if it can name a task, else raise ConfigurationError."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a task name must be a non-empty string, not {name!r}")
    return name


def _retry_on(value: object) -> tuple[type[BaseException], ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        raise ConfigurationError(f"retry_on must be a tuple of exception types, not {value!r}")
    return value


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ConfigurationError(
            f"{what} must be an aware datetime (with a timezone), not {value!r}: "
            "use datetime.now(UTC) + timedelta(...) or attach tzinfo"
        )
    return value


def _key(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"key must be a non-empty string, not {value!r}")
    return value


def _expires(value: float | timedelta | datetime) -> float | datetime | None:
    if isinstance(value, datetime):
        return _aware(value, "expires")
    return seconds(value, "expires")


def _dependencies(after: Iterable[Job[Any] | str]) -> tuple[str, ...]:
    if not isinstance(after, Job | str | Iterable):
        raise ConfigurationError(
            f"after= takes a job or a job id, or several in a list, not {after!r}"
        )
    ids: list[str] = []
    for job in [after] if isinstance(after, Job | str) else after:
        if isinstance(job, Job) and not job._keeps_result:
            raise ConfigurationError(
                f"job {job.id} keeps no result (result_ttl=0), so nothing can wait for it"
            )
        job_id = job.id if isinstance(job, Job) else job
        queue_of(job_id)  # a malformed id fails here, not on a worker
        ids.append(job_id)
    return tuple(dict.fromkeys(ids))


CHECKS: Final[dict[str, Callable[[Any], object]]] = {
    "queue": lambda value: check_name("queue", value),
    "result_ttl": lambda value: whole_seconds(value, "result_ttl"),
    "timeout": lambda value: seconds(value, "timeout"),
    "priority": check_priority,
    "name": check_task_name,
    "retries": lambda value: whole_number(value, "retries", least=0),
    "retry_on": _retry_on,
    "backoff": lambda value: value,
    "dead_letter_failures": bool,
    "rate_limit": check_rate,
    "max_concurrency": check_concurrency,
    "delay": lambda value: seconds(value, "delay", allow_zero=True),
    "at": lambda value: _aware(value, "at"),
    "wait": bool,
    "key": _key,
    "key_ttl": lambda value: whole_seconds(value, "key_ttl"),
    "after": _dependencies,
    "expires": _expires,
}
"""What each option of :class:`TaskOptions` and :class:`JobOptions` becomes in a task's
configuration, checked (a bad value raises :class:`ConfigurationError` where it is written)."""


def checked(options: TaskOptions | JobOptions, declared: type, where: str) -> dict[str, Any]:
    """The options given (not None), each as :data:`CHECKS` makes it; ``declared``: the
    TypedDict of the options ``where`` takes (an untyped caller can pass any keyword)."""
    names = declared.__annotations__.keys()
    unknown = sorted(options.keys() - names)
    if unknown:
        raise ConfigurationError(
            f"{where} takes no option {', '.join(map(repr, unknown))}; its options are "
            f"{', '.join(sorted(names))} (see aqueue.{declared.__name__})"
        )
    return {name: CHECKS[name](value) for name, value in options.items() if value is not None}
