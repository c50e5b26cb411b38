"""Growing pauses between attempts to reach Redis again, logged once per outage.

While nothing answers (a server down or out of reach), the pauses grow to 5 s: each attempt
is a connection a server coming back would have to take. A server that answers but refuses
for now (a replica, a master short of replicas, maxmemory) is tried again at least every
:data:`_REFUSED_PAUSE`: it takes writes again at a moment no pause can foresee, and a refusal
costs it little. After a Sentinel failover, say, both masters refuse writes under
``min-replicas-to-write`` until the old one is demoted to the new one's replica (some 10 s
after the switch, in the tests); pauses grown to 5 s by then had the first job wait up to
5 s more.
"""

from __future__ import annotations

import asyncio
import logging

from ._errors import passing_refusal

_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
_REFUSED_PAUSE = 0.5
"""The longest pause after a refusal of a server that answers (see the module's docstring)."""


def pause_after(failures: int, exc: BaseException) -> float:
    """Seconds to wait after ``exc``, a failure that ``failures`` others came before."""
    delay = _DELAYS[min(failures, len(_DELAYS) - 1)]
    return min(delay, _REFUSED_PAUSE) if passing_refusal(exc) else delay


class Backoff:
    """Tracks one outage: call :meth:`failed` after each failure, :meth:`succeeded` after."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self._what = what
        self.failures = 0

    async def failed(self, exc: BaseException) -> None:
        """Log the first failure of an outage and sleep before the next attempt."""
        if self.failures == 0:
            self._logger.warning("cannot %s (%s); retrying with backoff", self._what, exc)
        delay = pause_after(self.failures, exc)
        self.failures += 1
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        """End the outage, saying so if there was one."""
        if self.failures:
            self._logger.info("%s works again after %d failed attempts", self._what, self.failures)
            self.failures = 0
