"""Operating one queue: statistics (and, later, dead letters and purging)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._redis._errors import translate_errors
from ._redis._keys import GROUP, Keys
from ._redis._scripts import STATS

if TYPE_CHECKING:
    from ._app import App


@dataclass(frozen=True)
class QueueStats:
    """Counts of one queue, read in one atomic step."""

    queue: str
    queued: int
    """Jobs waiting for a worker."""
    scheduled: int
    """Jobs waiting for their time: retries after a backoff, delayed jobs."""
    running: int
    """Jobs delivered to a worker and not yet acknowledged."""
    dead: int
    """Entries in the dead-letter stream."""
    workers: int
    """Workers that served this queue within the lease time."""


class Queue:
    """A handle on one queue of an app: ``app.queue("emails")``."""

    __slots__ = ("_app", "keys", "name")

    def __init__(self, app: App, name: str) -> None:
        self._app = app
        self.name = name
        self.keys = Keys(app.namespace, name)

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"

    async def stats(self) -> QueueStats:
        """Queued, scheduled, running and dead-lettered counts and the number of live workers."""
        keys = self.keys
        with translate_errors(self._app.url):
            queued, scheduled, running, dead, workers = await STATS(
                self._app.redis,
                [keys.stream, keys.dead, keys.workers, keys.delayed],
                [GROUP, int(self._app.lease * 1000)],
            )
        return QueueStats(self.name, queued, scheduled, running, dead, workers)
