"""Supervision: every long-running loop of a worker runs in one task group, none dies unseen.

A loop that dies from an unexpected exception must not leave the worker half-alive: fetching
while no delayed job is promoted and no cancellation is heard, or running jobs whose outcomes
are never written. Its error is logged with its traceback and handed to the worker, which
stops (the graceful shutdown, in its usual order) and then raises it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

logger = logging.getLogger("aqueue.worker")


class Loops:
    """Starts a worker's loops in ``group`` and reports the first error each one dies of."""

    def __init__(self, group: TaskGroup, died: Callable[[Exception, bool], None]) -> None:
        """``died(error, hurry)`` stops the worker; ``hurry`` when a graceful wait is futile."""
        self._group = group
        self._died = died

    def start(
        self, name: str, loop: Callable[[], Awaitable[None]], *, hurry: bool = False
    ) -> anyio.Event:
        """Run ``loop`` in the group; the event returned is set once it has ended, however.

        ``hurry``: without this loop, running jobs' outcomes cannot be kept (the outcome
        writer, the lease keeper), so the worker stops at once instead of waiting for them.
        """
        ended = anyio.Event()
        self._group.start_soon(self._supervise, name, loop, hurry, ended, name=f"aqueue {name}")
        return ended

    async def _supervise(
        self, name: str, loop: Callable[[], Awaitable[None]], hurry: bool, ended: anyio.Event
    ) -> None:
        try:
            await loop()
        except Exception as exc:
            # Cancellation (the group closing at the end of a stop) is no failure: only an
            # Exception is.
            logger.error("the worker's %s failed; stopping the worker", name, exc_info=exc)
            self._died(exc, hurry)
        finally:
            ended.set()
