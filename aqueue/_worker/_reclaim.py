"""Housekeeping of a worker's queues: due delayed jobs, entries of silent workers, and what
changed (cancellations, pauses, new priority levels), heard on sharded pub/sub.

One worker per queue at a time promotes due jobs and claims lapsed entries for the whole fleet:
the leader, chosen by the look script (``lua/poll.lua``) under a key that expires unless renewed,
so a leader that dies is replaced within its leadership (a lease), and one that stops resigns.
Due jobs move into the stream in one script (were two workers to lead for a moment, each job
would still move once). Entries idle for longer than the lease belonged to a worker that died
(or lost its connection): XAUTOCLAIM hands them to the leader, which runs them again, counting
the delivery as an attempt; a leader with no room for them (no free slot, or too many outcomes
not yet written: see ``_acker.py``) asks the others on pub/sub, and those with room claim them.

Nothing is polled every few milliseconds. Every worker keeps the delayed set's earliest due
time, as its looks return it and as the set's channel tells it: a job scheduled before the
others (``delay()`` in ``lua/_prelude.lua``), and what is left first after each promotion (a
look that moves due jobs, ``lua/poll.lua``). The notices give it on the server's clock, which
the worker converts to its event loop's with the offset its last look read. The leader looks
when that time comes, and renews its leadership in between with a call of its own
(``lua/lead.lua``); it scans for lapsed entries twice a second while entries are pending, and a
lease after a scan that found none (an entry delivered later cannot lapse sooner).

The others look for due jobs only when that time has passed by a grace (:data:`PROMPT_GRACE`,
plus a point of their own in :data:`PROMPT_SPREAD`) with no promotion heard: the leader died
without resigning (SIGKILL, a lost machine) or is stuck. They move the jobs themselves then,
due time after due time, until the leadership lapses and one of them takes it over, so such a
job starts within a second of its due time rather than a lease. A live leader costs them no
call: its promotion's notice (one SPUBLISH inside the script, at most one per
:data:`TELL_INTERVAL` while jobs come due one after another) pushes their looks back to the
next due time, and an idle fleet with nothing delayed plans no look at all. With a dead
leader, the first of them to look tells its promotion too, and the spread lets the others hear
it before their turn. A due time that goes away untold (a scheduled job cancelled, a queue
purged) costs each of them one look at most.

Cancellations, pauses and new levels are announced on sharded pub/sub too, each on a channel in
its queue's slot (SPUBLISH), which the worker subscribes to on the app's shared subscription
(``_results.py``: one connection per server, per master on a Cluster, following a slot that
moves), so while it hears them a worker that does not lead looks, besides for overdue jobs,
only when the leader's leadership would lapse, and even then it first asks how long that
leadership has left (a PTTL); it looks whenever the subscription is made again, to read what
was missed while it was down, and often while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._job import JobStatus
from .._redis import _calls as scripts
from .._redis._backoff import Backoff
from .._redis._direct import Batches
from .._redis._errors import REDIS_ERRORS, error_reply
from .._redis._keys import CHANNELS, DEAD_LETTER_LIMIT, GROUP, Keys
from .._results import ClusterWaiters, ResultWaiter
from ._fetcher import Slots
from ._levels import Levels
from ._outcome import Delivery

logger = logging.getLogger("aqueue.worker")

LOOK_INTERVAL = 10.0
"""Seconds until a worker that could not learn when the leadership lapses (none could be
taken, at maxmemory; a leader key without expiry, set by hand) asks again."""
UNHEARD_LOOK_INTERVAL = 1.0
"""Most seconds between two looks while the worker's subscription is down: a cancel still
arrives within about this long."""
TAKEOVER_DELAY = 0.05
"""Seconds after another worker's leadership would lapse that a worker looks to take it."""
PROMPT_GRACE = 0.5
"""Seconds past the delayed set's earliest due time after which a worker that does not lead
the queue looks, and moves the due jobs itself, if no promotion was told meanwhile: the leader
died or is stuck. Well above the time a live leader takes to move a job and tell the next."""
PROMPT_SPREAD = 0.5
"""Seconds after that grace over which those workers' looks spread, each at its own point (from
its name): the first to look moves the jobs and tells the next due time, and the others,
hearing that, need not look."""
TELL_INTERVAL = 0.1
"""Least seconds between two of a worker's promotions that tell the next due time while jobs
come due one after another: each notice reaches every worker of the queue (a few µs of server
time each), so a promotion told less than this ago tells nothing when the next job is due
within this, as that job's promotion will. A told due time is then followed by the next within
twice this, well within :data:`PROMPT_GRACE`: the others do not look while the leader lives."""
CLAIM_INTERVAL = 0.5
"""Seconds between the leader's scans for entries whose lease lapsed, while any is pending: a
dead worker's job runs again within the lease and this (and a round trip or two)."""
PRUNE_INTERVAL = 60.0
"""Seconds between the leader's prunings of consumers that left nothing pending."""
PROMOTE_BATCH = 500
UNHEARD_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, RedisError)
"""What keeps the worker's subscriptions down for a while, and it looks often instead: a lost
server, or a refusal (an ACL user without channels)."""


