"""Periodic tasks: when each tick falls. Firing them is the worker's (``_worker/_scheduler``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from .exceptions import ConfigurationError

Misfire = Literal["skip", "run_once"]

NICKNAMES = MappingProxyType(
    {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
)
"""The cron nicknames of crontab(5) and the fields they stand for. aqueue reads them itself, so
that any other word after an ``@`` is refused with this list rather than a count of fields."""


def last_tick_key(namespace: str, task_name: str) -> str:
    """The key holding the epoch time of a schedule's last fired tick (the workers write it;
    ``misfire="run_once"`` and the dashboard read it)."""
    return f"{namespace}:cron:{task_name}:last"


@dataclass(frozen=True)
class Schedule:
    """A task that runs on a schedule: once per tick, however many workers run."""

    task_name: str
    describe: str
    """The cron expression or the interval, for logs."""
    misfire: Misfire
    """What to do with ticks missed while no worker ran: ``skip`` them, or ``run_once``."""
    next_after: Callable[[float], float]
    """The first tick strictly after an epoch time (seconds), as an epoch time."""
    latest_until: Callable[[float], float]
    """The last tick at or before an epoch time, without walking tick by tick."""
    tick_id: Callable[[float], str]
    """A tick's identity. For cron it is the local wall-clock time, so the hour repeated when
    daylight saving time ends does not fire the same tick twice."""
    args: tuple[Any, ...] = ()
    """The positional arguments each tick's job is enqueued with."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """The keyword arguments each tick's job is enqueued with."""


def cron_schedule(task_name: str, expression: str, timezone: str, misfire: Misfire) -> Schedule:
    """A schedule from a cron expression: five fields, six with seconds first, or a nickname."""
    crontab = NICKNAMES.get(expression.lower(), expression)
    if crontab.startswith("@"):
        raise ConfigurationError(
            f"unknown cron nickname {expression!r}: use one of {', '.join(NICKNAMES)}, "
            "or five fields (minute hour day month weekday)"
        )
    fields = crontab.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(
        crontab, second_at_beginning=len(fields) == 6
    ):
        raise ConfigurationError(
            f"invalid cron expression {expression!r}: use five fields (minute hour day month "
            "weekday), six with seconds first, e.g. '*/5 * * * *', or a nickname such as "
            "'@hourly'"
        )
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"unknown timezone {timezone!r}, e.g. 'Europe/Paris'") from None
    seconds_first = len(fields) == 6

    def ticks(moment: float) -> Any:
        start = datetime.fromtimestamp(moment, zone)
        return croniter(crontab, start, second_at_beginning=seconds_first)

    def next_after(moment: float) -> float:
        tick: float = ticks(moment).get_next(float)
        return tick

    def latest_until(moment: float) -> float:
        # get_prev is strictly before its start: start a hair later to include `moment`.
        tick: float = ticks(moment + 0.0005).get_prev(float)
        return tick

    def tick_id(tick: float) -> str:
        return datetime.fromtimestamp(tick, zone).replace(tzinfo=None).isoformat()

    schedule = Schedule(
        task_name,
        f"cron {expression} ({timezone})",
        _misfire(misfire),
        next_after,
        latest_until,
        tick_id,
    )
    try:
        schedule.next_after(time.time())
    except (ValueError, KeyError) as exc:  # e.g. "0 0 30 2 *": valid, but never matches
        raise ConfigurationError(f"cron expression {expression!r} never matches: {exc}") from None
    return schedule


def every_schedule(task_name: str, every: float | timedelta, misfire: Misfire) -> Schedule:
    """A schedule of ticks every ``every``, aligned on multiples of it since the epoch."""
    period = every.total_seconds() if isinstance(every, timedelta) else float(every)
    if not period > 0:
        raise ConfigurationError(f"every must be more than zero seconds, not {every!r}")

    def next_after(moment: float) -> float:
        return (math.floor(moment / period) + 1) * period

    def latest_until(moment: float) -> float:
        return math.floor(moment / period) * period

    def tick_id(tick: float) -> str:
        return str(round(tick * 1000))

    return Schedule(
        task_name, f"every {period:g} s", _misfire(misfire), next_after, latest_until, tick_id
    )


def _misfire(value: Any) -> Misfire:
    if value not in ("skip", "run_once"):
        raise ConfigurationError(f"misfire must be 'skip' or 'run_once', not {value!r}")
    policy: Misfire = value
    return policy
