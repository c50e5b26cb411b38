"""Priority levels: which streams of each queue a worker reads, and in which order.

A queue has one stream per priority level in use. The default level's is the queue's own
stream, so a worker whose queues never saw a priority reads one stream per queue, exactly as
without priorities. A worker learns the other levels from each queue's levels set: when it
starts, and when a new level is announced on pub/sub or a look sees that set grow (see
``Reclaimer``).

A paused queue's streams are not read (see ``Queue.pause``): the worker learns the flag when
it starts and, from the same notices, whenever it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .._redis._keys import DEFAULT_PRIORITY, GROUP, PRIORITIES, Keys


async def ensure_group(redis: Redis, stream: bytes) -> None:
    """Create ``stream`` and its consumer group unless they exist.

    The group starts at id 0 so that jobs enqueued before any worker ever ran are read too.
    """
    try:
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Levels:
    """The priority levels in use on the queues one worker serves."""

    def __init__(self, queues: Sequence[Keys]) -> None:
        self.queues = list(queues)
        self._levels = {keys: [DEFAULT_PRIORITY] for keys in queues}
        self._seen = dict.fromkeys(queues, 0)
        self.stale = False
        """Set when a queue's levels set grew, or a queue was paused or resumed: :meth:`refresh`
        before the next read."""
        self.paused: set[Keys] = set()
        """Queues not to read now."""
        self.active: list[Keys] = list(queues)
        """The queues to read, in the worker's order: those not paused."""
        self.by_stream: dict[bytes, Keys] = {}
        """Every stream to read, with its queue."""
        self.blocking: dict[Any, Any] = {}
        """Every stream to read (of the active queues), with the id to read after (``>``: new
        entries), for XREADGROUP."""
        self._index()

    def streams(self, keys: Keys, *, lowest_first: bool = False) -> list[bytes]:
        """The streams of ``keys``'s queue, highest level first (or lowest first)."""
        levels = self._levels[keys]
        return [keys.stream_at(level) for level in (levels[::-1] if lowest_first else levels)]

    def seen(self, keys: Keys) -> int:
        """How many members the queue's levels set had at the last refresh."""
        return self._seen[keys]

    async def refresh(self, redis: Redis, *, recreate: bool = False) -> None:
        """Learn the levels in use; create the consumer group of each new level's stream.

        With ``recreate``, every stream's group is created again unless it exists (after a
        FLUSHDB, or a failover to an empty replica).
        """
        pipe = redis.pipeline(transaction=False)
        for keys in self.queues:
            pipe.smembers(keys.levels)
            pipe.exists(keys.paused)
        replies: list[Any] = await pipe.execute()
        self.paused = {keys for keys, flag in zip(self.queues, replies[1::2], strict=True) if flag}
        for keys, members in zip(self.queues, replies[::2], strict=True):
            levels = sorted({DEFAULT_PRIORITY, *_valid(members)}, reverse=True)
            for level in levels:
                if recreate or level not in self._levels[keys]:
                    await ensure_group(redis, keys.stream_at(level))
            self._levels[keys] = levels
            self._seen[keys] = len(members)
        self.stale = False
        self._index()

    def _index(self) -> None:
        # Every stream maps to its queue, paused or not: a read in flight when the pause came
        # may still return entries of it (the start script hands those back, see _fetcher.py).
        self.by_stream = {stream: keys for keys in self.queues for stream in self.streams(keys)}
        self.active = [keys for keys in self.queues if keys not in self.paused]
        self.blocking = {stream: b">" for keys in self.active for stream in self.streams(keys)}


def _valid(members: Iterable[bytes]) -> set[int]:
    # Only levels aqueue writes; anything else in the set (written by hand) is no level.
    return {int(member) for member in members if member.isdigit() and int(member) in PRIORITIES}