@dataclass(eq=False)
class _Duty:
    """One queue's housekeeping, as this worker sees it (times on the event loop's clock)."""

    keys: Keys
    leads: bool = False
    look_at: float = 0.0
    check_at: float = math.inf
    """When to renew the leadership (the leader) or ask how long it has left (the others)."""
    claim_at: float = math.inf
    prune_at: float = math.inf
    cursor: int = 0
    """The cancel time (ms) the next look reads the cancelled set from."""
    due_at: float = math.inf
    """When the delayed set's earliest job is due, as the last look or notice said."""
    due_heard: bool = False
    """Whether a notice told a due time while a look was in flight: either may be the newer."""
    told_at: float = -math.inf
    """When a promotion of this worker's last told the queue's workers the next due time."""
    offset: float | None = None
    """The server's clock less the event loop's (s), from the last look (None before the
    first): notices give due times on the server's clock."""
    asked: bool = False
    """Whether the leader, with no room, asked for a claim by a worker with some."""
    noticed: bool = False
    """Whether a notice asked for a look while a look or check was in flight: what that one
    returns is stale, so it must not push the next look back."""
    claim_cursors: dict[bytes, bytes] = field(default_factory=dict)


class Reclaimer:
    """Keeps one worker's queues: looks, promotes and claims where it leads, hears notices."""

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
        self._duties = [_Duty(keys) for keys in levels.queues]
        self._channels = {
            getattr(duty.keys, name): (duty, name) for duty in self._duties for name in CHANNELS
        }
        self._consumer = consumer
        self._grace = PROMPT_GRACE + PROMPT_SPREAD * zlib.crc32(consumer.encode()) / 2**32
        """Seconds past a due time this worker waits for the leader to tell its promotion."""
        self._lease = lease
        self._lease_ms = int(lease * 1000)
        self._slots = slots
        self._begin = begin
        self._cancel = cancel
        self._levels_changed = levels_changed
        self._stopping = False
        self._woken = asyncio.Event()
        """Set when a look is due earlier than planned (a notice, a stop)."""
        self._hearing = False
        """Whether the worker's subscription is up: notices arrive as they are published."""
        self.listening = asyncio.Event()
        """Set once every channel's subscription was first confirmed."""
        self._claiming = True
        self._claim_pass = asyncio.Lock()
        """Held while claimed entries are taken and started."""
        self.claimed = 0
        """Entries this worker took over from silent workers."""
        self.looked = asyncio.Event()
        """Set once the first look at every queue is over, done or failed."""

    async def listen(self, waiter: ResultWaiter | ClusterWaiters) -> None:
        """Hear the notices of the worker's queues on ``waiter`` until cancelled."""
        backoff = Backoff(logger, "hear the notices of the worker's queues")
        while True:
            subscriptions = contextlib.AsyncExitStack()
            try:
                for channel in self._channels:
                    listener = functools.partial(self.heard, channel)
                    await subscriptions.enter_async_context(waiter.hear(channel, listener))
                self.hearing(True)
                backoff.succeeded()
                await anyio.sleep_forever()
            except UNHEARD_ERRORS as exc:
                self.hearing(False)
                await backoff.failed(exc)
            finally:
                # Shielded: a stop cancels every await of this task (an anyio scope).
                with anyio.CancelScope(shield=True):
                    await subscriptions.aclose()

    def heard(self, channel: bytes, data: bytes | None) -> None:
        """Take a notice published on one of the worker's queues' channels (None: notices may
        have been missed while the channel was subscribed again)."""
        duty, kind = self._channels[channel]
        if data is None:
            self._look_now(duty)  # the look reads what changed meanwhile
            return
        if kind == "cancelled":
            self._cancel([data.decode()])
            return
        if kind == "stream":
            # The leader has no room for entries whose lease lapsed: one with some claims
            # them.
            duty.asked = self._slots.room > 0 and not duty.leads
            self._woken.set()
            return
        if kind == "delayed":
            self._heard_due(duty, data)
            return
        # A pause, a new level, or a leader that resigned: look now (the look script says
        # what changed, and takes the leadership over).
        self._look_now(duty)

    def _heard_due(self, duty: _Duty, data: bytes) -> None:
        """The delayed set's earliest due time changed (a job scheduled before the others, or
        a promotion; "": none waits): plan the look for it, with no call now."""
        if duty.offset is None:
            self._look_now(duty)  # the clock is not known yet: a look reads the due time
            return
        duty.due_at = float(data) / 1000 - duty.offset if data else math.inf
        duty.due_heard = True
        if duty.look_at > self._now():  # else a look is due or in flight, and plans anew
            watch = self._watch(duty)
            duty.look_at = watch if self._hearing else min(duty.look_at, watch)
            self._woken.set()

    def _watch(self, duty: _Duty) -> float:
        """When to look for due jobs: the leader when the earliest is due; another worker
        only once that is overdue by its grace (told promotions push it back)."""
        return duty.due_at if duty.leads else duty.due_at + self._grace

    def _look_now(self, duty: _Duty) -> None:
        duty.look_at = 0.0
        duty.noticed = True
        self._woken.set()

    def hearing(self, up: bool) -> None:
        """The worker's subscription is up (look at once: notices may have been missed
        before) or down (look often enough to hear of cancels anyway)."""
        self._hearing = up
        if up:
            self.listening.set()
        for duty in self._duties:
            if up:
                self._look_now(duty)
            else:
                duty.look_at = min(duty.look_at, self._now() + UNHEARD_LOOK_INTERVAL)
        self._woken.set()

    async def stop_claiming(self) -> None:
        """Take no more work (the worker stops); keep hearing of cancellations, so a job
        cancelled during the grace period still stops.

        Returns once a claim in flight has started its jobs, so the worker's wait for its
        running jobs includes them (started later, they would run unrenewed and unacked)."""
        self._claiming = False
        async with self._claim_pass:
            pass

    async def resign(self) -> None:
        """Let another worker lead this worker's queues now (call after :meth:`stop_claiming`:
        this worker's looks then lead no more)."""
        for duty in self._duties:
            if duty.leads:
                duty.leads = False
                duty.claim_at = duty.prune_at = math.inf
                try:
                    await self._calls.call(
                        scripts.resign(leader=duty.keys.leader, worker=self._consumer)
                    )
                except (RedisError, OSError) as exc:
                    # Housekeeping only: the leadership lapses by itself within a lease.
                    logger.debug("could not resign as leader of %s: %s", duty.keys.queue, exc)

    def stop(self) -> None:
        """Stop after the command in flight (never cancelled mid-reply)."""
        self._stopping = True
        self._woken.set()

    async def run(self) -> None:
        """Look, promote and claim until :meth:`stop`."""
        backoff = Backoff(logger, "promote or reclaim jobs")
        while not self._stopping:
            self._woken.clear()
            try:
                try:
                    await self._tend()
                finally:
                    self.looked.set()
            except REDIS_ERRORS as exc:
                await backoff.failed(exc)
                continue
            except RedisError as exc:
                logger.error("cannot promote or reclaim jobs: %s", exc)
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            duties = self._duties
            wake = min(min(d.look_at, d.check_at, d.claim_at, d.prune_at) for d in duties)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), max(0.0, wake - self._now()))

    async def _tend(self) -> None:
        for duty in self._duties:
            if self._now() >= duty.look_at:
                await self._look(duty)
            elif self._now() >= duty.check_at:
                await self._check(duty)
            if duty.asked and self._claiming:
                duty.asked = False
                async with self._claim_pass:
                    await self._claim_all(duty)
            if not duty.leads:
                continue
            if self._claiming and self._now() >= duty.claim_at:
                async with self._claim_pass:
                    pending = await self._claim_all(duty)
                duty.claim_at = self._now() + (CLAIM_INTERVAL if pending else self._lease)
            if self._now() >= duty.prune_at:
                duty.prune_at = self._now() + PRUNE_INTERVAL
                await prune_consumers(self._calls, duty.keys, idle_ms=self._lease_ms * 10)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _look(self, duty: _Duty) -> None:
        keys = duty.keys
        duty.noticed = duty.due_heard = False
        while True:
            # Whichever worker's look comes first moves a due job; the others find it gone.
            quiet = self._now() - duty.told_at < TELL_INTERVAL
            reply = await self._calls.call(
                scripts.poll(
                    delayed=keys.delayed,
                    levels=keys.levels,
                    cancelled=keys.cancelled,
                    paused=keys.paused,
                    leader=keys.leader,
                    dead=keys.dead,
                    followed=keys.followed,
                    streams=keys.streams,
                    batch=PROMOTE_BATCH,
                    cursor=duty.cursor,
                    worker=self._consumer,
                    # A stopping worker lets another lead.
                    lead_ms=self._lease_ms if self._claiming else 0,
                    dead_limit=DEAD_LETTER_LIMIT,
                    quiet_ms=int(TELL_INTERVAL * 1000) if quiet else 0,
                )
            )
            due, wait, levels, cursor, paused, leads, left, server_ms, told, refused = reply[:10]
            followed, cancelled = reply[10], reply[11:]
            # Measured once the reply is in, so due times it converts come a little late, never
            # early (a look too early would have to look again).
            duty.offset = server_ms / 1000 - self._now()
            duty.cursor = cursor
            if told:
                duty.told_at = self._now()
            if cancelled:  # first: the cursor has moved past them, and telling may fail
                self._cancel([job_id.decode() for job_id in cancelled])
            if followed:
                await self._tell_queued(keys, followed)
            if levels != self._levels.seen(keys) and not self._levels.stale:
                # A producer used a new priority level: the fetcher must read its stream.
                await self._levels_changed()
            if bool(paused) != (keys in self._levels.paused) and not self._levels.stale:
                # Paused or resumed: the fetcher reads the flags again with the levels.
                what = "paused: reading none of its jobs" if paused else "resumed"
                logger.info("queue %s %s", keys.queue, what)
                await self._levels_changed()
            if refused:
                # The jobs it could not move stay due, for the next look after the backoff
                # (a short one for a refusal for now: OOM, READONLY...).
                raise error_reply(refused)
            if due < PROMOTE_BATCH or self._stopping:
                break
        looked = self._now() + wait / 1000 if wait >= 0 else math.inf
        # A due time heard meanwhile may be newer (an earlier job) or older (a promotion seen
        # before this reply): the earlier of the two costs one look too many at worst.
        duty.due_at = min(looked, duty.due_at) if duty.due_heard else looked
        self._lead(duty, leads=bool(leads), left_ms=left)

    async def _tell_queued(self, keys: Keys, job_ids: list[bytes]) -> None:
        """Tell the followers of jobs a look moved (job.events()) that they are queued, on
        their records' channels, as tell() in the scripts tells a change: their records stay
        as they were (see poll.lua), so only this wakes a follower. Never fails: a notice
        matters less than the move, and a follower reads the status anyway."""
        queued = JobStatus.QUEUED.value.encode()
        try:
            await self._calls.commands(
                [(b"SPUBLISH", keys.job(job_id.decode()), queued) for job_id in job_ids],
                errors_in_place=True,
            )
        except REDIS_ERRORS as exc:
            logger.warning("cannot tell the followers of %d moved job(s): %s", len(job_ids), exc)

    async def _check(self, duty: _Duty) -> None:
        """Between looks: the leader renews its leadership; another worker asks how long
        that leadership has left, and looks (to take it over) once none is left."""
        keys = duty.keys
        duty.noticed = False
        if duty.leads:
            call = scripts.lead(leader=keys.leader, worker=self._consumer, lead_ms=self._lease_ms)
            # A stopping worker leads no more: its look says so.
            if self._claiming and await self._calls.call(call):
                duty.check_at = self._now() + self._lease / 3
                return
        else:
            left_ms: int = await self._redis.pttl(keys.leader)
            if left_ms != -2:  # -2: no leader
                self._lead(duty, leads=False, left_ms=left_ms)
                return
        await self._look(duty)  # lost, or free: the look takes it over, or says who has it

    def _lead(self, duty: _Duty, *, leads: bool, left_ms: int) -> None:
        """Plan the next look or check (and scans) from what the last one said."""
        now = self._now()
        if leads and not duty.leads:
            logger.debug("worker %s leads queue %s", self._consumer, duty.keys.queue)
            duty.claim_at = now  # the previous leader may have died: its entries may lapse
            duty.prune_at = now + PRUNE_INTERVAL
        elif not leads:
            duty.claim_at = duty.prune_at = math.inf
        duty.leads = leads
        if leads:
            check = self._lease / 3  # renewed well before it lapses
        elif left_ms > 0:
            check = left_ms / 1000 + TAKEOVER_DELAY  # soon after a silent leader's lapses
        else:
            check = LOOK_INTERVAL
        if duty.noticed:
            duty.look_at = 0.0  # a notice came during this look or check: look again now
            duty.check_at = now + check
        elif self._hearing:
            # The notices say what changed: the next look is for the next due job.
            duty.look_at = self._watch(duty)
            duty.check_at = now + check
        else:
            duty.look_at = min(now + min(UNHEARD_LOOK_INTERVAL, check), self._watch(duty))
            duty.check_at = math.inf

    async def _claim_all(self, duty: _Duty) -> bool:
        """Claim the queue's lapsed entries; whether any entry was pending (or the queue is
        paused): then the leader scans again soon, else a lease later (an entry
        delivered after this scan cannot lapse sooner)."""
        keys = duty.keys
        if keys in self._levels.paused:
            return True  # a claim starts jobs: a paused queue's lapsed entries wait for its resume
        streams = self._levels.streams(keys)
        # Counted first (XPENDING's summary): a queue with nothing pending needs no scan.
        counts = await self._calls.commands([(b"XPENDING", stream, GROUP) for stream in streams])
        pending = [stream for stream, count in zip(streams, counts, strict=True) if count[0]]
        # Every level's stream, highest first: scarce slots go to higher work.
        for stream in pending:
            await self._claim(duty, stream)
        return bool(pending)

    async def _claim(self, duty: _Duty, stream: bytes) -> None:
        keys = duty.keys
        # A backlogged worker claims none either: claimed jobs run too, their outcomes would
        # join those waiting to be written, and their leases be renewed by a server already
        # slow to take writes. The leader asks the workers with room to claim them.
        free = self._slots.room
        if not self._claiming:
            return
        if free <= 0:
            if duty.leads:
                await self._ask_for_help(keys, stream)
            return
        reply: Any = await self._redis.xautoclaim(
            stream,
            GROUP,
            self._consumer,
            self._lease_ms,
            start_id=duty.claim_cursors.get(stream, b"0-0"),
            count=free,
        )
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        duty.claim_cursors[stream] = cursor
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

    async def _ask_for_help(self, keys: Keys, stream: bytes) -> None:
        # A busy leader must not keep a dead worker's jobs from workers with room for them:
        # if an entry's lease lapsed, it asks them (its next scan asks again).
        lapsed = await self._redis.xpending_range(
            stream, GROUP, min="-", max="+", count=1, idle=self._lease_ms
        )
        if lapsed:
            await self._calls.commands([(b"SPUBLISH", keys.stream, stream)])

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
