"""Checks of the values users pass in: durations and counts, with errors that say what to
pass instead."""

from __future__ import annotations

import math
from datetime import timedelta

from .exceptions import ConfigurationError

MAX_SECONDS = 100 * 365 * 24 * 3600
"""The longest duration aqueue takes (about 100 years). Redis refuses expiry times far beyond
it, and the enqueue script must not fail at its EXPIRE after its XADD ran."""


def seconds(
    value: float | timedelta | None, what: str, *, allow_zero: bool = False
) -> float | None:
    """``value`` in seconds, checked to be finite, at most :data:`MAX_SECONDS` and positive
    (or zero where allowed)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{what} must be a number of seconds or a timedelta, not {value!r}"
        )
    if value < 0 or (value == 0 and not allow_zero):
        expected = "zero or more" if allow_zero else "more than zero"
        raise ConfigurationError(f"{what} must be {expected} seconds, not {value!r}")
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ConfigurationError(
            f"{what} must be at most {MAX_SECONDS:,} seconds (about 100 years), not {value!r}"
        )
    return float(value)


def whole_seconds(value: float | timedelta, what: str) -> int:
    """A TTL in the whole seconds Redis keeps: a fraction rounds up, so that 0.5 s keeps a
    result for a second rather than not at all (0 means "keep none")."""
    return math.ceil(seconds(value, what, allow_zero=True) or 0)


def whole_number(value: object, what: str, *, least: int = 1) -> int:
    """``value`` if it is a whole number of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(
            f"{what} must be a whole number of at least {least}, not {value!r}"
        )
    return value
