"""Fetching: batched XREADGROUP on a connection of its own, as many entries as free slots.

A worker that reads several streams (several queues, or priority levels) first takes what
waits, as many entries as slots are free, shared out between its queues in turn, each queue
read level by level in one script (see ``fetch.lua``); only when nothing waits does it block
on every stream at once.

That blocking read takes up to COUNT entries from each stream, so it may return more entries
than slots are free (one slot, fifty queues: entries that arrive together, one of each). On a
cluster each slot is read on a connection of its own, and the first to return ends the wait:
the others stay in flight, and one may return while the worker has no slot free (one slot,
two masters: a job on each). No read can be made exact: a free slot must wait on every
stream. So what a read takes beyond the free slots goes back to its queue at once, unstarted,
as a stop hands jobs back (a fresh copy at the stream's tail, the entry acked if still ours):
held, it would wait for this busy worker while another is idle. Only a start counts an
attempt, so the detour costs a job none. Entries claimed beyond the free slots (a claim and a
read may end together) are held instead, their leases renewed, and start in turn as slots
free, before anything new is read: they waited a lease already.

The blocking read has a finite BLOCK and is never cancelled mid-reply (a cancelled read once
handed redis-py replies to the wrong caller: CVE-2023-28858/28859). To stop promptly, the
worker asks the server to end the block early with CLIENT UNBLOCK from another connection;
so it does when a queue is paused or resumed, so that the next read leaves out (or takes in)
that queue's streams. With every queue paused, it reads nothing until one is resumed.

A read may still return entries of a queue paused a moment before (the worker had not heard
of it yet). The start script reads the pause flag, starts none of them and counts no attempt:
they are handed back to their queue, queued, for the resume. (Jobs that keep no result start
without the script, when the app keeps no events: those may still run.)
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .._app import App, connections_of
from .._limits import Limits
from .._message import record_ttl
from .._redis import _calls as scripts
from .._redis._backoff import Backoff
from .._redis._errors import REDIS_ERRORS, passing_refusal
from .._redis._keys import GROUP, Keys
from ..exceptions import ErrorType
from ._levels import Levels
from ._outcome import Action, Delivery, Outcome
from ._reads import BlockingReads, Pairs
from ._runner import expired_outcome, failure_outcome
from ._unknown import FIRST_PAUSE, UnknownTasks

logger = logging.getLogger("aqueue.worker")

BLOCK_MS = 5000
"""Longest a blocking read waits: an idle worker's one command per this long, and how long a
stop or a pause takes to end the read where CLIENT UNBLOCK is not allowed (a minimal ACL)."""


class Slots:
    """How many more jobs this worker may run now, and whether it may take in more.

    A worker whose outcomes pile up unwritten (the server acks slower than the jobs run) takes
    in no more (see :func:`aqueue._worker._acker.most_unflushed`): the jobs it has still
    start and end, their outcomes are still written, only reads and claims wait.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._backlogged = False
        self._woken = False
        self._available = asyncio.Event()
        self._available.set()

    @property
    def room(self) -> int:
        """How many jobs to read or claim now: the free slots, none while backlogged."""
        return 0 if self._backlogged else self.free

    def take(self, count: int) -> None:
        self.free -= count
        self._update()

    def give(self) -> None:
        self.free += 1
        # Jobs that only get dead-lettered may start beyond the free slots (see _unknown.py):
        # a give then may leave none free yet.
        if self.free > 0 and not self._backlogged:
            self._available.set()

    def backlog(self, full: bool) -> None:
        """The worker holds too many unwritten outcomes to take in more (``full``), or no
        longer does."""
        self._backlogged = full
        self._update()

    def wake(self) -> None:
        """End every :meth:`wait`, now and later, free slot or not (the worker stops)."""
        self._woken = True
        self._available.set()

    async def wait(self) -> int:
        """Wait until at least one slot is free and the worker is not backlogged (or
        :meth:`wake`), and return how many slots are free."""
        await self._available.wait()
        return self.free

    def _update(self) -> None:
        # Sticky once woken: a stopping fetcher must not wait again for a slot or the acker
        # (a server that is down may keep the backlog for good).
        if self._woken or (self.free > 0 and not self._backlogged):
            self._available.set()
        else:
            self._available.clear()


