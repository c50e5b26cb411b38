"""Reclaiming: jobs that wait in the delayed set, and entries whose worker went silent.

The frequent promote call also brings the ids of running jobs cancelled lately, so every
worker learns of a cancellation within one promote interval, with no extra round trip; and
whether the queue is paused, so every worker stops or starts reading it as promptly.

Every worker runs this; no single scheduler process exists to babysit. Due jobs move into the
stream in one script (whichever worker gets there first moves each job once). Entries idle for
longer than the lease belonged to a worker that died (or lost its connection): XAUTOCLAIM
hands them to this worker, which runs them again, counting the delivery as an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._redis import _calls as scripts
from .._redis._backoff import Backoff
from .._redis._direct import Batches
from .._redis._errors import REDIS_ERRORS
from .._redis._keys import DEAD_LETTER_LIMIT, GROUP, Keys
from ._fetcher import Slots
from ._levels import Levels
from ._outcome import Delivery

logger = logging.getLogger("aqueue.worker")

PROMOTE_INTERVAL = 0.05
"""Seconds between looks at the delayed set (a due job waits at most about this long)."""
CLAIM_INTERVAL = 1.0
"""Seconds between scans for entries whose lease lapsed."""
PRUNE_EVERY = 60
"""Claim scans between prunings of consumers that left nothing pending."""
PROMOTE_BATCH = 500


class Reclaimer:
    """Promotes due delayed jobs and claims entries of silent workers, for one worker."""

    def __init__(
        self,
        *,
        redis: Redis,
        calls: Batches,
        levels: Levels,
        consumer: str,
        lease: float,
        slots: Slots,
        begin: Callable[[list[Delivery]], Awaitable[None]],
        cancel: Callable[[list[str]], None],
        levels_changed: Callable[[], Awaitable[None]],
    ) -> None:
        self._redis = redis
        self._calls = calls
        self._levels = levels
        self._queues = levels.queues
        self._consumer = consumer
        self._lease_ms = int(lease * 1000)
        self._slots = slots
        self._begin = begin
        self._cancel = cancel
        self._levels_changed = levels_changed
        self._cursors: dict[bytes, bytes] = {}
        self._cancel_cursors = {keys.queue: 0 for keys in self._queues}
        self._stopping = asyncio.Event()
        self._claiming = True
        self._claim_pass = asyncio.Lock()
        """Held while claimed entries are taken and started."""
        self.claimed = 0
        """Entries this worker took over from silent workers."""
        self.looked = asyncio.Event()
        """Set once the first promote pass is over, done or failed."""

    async def stop_claiming(self) -> None:
        """Take no more work (the worker stops); keep promoting and hearing of cancellations,
        so a job cancelled during the grace period still stops.

        Returns once a claim in flight has started its jobs, so the worker's wait for its
        running jobs includes them (started later, they would run unrenewed and unacked)."""
        self._claiming = False
        async with self._claim_pass:
            pass

    def stop(self) -> None:
        """Stop after the command in flight (never cancelled mid-reply)."""
        self._stopping.set()

    async def run(self) -> None:
        """Promote and claim until :meth:`stop`."""
        backoff = Backoff(logger, "promote or reclaim jobs")
        loop = asyncio.get_running_loop()
        next_claim = loop.time() + CLAIM_INTERVAL
        scans = 0
        while not self._stopping.is_set():
            try:
                try:
                    for keys in self._queues:
                        await self._promote(keys)
                finally:
                    self.looked.set()
                if self._claiming and loop.time() >= next_claim:
                    next_claim = loop.time() + CLAIM_INTERVAL
                    scans += 1
                    async with self._claim_pass:
                        await self._claim_all(prune=scans % PRUNE_EVERY == 0)
            except REDIS_ERRORS as exc:
                await backoff.failed(exc)
                continue
            except RedisError as exc:
                logger.error("cannot promote or reclaim jobs: %s", exc)
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), PROMOTE_INTERVAL)

    async def _promote(self, keys: Keys) -> None:
        while True:
            due, _, levels, cursor, paused, *cancelled = await self._calls.call(
                scripts.poll(
                    delayed=keys.delayed,
                    levels=keys.levels,
                    cancelled=keys.cancelled,
                    paused=keys.paused,
                    batch=PROMOTE_BATCH,
                    cursor=self._cancel_cursors[keys.queue],
                )
            )
            self._cancel_cursors[keys.queue] = cursor
            if cancelled:
                self._cancel([job_id.decode() for job_id in cancelled])
            if levels != self._levels.seen(keys) and not self._levels.stale:
                # A producer used a new priority level: the fetcher must read its stream.
                await self._levels_changed()
            if bool(paused) != (keys in self._levels.paused) and not self._levels.stale:
                # Paused or resumed: the fetcher reads the flags again with the levels.
                what = "paused: reading none of its jobs" if paused else "resumed"
                logger.info("queue %s %s", keys.queue, what)
                await self._levels_changed()
            if due:
                # A second call, with the records of the due jobs in its KEYS. Whichever
                # worker's call comes first moves a job; the others find it gone.
                await self._calls.call(
                    scripts.promote(
                        delayed=keys.delayed,
                        levels=keys.levels,
                        dead=keys.dead,
                        streams=keys.streams,
                        records=[keys.job((job or b":").decode()) for job in due[1::2]],
                        dead_limit=DEAD_LETTER_LIMIT,
                        members=due[::2],
                    )
                )
            if len(due) < 2 * PROMOTE_BATCH or self._stopping.is_set():
                return

    async def _claim_all(self, *, prune: bool) -> None:
        for keys in self._queues:
            # Every level's stream, highest first: scarce slots go to higher work. A claim
            # starts jobs, so a paused queue's lapsed entries wait for its resume.
            if keys not in self._levels.paused:
                for stream in self._levels.streams(keys):
                    await self._claim(keys, stream)
            if prune:
                await prune_consumers(self._calls, keys, idle_ms=self._lease_ms * 10)

    async def _claim(self, keys: Keys, stream: bytes) -> None:
        free = self._slots.free
        if free <= 0 or not self._claiming:
            return  # busy: leave the entries to a worker with room for them
        reply: Any = await self._redis.xautoclaim(
            stream,
            GROUP,
            self._consumer,
            self._lease_ms,
            start_id=self._cursors.get(stream, b"0-0"),
            count=free,
        )
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._cursors[stream] = cursor
        if deleted:
            await self._note_deleted(keys, deleted)
        deliveries = [
            Delivery(keys, entry_id, fields, stream) for entry_id, fields in entries if fields
        ]
        if deliveries:
            self.claimed += len(deliveries)
            logger.warning(
                "claimed %d job(s) of %s idle longer than the lease (%d ms): a worker died or "
                "lost its connection",
                len(deliveries),
                keys.queue,
                self._lease_ms,
            )
            await self._begin(deliveries)

    async def _note_deleted(self, keys: Keys, deleted: list[bytes]) -> None:
        # XAUTOCLAIM drops pending ids whose entry no longer exists (deleted or trimmed by
        # hand): they cannot run, but they must not vanish without a trace either.
        logger.error("%d pending entries of %s were deleted unfinished", len(deleted), keys.queue)
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in deleted:
            pipe.xadd(
                keys.dead,
                {
                    b"reason": b"entry deleted from the stream unfinished",
                    b"entry": entry_id,
                },
                maxlen=DEAD_LETTER_LIMIT,
                approximate=True,
            )
        await pipe.execute()


async def prune_consumers(calls: Batches, keys: Keys, *, idle_ms: int, name: str = "") -> int:
    """Delete consumers idle for ``idle_ms`` with nothing pending (only ``name``, if given)."""
    deleted: int = await calls.call(
        scripts.prune(
            levels=keys.levels,
            streams=keys.streams,
            group=GROUP,
            least_idle_ms=idle_ms,
            consumer=name,
        )
    )
    return deleted
