"""Flushing outcomes: ack late, many at once, fenced.

Outcomes pile up while a flush is on the wire and go out together in the next pipeline, so
a busy worker pays one round trip per batch while an idle one flushes each outcome at once.

A job's slot is free again as soon as it ends, before its outcome is written. On a server that
takes outcomes slower than the worker runs jobs (a saturated one), the outcomes would pile up
without end: memory, jobs that run again if the worker dies, leases renewed for all of them
(more work for that very server). So past :func:`most_unflushed` outcomes the worker reads
and claims no more jobs until the flushes catch up (see ``Slots``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._redis import _calls as scripts
from .._redis._backoff import Backoff
from .._redis._direct import Batches
from .._redis._errors import REDIS_ERRORS, passing_refusal
from .._redis._keys import DEAD_LETTER_LIMIT, GROUP
from .._redis._scripts import FINISH
from ._fetcher import Slots
from ._outcome import Action, Outcome

logger = logging.getLogger("aqueue.worker")

UNFLUSHED_PER_SLOT = 4
"""Most outcomes per slot a worker holds unwritten before it takes in no more jobs (see
:func:`most_unflushed`)."""
LEAST_UNFLUSHED = 64
"""The bound of a worker with few slots: its flushes' own costs weigh more per outcome."""


def most_unflushed(concurrency: int) -> int:
    """How many outcomes not yet written a worker of ``concurrency`` slots may hold before it
    reads and claims no more jobs (its running jobs still end: it holds up to ``concurrency``
    more).

    A healthy server leaves about two per slot in hand: one flush on the wire, carrying what
    ended while the flush before it was, and about as many ending meanwhile (each read brings
    at most the free slots, and takes a round trip too). Measured in one-process drains of
    no-op jobs (Valkey and Redis, results kept or not): 2 per slot, now and then 3, from 10
    slots up; up to 4 with 1 to 5 slots, where the per-flush costs weigh more. So 4 per slot,
    and 64 at least, is not reached while the server keeps up, and bounds what runs again
    after a crash to about five times the concurrency: the running jobs, and those that ended
    but were not written yet.
    """
    return max(UNFLUSHED_PER_SLOT * concurrency, LEAST_UNFLUSHED)


