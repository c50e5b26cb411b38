"""Growing pauses between attempts to reach Redis again, logged once per outage."""

from __future__ import annotations

import asyncio
import logging

_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


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
        delay = _DELAYS[min(self.failures, len(_DELAYS) - 1)]
        self.failures += 1
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        """End the outage, saying so if there was one."""
        if self.failures:
            self._logger.info("%s works again after %d failed attempts", self._what, self.failures)
            self.failures = 0