class Fetcher:
    """Reads deliveries for a worker and starts them while slots are free."""

    def __init__(
        self,
        *,
        app: App,
        redis: Redis,
        reads: BlockingReads,
        levels: Levels,
        consumer: str,
        slots: Slots,
        in_flight: MutableMapping[tuple[bytes, bytes], Keys],
        start_job: Callable[[Delivery, int], None],
        skip: Callable[[Outcome], None],
        starvation_guard: int | None = None,
    ) -> None:
        self._app = app
        self._connections = connections_of(app)
        self._redis = redis
        self._reads = reads
        self._levels = levels
        self._starvation_guard = starvation_guard
        self._priority_reads = 0
        self._consumer = consumer
        self._slots = slots
        self._in_flight = in_flight
        """Entries whose leases the worker renews: held ones are added here."""
        self._held: deque[Delivery] = deque()
        """Entries claimed beyond the free slots, in the order they start."""
        self._turn = 0
        """Reads made: which queue goes first in this one (see :meth:`_queues_in_turn`)."""
        self._start_job = start_job
        self._skip = skip
        self._stopping = False
        self._woken = asyncio.Event()
        """Set by a stop or a change of levels or pauses: ends the wait of a worker whose
        queues are all paused."""
        self._giving_up = False
        """Starts the server fails or refuses are no longer tried again (the worker stops)."""
        self.skipped = 0
        """Entries acked without running: their job had already ended (or was cancelled)."""
        self.held_back = 0
        """Deliveries a rate or concurrency limit moved to the delayed set to wait."""
        self._lease_ms = int(app.lease * 1000)
        # Only tasks with limits pay for them: with none, begin() does no per-delivery work.
        self._limited = {
            name: task._config
            for name, task in app.tasks.items()
            if task._config.rate_limit is not None or task._config.max_concurrency is not None
        }
        self._limits: dict[tuple[str, str], Limits] = {}
        self.unknown = UnknownTasks(
            app=app,
            in_flight=in_flight,
            hand_back=skip,
            # Started beyond the free slots if need be: such a run only dead-letters the job,
            # at once, and must not wait behind long jobs for a slot.
            start=functools.partial(self._start, checked=True),
        )
        """Deliveries of tasks this worker does not know, left for workers that know them."""

    async def run(self) -> None:
        """Fetch until :meth:`stop`; return once no read is in flight, with held entries
        handed back."""
        try:
            await self._fetch()
        finally:
            # Taken by reads still in flight (other slots' on a cluster): not started either.
            # Shielded: a worker stopped at once cancels this task, and those entries would
            # wait out their lease.
            with anyio.CancelScope(shield=True):
                self._held.extend(self._deliveries(await self._reads.drain()))
            # Unstarted: back to their queues now, rather than pending until their lease
            # lapses while this worker lets its running jobs finish.
            while self._held:
                self._hand_back(self._held.popleft())

    async def _fetch(self) -> None:
        backoff = Backoff(logger, "read jobs")
        levels = self._levels
        missing_group = False
        # After a blocking read that found nothing, nothing waits: the next read blocks at
        # once (it returns at once if anything came meanwhile), without a look first.
        idle = False
        while not self._stopping:
            try:
                free = await self._free_slots()
                if self._stopping:
                    break
                if self._held:
                    await self._start_held()
                    continue
                if missing_group or levels.stale:
                    # A queue uses a new priority level, or the stream or group vanished
                    # (FLUSHDB, failover to an empty replica).
                    await levels.refresh(self._redis, recreate=missing_group)
                    missing_group = False
                self._turn += 1
                streams = levels.blocking
                if not streams:
                    # Every queue is paused: nothing to read until one is resumed (or more
                    # levels are learnt: the reclaimer says when the flags change).
                    self._woken.clear()
                    if not self._stopping:
                        await self._woken.wait()
                    continue
                if len(streams) > 1 and not idle and await self._take_waiting(free):
                    backoff.succeeded()
                    continue
                # Nothing waits (or one stream only): block until any stream gets an entry.
                # Each stream gives up to `count`: split the free slots so the sum stays near
                # (entries beyond them are held).
                count = -(-free // len(streams))
                reply = await self._reads.read(self._consumer, streams, count=count, block=BLOCK_MS)
                idle = not reply
                if reply:
                    await self.begin(self._deliveries(reply))
            except REDIS_ERRORS as exc:
                await backoff.failed(exc)
                continue
            except RedisError as exc:
                if passing_refusal(exc) or str(exc).startswith("UNBLOCKED"):
                    # A failover: the server turned replica (ending a waiting read with
                    # UNBLOCKED), or one that cannot take the read's writes yet. An outage,
                    # not a fault of the queue's keys.
                    await backoff.failed(exc)
                    continue
                if "NOGROUP" in str(exc):
                    logger.warning("consumer group missing; creating it again")
                    missing_group = True
                    continue
                # E.g. WRONGTYPE: another program wrote under a stream's key. Say so loudly
                # and keep trying, rather than die and leave the queue unserved.
                logger.error("cannot read jobs: %s (check the queue's keys)", exc)
                await backoff.failed(exc)
                continue
            backoff.succeeded()

    async def _free_slots(self) -> int:
        """Wait until a slot is free and the worker is not backlogged with unwritten outcomes
        (or it stops), and return how many slots are free.

        Meanwhile what a read still in flight (another slot's, on a cluster) takes is begun as
        it comes, not when the worker may read again: started in the free slots, the rest
        back to its queue, where an idle worker may run it now.
        """
        while self._slots.room <= 0 and self._reads.in_flight and not self._stopping:
            freed = asyncio.ensure_future(self._slots.wait())
            taken = asyncio.ensure_future(self._reads.taken())
            try:
                await asyncio.wait((freed, taken), return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                # Cancelled (the worker stops at once) as a read ended: what it took goes
                # back now rather than pending until its lease lapses.
                if taken.done() and not taken.cancelled() and taken.exception() is None:
                    for delivery in self._deliveries(taken.result()):
                        self._hand_back(delivery)
                raise
            finally:
                freed.cancel()
                taken.cancel()  # a read it waits on goes on: collected later, never lost
            if taken.done() and not taken.cancelled():
                await self.begin(self._deliveries(taken.result()))  # or raise its error
        return await self._slots.wait()

    def give_up_starts(self) -> None:
        """Try no start again that the server fails or refuses: hand its entries back.

        Called as the worker begins to stop, before it waits for a claim in flight to start
        its jobs, which must not wait for the server's memory or return."""
        self._giving_up = True

    async def stop(self) -> None:
        """Stop fetching; a blocked read returns at once where the server allows it. Entries
        of tasks this worker does not know go back to their queues."""
        self.give_up_starts()
        self._stopping = True
        self.unknown.stop()
        self._slots.wake()  # a fetcher waiting for a slot sees _stopping and leaves
        self._woken.set()
        await self._reads.unblock()

    async def levels_changed(self) -> None:
        """A queue uses a new priority level, or was paused or resumed: learn the levels and
        flags again before the next read, which then reads (or leaves out) its streams."""
        self._levels.stale = True
        self._woken.set()
        await self._reads.unblock()

    def _deliveries(self, reply: Pairs) -> list[Delivery]:
        """A blocking read's entries in the order to start them: one of each queue in turn,
        and a queue's own in the order read (its higher levels' first)."""
        by_queue: dict[Keys, list[Delivery]] = {}
        for stream, entries in reply:
            keys = self._levels.by_stream[stream]
            by_queue.setdefault(keys, []).extend(
                Delivery(keys, entry_id, fields, stream) for entry_id, fields in entries if fields
            )
        in_turn = self._queues_in_turn(self._levels.queues)
        lines = [by_queue[keys] for keys in in_turn if keys in by_queue]
        return [d for one_each in itertools.zip_longest(*lines) for d in one_each if d]

    def _queues_in_turn(self, queues: list[Keys]) -> list[Keys]:
        """``queues``, a different one first at each read: when slots are scarce, the first
        ones get them, and a busy queue must not get them every time."""
        first = self._turn % len(queues)
        return queues[first:] + queues[:first]

    async def _take_waiting(self, free: int) -> bool:
        """Take up to ``free`` waiting entries, higher levels first; False when none waits.

        The free slots are shared out between the queues, in turn (one slot, many queues:
        one queue is asked, another at the next read), so a worker takes no more than it can
        start and leaves the rest to other workers. Every ``starvation_guard``-th read takes
        from the lowest waiting level first, so a steady flow of high-priority work cannot
        hold low levels back forever.
        """
        self._priority_reads += 1
        guard = self._starvation_guard
        lowest_first = guard is not None and self._priority_reads % guard == 0
        queues = self._queues_in_turn(self._levels.active)
        share, extra = divmod(free, len(queues))
        asked = [(keys, share + 1 if n < extra else share) for n, keys in enumerate(queues)]
        asked = [(keys, count) for keys, count in asked if count]
        streams = [self._levels.streams(keys, lowest_first=lowest_first) for keys, _ in asked]
        if all(len(one) == 1 for one in streams):
            # No queue uses a priority level: plain reads. The script that reads levels in
            # order cost the server more per entry than the read itself (each entry crossed
            # into Lua and back).
            reader = (b"XREADGROUP", b"GROUP", GROUP, self._consumer, b"COUNT")
            replies = await self._connections.direct.commands(
                [
                    (*reader, count, b"STREAMS", stream, b">")
                    for [stream], (_, count) in zip(streams, asked, strict=True)
                ],
                errors_in_place=True,
            )
        else:
            replies = await self._connections.direct.run(
                scripts.fetch(streams=one, group=GROUP, consumer=self._consumer, count=count)
                for one, (_, count) in zip(streams, asked, strict=True)
            )
        deliveries: list[Delivery] = []
        failed: Exception | None = None
        for (keys, _), reply in zip(asked, replies, strict=True):
            if isinstance(reply, Exception):
                failed = failed or reply  # e.g. NOGROUP: raised once the others are started
                continue
            # A plain read's reply: none when nothing waits, a map of streams in RESP3.
            pairs = reply.items() if isinstance(reply, dict) else reply or ()
            for stream, entries in pairs:
                deliveries.extend(
                    Delivery(keys, entry_id, _pairs(raw), stream)
                    for entry_id, raw in entries
                    if raw
                )
        if deliveries:
            await self.begin(deliveries)
        if failed is not None:
            raise failed
        return bool(deliveries)

    async def begin(self, deliveries: list[Delivery], *, claimed: bool = False) -> None:
        """Start as many deliveries as slots are free. Those read beyond them go back to
        their queues at once; those ``claimed`` beyond them are held until slots free.

        Held entries start after those held before, each when a slot frees, never beyond
        the free slots, however many streams the claims took them from. Those of tasks this
        worker does not know are left for workers that know them (see ``_unknown.py``).
        """
        started, again = self.unknown.divert(deliveries)
        if not claimed:
            if again:
                # This worker read only jobs it had handed back to workers that know them
                # (they were busy, or read later): let them read first, or the jobs cycle
                # through here.
                await asyncio.sleep(FIRST_PAUSE)
            # Counted after the last await before the start takes the slots: no other start
            # can take them in between, so the worker never keeps more than it can run.
            room = max(self._slots.free - len(self._held), 0)
            if len(started) > room:  # never while a single server drains a backlog
                for delivery in started[room:]:
                    self._hand_back(delivery)
                started = started[:room]
        await self._begin(started, checked=claimed)

    async def _begin(self, deliveries: list[Delivery], *, checked: bool) -> None:
        if not deliveries:
            return
        if not self._held and len(deliveries) <= self._slots.free:
            await self._start(deliveries, checked=checked)
            return
        self._hold(deliveries)
        await self._start_held()

    def _hand_back(self, delivery: Delivery) -> None:
        """Back to its queue unstarted, its lease renewed until then."""
        self._in_flight[(delivery.stream, delivery.entry_id)] = delivery.keys
        self._skip(Outcome(delivery, Action.REQUEUE))

    def _hold(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self._in_flight[(delivery.stream, delivery.entry_id)] = delivery.keys
        self._held.extend(deliveries)

    async def _start_held(self) -> None:
        batch = [self._held.popleft() for _ in range(min(self._slots.free, len(self._held)))]
        if batch:
            # Checked like claimed entries: the start script refuses an entry that another
            # worker claimed while it waited (its lease lapsed: this worker hung).
            await self._start(batch, checked=True)

    async def _start(self, deliveries: list[Delivery], *, checked: bool) -> None:
        """Count each delivery as an attempt, then start what should run.

        Fresh entries without a record start at attempt 1 with no round trip; the others (and
        every ``checked`` entry, whose owner and delivery count matter) go through the start
        script, one pipeline for the batch. Jobs of tasks with limits always do: the script
        acquires the limits, or moves the job to the delayed set to wait (its slot is freed).
        """
        # Taken before the first await: a claim and a read that begin at once share them.
        self._slots.take(len(deliveries))
        if self._limited:
            for delivery in deliveries:
                delivery.limits = self._limits_of(delivery)
        # With events, every start goes through the script, which tells it: those of jobs
        # that keep no record too.
        every = checked or self._app.events_limit > 0
        scripted = [
            d
            for d in deliveries
            if every or (d.job_id and d.result_ttl > 0) or d.expires_ms or d.limits is not None
        ]
        verdicts: dict[int, Any] = {}
        if scripted:
            replies = await self._start_scripts(scripted)
            if replies is None:
                # Stopping, and the server does not answer or refuses the starts for now:
                # handed back at once, their leases renewed until then. (Not held: a claim
                # can end here after the fetching, which hands back what it holds, ended.)
                for delivery in deliveries:
                    self._slots.give()
                    self._hand_back(delivery)
                return
            verdicts = {id(d): reply for d, reply in zip(scripted, replies, strict=True)}
        paused = False
        for delivery in deliveries:
            verdict = verdicts.get(id(delivery), delivery.prior_attempts + 1)
            if isinstance(verdict, int):
                self._start_job(delivery, verdict)
                continue
            self._slots.give()
            if verdict == b"paused":
                # Read (or claimed) after its queue was paused, before this worker heard of
                # it: handed back to wait in the queue, queued, for the resume.
                self._hand_back(delivery)
                paused = True
                continue
            # Not run: a held entry's lease is renewed no more (an outcome, if any, is
            # written without one, as for an entry that was never held).
            self._in_flight.pop((delivery.stream, delivery.entry_id), None)
            if isinstance(verdict, Exception):
                # Left pending: claimed again after its lease. Say why, loudly.
                logger.error(
                    "cannot start job %s (entry %s): %s",
                    delivery.job_id,
                    delivery.entry_id.decode(),
                    verdict,
                )
                continue
            if verdict == b"lost":
                continue  # another worker owns it now: neither run nor ack it
            if verdict in (b"deferred", b"parked"):
                self.held_back += 1  # the script moved it to the delayed set to wait
                continue
            if verdict == b"poison":
                reason = (
                    f"delivered more than {self._attempt_limit(delivery)} times without an "
                    "outcome (each delivery killed or lost its worker?)"
                )
                logger.error("job %s %s: %s", delivery.job_id, delivery.task_name, reason)
                self._skip(
                    failure_outcome(delivery, ErrorType.POISON, reason, "", dead_reason=reason)
                )
            elif verdict == b"expired":
                logger.info(
                    "job %s %s expired before it started", delivery.job_id, delivery.task_name
                )
                self._skip(expired_outcome(delivery))
            else:
                # Cancelled, or finished by an earlier delivery: ack it, do not run it again.
                self.skipped += 1
                logger.info(
                    "job %s already %s: entry %s acked without running it",
                    delivery.job_id,
                    verdict.decode(),
                    delivery.entry_id.decode(),
                )
                self._skip(Outcome(delivery, Action.FINISH))
        if paused:
            # Learn the flag now, not when the notice comes: the next read leaves the queue out
            # (else it could read the copies just handed back, and hand them back again).
            await self.levels_changed()

    def _limits_of(self, delivery: Delivery) -> Limits | None:
        name, queue = delivery.task_name or "", delivery.keys.queue
        config = self._limited.get(name)
        if config is None or delivery.job_id is None:
            return None
        limits = self._limits.get((queue, name))
        if limits is None:
            # Scoped to (queue, task): the keys share the queue's hash tag (Cluster slot).
            limits = Limits(name, delivery.keys, config.rate_limit, config.max_concurrency)
            self._limits[(queue, name)] = limits
        return limits

    def _attempt_limit(self, delivery: Delivery) -> int:
        task = self._app.tasks.get(delivery.task_name or "")
        retries = 0 if task is None else task._config.retries
        return max(self._app.max_deliveries, retries + 1)

    async def _start_scripts(self, deliveries: list[Delivery]) -> list[Any] | None:
        # The entries are ours now: keep trying, since giving up would strand them until
        # their lease lapses and have them claimed as a dead worker's. That holds for a
        # server that refuses the start's writes for now (OOM at maxmemory, READONLY in a
        # failover) too: only those starts are made again, the others' verdicts stand. Only
        # a stop ends the attempts (the entries are then handed back).
        backoff = Backoff(logger, "start jobs")
        replies: list[Any] = [None] * len(deliveries)
        waiting = list(range(len(deliveries)))
        while True:
            batches = self._start_calls(deliveries, waiting)
            try:
                answers = await self._connections.direct.run(call for call, _ in batches)
            except REDIS_ERRORS as exc:
                if self._giving_up:
                    return None
                await backoff.failed(exc)
                continue
            for (_, indexes), answer in zip(batches, answers, strict=True):
                if isinstance(answer, Exception):
                    # The whole call was refused (e.g. NOGROUP): so was each of its starts.
                    answer = [answer] * len(indexes)
                for i, reply in zip(indexes, answer, strict=True):
                    replies[i] = reply
            waiting = [i for i in waiting if passing_refusal(replies[i])]
            if not waiting:
                backoff.succeeded()
                return replies
            if self._giving_up:
                return None
            for i in waiting:
                # Renewed while they wait: no worker (this one's reclaimer included) may
                # take them as abandoned.
                delivery = deliveries[i]
                self._in_flight[(delivery.stream, delivery.entry_id)] = delivery.keys
            await backoff.failed(replies[waiting[0]])

    def _start_calls(
        self, deliveries: list[Delivery], indexes: list[int]
    ) -> list[tuple[scripts.Call, list[int]]]:
        """The start script's calls for ``deliveries[i]`` of each of ``indexes``, with the
        indexes each call answers for: one call per stream and limits (a task's limits, or
        none), since a call's own cost is most of what starting a job costs the server."""
        batches: dict[tuple[bytes, Limits | None], list[int]] = {}
        for i in indexes:
            delivery = deliveries[i]
            batches.setdefault((delivery.stream, delivery.limits), []).append(i)
        calls = []
        for (stream, limits), batch in batches.items():
            keys = deliveries[batch[0]].keys
            for at in range(0, len(batch), scripts.MOST_JOBS_PER_CALL):
                chunk = batch[at : at + scripts.MOST_JOBS_PER_CALL]
                call = scripts.start(
                    stream=stream,
                    events=keys.events,
                    delayed=keys.delayed,
                    followed=keys.followed,
                    paused=keys.paused,
                    holder_streams=keys.streams,
                    consumer=self._consumer,
                    group=GROUP,
                    events_limit=self._app.events_limit,
                    limits=None if limits is None else limits.start_call(self._lease_ms),
                    jobs=[self._started_job(deliveries[i]) for i in chunk],
                )
                calls.append((call, chunk))
        return calls

    def _started_job(self, delivery: Delivery) -> scripts.StartedJob:
        return scripts.StartedJob(
            record=delivery.record,
            queued=delivery.queued,
            entry_id=delivery.entry_id,
            max_attempts=self._attempt_limit(delivery),
            keeps_record=delivery.result_ttl > 0,
            prior_attempts=delivery.prior_attempts,
            expires_at=delivery.expires_ms,
            record_ttl=record_ttl(delivery.result_ttl),
            task_name=delivery.task_name or "",
            job_id=delivery.job_id or "",
            queued_first=delivery.may_wait_queued,
        )


def _pairs(raw: list[bytes]) -> dict[bytes, bytes]:
    """An entry's fields from the flat list a script returns."""
    return dict(zip(raw[::2], raw[1::2], strict=True))
