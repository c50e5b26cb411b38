"""How long a failed job waits before its next attempt.

```python
@app.task(retries=5, backoff=aqueue.backoff.exponential(base=1, factor=2, max=60))
async def call_partner() -> None: ...
```
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from .exceptions import ConfigurationError

__all__ = ["Backoff", "Exponential", "Fixed", "exponential", "fixed"]


class Backoff(Protocol):
    """A retry delay policy: seconds to wait after the given failed attempt (1 = first run)."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the attempt after ``attempt``."""
        ...


@dataclass(frozen=True)
class Exponential:
    """``base * factor ** (attempt - 1)`` seconds, capped at ``max``; with full jitter the
    wait is drawn uniformly from zero to that, so many failing jobs do not retry in step."""

    base: float = 1.0
    factor: float = 2.0
    max: float = 300.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt``."""
        ceiling = min(self.max, self.base * self.factor ** max(0, attempt - 1))
        return random.uniform(0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True)
class Fixed:
    """The same wait after every failure."""

    seconds: float

    def delay(self, attempt: int) -> float:
        """``seconds``, whatever the attempt."""
        return self.seconds


def exponential(
    base: float = 1.0, factor: float = 2.0, max: float = 300.0, jitter: bool = True
) -> Exponential:
    """Exponential backoff (the default: 1 s doubling up to 5 minutes, full jitter)."""
    if base < 0 or factor < 1 or max < 0:
        raise ConfigurationError("exponential backoff needs base >= 0, factor >= 1, max >= 0")
    return Exponential(base, factor, max, jitter)


def fixed(seconds: float) -> Fixed:
    """Wait ``seconds`` after every failure."""
    if seconds < 0:
        raise ConfigurationError(f"a fixed backoff needs seconds >= 0, not {seconds}")
    return Fixed(seconds)
