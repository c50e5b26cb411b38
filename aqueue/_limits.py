"""Cluster-wide limits of a task: a rate (GCRA on the server's clock) and a concurrency cap.

Both are kept in Redis under the queue's hash tag, so every worker of the app shares them and
the start script can acquire them in the same step that starts the job (no extra round trip).
A job a limit holds back leaves the stream for the queue's delayed set at once, so it holds no
worker slot while it waits:

- Rate: each job gets its own future slot (a reservation, ``tat`` of GCRA) and is let through
  when it comes back at that time, so a backlog drains at the rate instead of all coming back
  at one instant and being refused again.
- Concurrency: a refused job is parked; the release of a slot (run right after the outcome is
  written) makes the job parked longest due at once. A parked job is also due after one lease,
  in case no release ever comes (its holder died).

A concurrency slot is held by the running entry's id, and only while that entry is pending and
not idle for longer than the lease: the lease keeper's renewal of the entry (which resets its
idle time) renews the slot too, with no extra command, and a dead worker's slots come back
within the lease. Holders are scored by when they were last seen renewed, so a full limit
looks only at the holders that may have lapsed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ._checks import whole_number
from ._redis._calls import Call, StartLimits, release
from ._redis._keys import GROUP, Keys
from .exceptions import ConfigurationError

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*/\s*([smh])\s*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` jobs per ``period`` seconds, spaced evenly."""

    count: float
    period: float

    @property
    def interval_us(self) -> float:
        """Microseconds between two jobs let through."""
        return self.period * 1_000_000 / self.count


def rate_limit(value: str | float | None) -> RateLimit | None:
    """Parse ``"N/s"``, ``"N/m"``, ``"N/h"`` or a number of jobs per second.

    Raises:
        ConfigurationError: ``value`` is none of those, or not more than zero.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        count, period = float(value), 1.0
    elif isinstance(value, str) and (match := _RATE.fullmatch(value)):
        count, period = float(match[1]), _PERIODS[match[2]]
    else:
        raise ConfigurationError(
            f"rate_limit must be 'N/s', 'N/m' or 'N/h' (e.g. '100/s', '30/m') or a number "
            f"of jobs per second, not {value!r}"
        )
    if not 0 < count < math.inf:  # also refuses NaN
        raise ConfigurationError(
            f"rate_limit must let a finite number of jobs through, more than zero, not {value!r}"
        )
    return RateLimit(count, period)


def max_concurrency(value: int | None) -> int | None:
    """``value`` checked to be a positive whole number (or None: no limit)."""
    return None if value is None else whole_number(value, "max_concurrency")


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one task on one queue, with the keys they live under."""

    task: str
    keys: Keys
    rate: RateLimit | None
    concurrency: int | None

    @property
    def running(self) -> bytes:
        """Sorted set of the entry ids holding a concurrency slot, by last seen renewed (ms)."""
        return f"{self.keys.prefix}:limit:{self.task}:running".encode()

    @property
    def parked(self) -> bytes:
        """Sorted set of delayed-set members waiting for a concurrency slot, by when parked."""
        return f"{self.keys.prefix}:limit:{self.task}:parked".encode()

    def start_call(self, lease_ms: int) -> StartLimits:
        """What the start script takes to acquire these limits."""
        prefix = f"{self.keys.prefix}:limit:{self.task}"
        return StartLimits(
            rate_tat=f"{prefix}:tat".encode(),
            rate_reserved=f"{prefix}:reserved".encode(),
            holders=self.running,
            parked_line=self.parked,
            interval_us="" if self.rate is None else repr(self.rate.interval_us),
            most="" if self.concurrency is None else self.concurrency,
            lease=lease_ms,
        )

    def release_call(self, stream: bytes, entry_id: bytes) -> Call:
        """The release script's call for a finished (or handed back) entry."""
        return release(
            stream=stream,
            holders=self.running,
            parked_line=self.parked,
            delayed=self.keys.delayed,
            group=GROUP,
            entry_id=entry_id,
        )