class Acker:
    """Collects outcomes and writes them in batches of fenced finish scripts."""

    def __init__(
        self,
        calls: Batches,
        consumer: str,
        stop_renewing: Callable[[list[Outcome]], None],
        tell: Callable[[str], Awaitable[None]],
        lease: float,
        slots: Slots,
        events_limit: int = 0,
        kept_arguments_size: int = 0,
    ) -> None:
        """``stop_renewing`` gets the outcomes whose entries are no longer this worker's to
        keep (acked, handed back, or left for a redelivery); ``tell`` tells the jobs waiting
        for a job id that it ended. Telling that keeps failing for a ``lease`` gives up.
        ``slots`` are the worker's, told when too many outcomes wait to be written.
        ``events_limit`` is the length of the queues' event streams (0: no events);
        ``kept_arguments_size`` the most bytes of arguments a record keeps (0: none)."""
        self._events_limit = events_limit
        self._kept_arguments_size = kept_arguments_size
        self._calls = calls
        self._tell = tell
        self._lease = lease
        self._telling: set[asyncio.Task[None]] = set()
        self._stop_renewing = stop_renewing
        self._consumer = consumer.encode()
        self._pending: list[Outcome] = []
        self._flushing = 0
        """Outcomes of the flush on the wire."""
        self._slots = slots
        self._most_unflushed = most_unflushed(slots.size)
        self._backlogged = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.refused = 0
        """Acks refused because another worker owns the entry now (our lease lapsed)."""
        self.failed = 0
        """Outcomes the server refused for good (e.g. WRONGTYPE): let go, run again."""

    def submit(self, outcome: Outcome) -> None:
        """Queue an outcome for the next flush."""
        self._pending.append(outcome)
        self._idle.clear()
        self._wake.set()
        self._count()

    async def drained(self) -> None:
        """Wait until every submitted outcome has been written."""
        await self._idle.wait()

    async def run(self) -> None:
        """Flush until cancelled; cancel only after :meth:`drained` to lose nothing."""
        try:
            await self._flush_until_cancelled()
        finally:
            # Entries still being told about stay pending; another delivery tells again.
            for telling in self._telling:
                telling.cancel()

    async def _flush_until_cancelled(self) -> None:
        backoff = Backoff(logger, "write outcomes")
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            self._flushing = len(batch)
            try:
                held, refused_for_now, refusal = await self._flush(batch)
            except REDIS_ERRORS as exc:
                # Keep the outcomes (their entries stay pending) and try again after a pause.
                # (Error replies come back per command, not here.)
                self._flushing = 0
                self._pending[:0] = batch
                self._wake.set()
                await backoff.failed(exc)
                continue
            self._flushing = 0
            # Entries held while their dependents are told stay this worker's (their lease
            # renewed) until the ack that follows: a long telling must not let them lapse.
            # So do entries whose outcome waits for the server: renewed, they stay ours,
            # and no other worker runs the job again while its outcome is kept here.
            kept = {id(outcome) for outcome in (*held, *refused_for_now)}
            self._stop_renewing([outcome for outcome in batch if id(outcome) not in kept])
            self._pending[:0] = refused_for_now
            self._count()
            if refusal is not None:
                self._wake.set()
                await backoff.failed(refusal)
                continue
            backoff.succeeded()
            if not self._pending and not self._telling:
                self._idle.set()

    async def _flush(
        self, batch: list[Outcome]
    ) -> tuple[list[Outcome], list[Outcome], Exception | None]:
        """Write ``batch``; returns the outcomes whose entries are held for telling, those the
        server refused for now (to write again), and the first such refusal."""
        calls: list[scripts.Call] = []
        answers_for: list[list[Outcome]] = []
        """The outcomes each call answers for: one for a requeue, a stream's for a finish,
        none for a release."""
        finishing: dict[bytes, list[Outcome]] = {}
        for outcome in batch:
            if outcome.action is Action.FINISH:
                finishing.setdefault(outcome.delivery.stream, []).append(outcome)
                continue
            delivery = outcome.delivery
            calls.append(
                scripts.requeue(
                    stream=delivery.stream,
                    record=delivery.record,
                    queued=delivery.queued,
                    group=GROUP,
                    consumer=self._consumer,
                    entry_id=delivery.entry_id,
                )
            )
            answers_for.append([outcome])
            _release(calls, answers_for, outcome)
        for outcomes in finishing.values():
            # One script call per stream (its keys share a slot), whatever the batch holds:
            # the call's own cost is most of what finishing a job costs the server.
            for at in range(0, len(outcomes), scripts.MOST_JOBS_PER_CALL):
                chunk = outcomes[at : at + scripts.MOST_JOBS_PER_CALL]
                calls.append(self._finish_call(chunk))
                answers_for.append(chunk)
        for outcomes in finishing.values():
            for outcome in outcomes:
                # After the finish calls: a slot is freed only once its entry was acked.
                _release(calls, answers_for, outcome)
        replies: list[tuple[Outcome, Any]] = []
        for outcomes, reply, call in zip(
            answers_for, await self._calls.run(calls), calls, strict=True
        ):
            if not outcomes:
                if isinstance(reply, Exception):
                    # The slot comes back when a job finds the limit full (its entry was
                    # acked); parked jobs wait for another release, or a lease at most.
                    logger.warning("cannot release a concurrency slot: %s", reply)
            elif call.script is not FINISH:
                replies.append((outcomes[0], reply))
            elif isinstance(reply, Exception):
                # The whole call was refused (e.g. NOGROUP): so was each of its outcomes.
                replies += ((outcome, reply) for outcome in outcomes)
            else:
                replies += zip(outcomes, reply, strict=True)
        refused_for_now: list[Outcome] = []
        refusal: Exception | None = None
        for outcome, reply in replies:
            if not isinstance(reply, Exception):
                continue
            if passing_refusal(reply):
                refused_for_now.append(outcome)
                refusal = refusal or reply
                continue
            # Refused for good (a key of the wrong type that another program wrote, a script
            # error): writing it again would fail forever while this worker held the entry.
            # Let it go instead: after its lease the entry is claimed and run again, and the
            # poison bound (max_deliveries) ends it in the dead letters if it keeps failing.
            self.failed += 1
            logger.error(
                "cannot record the outcome of job %s (entry %s): %s; it runs again after "
                "its lease. Check that no other program writes under this app's namespace.",
                outcome.delivery.job_id,
                outcome.delivery.entry_id.decode(),
                reply,
            )
        held = [outcome for outcome, reply in replies if reply == 2]
        for outcome in held:
            telling = asyncio.create_task(self._tell_then_ack(outcome))
            self._telling.add(telling)
            telling.add_done_callback(self._told)
        refused = sum(1 for _, reply in replies if not reply)
        if refused:
            self.refused += refused
            logger.warning(
                "%d outcome(s) refused: another worker owns those entries now (lease lapsed)",
                refused,
            )
        return held, refused_for_now, refusal

    def _finish_call(self, outcomes: list[Outcome]) -> scripts.Call:
        """The finish script's call for ``outcomes``, deliveries of one stream."""
        keys = outcomes[0].delivery.keys
        jobs = []
        for outcome in outcomes:
            delivery = outcome.delivery
            unique_key, key_ttl = delivery.unique_key
            kept, not_kept = b"", ""
            if outcome.status:
                kept, not_kept = delivery.kept_arguments(self._kept_arguments_size)
            jobs.append(
                scripts.FinishedJob(
                    record=delivery.record,
                    unique=unique_key,
                    dependents=keys.dependents(delivery.job_id or ":"),
                    entry_id=delivery.entry_id,
                    status=outcome.status,
                    outcome_field=outcome.field,
                    outcome=outcome.value,
                    result_ttl=delivery.result_ttl,
                    dead_reason=outcome.dead_reason,
                    retry_delay_ms=outcome.retry_delay_ms,
                    retry_member=(
                        delivery.retry_member(outcome.attempt)
                        if outcome.status == "scheduled"
                        else b""
                    ),
                    job_id=delivery.job_id or "",
                    key_ttl=key_ttl,
                    told=outcome.told,
                    task=delivery.task_name or "",
                    arguments=kept,
                    arguments_size=not_kept,
                )
            )
        return scripts.finish(
            stream=outcomes[0].delivery.stream,
            dead=keys.dead,
            delayed=keys.delayed,
            events=keys.events,
            cancelled=keys.cancelled,
            followed=keys.followed,
            group=GROUP,
            consumer=self._consumer,
            dead_limit=DEAD_LETTER_LIMIT,
            events_limit=self._events_limit,
            jobs=jobs,
        )

    async def _tell_then_ack(self, outcome: Outcome) -> None:
        # finish.lua recorded the outcome but kept the entry: jobs wait for this one. Tell
        # them, then ack. Telling is idempotent, so a crash here only makes the redelivery
        # tell them again (see aqueue/_depend.py).
        job_id = outcome.delivery.job_id or ""
        backoff = Backoff(logger, "tell waiting jobs")
        started = time.monotonic()
        while True:
            try:
                await self._tell(job_id)
            except REDIS_ERRORS as exc:
                if time.monotonic() - started < self._lease:
                    await backoff.failed(exc)
                    continue
                # Still failing after a lease (e.g. only this worker's new connections are
                # refused): renewing the entry on would keep it from everyone else.
                logger.warning("cannot tell the jobs waiting for job %s: %s", job_id, exc)
            except Exception:
                logger.exception("cannot tell the jobs waiting for job %s", job_id)
            else:
                self.submit(Outcome(outcome.delivery, Action.FINISH, told=True))
                return
            # Left pending and let go: its lease lapses, and the redelivery tells again.
            self._stop_renewing([outcome])
            return

    def _told(self, telling: asyncio.Task[None]) -> None:
        self._telling.discard(telling)
        self._count()
        if not self._pending and not self._telling:
            self._idle.set()

    def _count(self) -> None:
        """Tell the slots whether the outcomes not yet written are too many to take in more
        jobs (those held while their waiting jobs are told count too: not acked yet)."""
        unflushed = len(self._pending) + self._flushing + len(self._telling)
        backlogged = unflushed >= self._most_unflushed
        if backlogged is not self._backlogged:
            self._backlogged = backlogged
            self._slots.backlog(backlogged)


def _release(calls: list[scripts.Call], answers_for: list[list[Outcome]], outcome: Outcome) -> None:
    """Free the outcome's concurrency slot, if its task has one, after the call of its entry.

    In the same round trip, and only if that call acked the entry (see release.lua); a
    release answers for no outcome.
    """
    limits = outcome.delivery.limits
    if limits is not None and limits.concurrency is not None:
        delivery = outcome.delivery
        calls.append(limits.release_call(delivery.stream, delivery.entry_id))
        answers_for.append([])
