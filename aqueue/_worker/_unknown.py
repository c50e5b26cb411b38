"""Jobs of tasks this worker does not know: left for a live worker that knows them.

The same holds for an entry of a newer protocol version than this worker reads (written by a
newer release, see docs/protocol.md): it is never misread, but left for a live worker that
reads its version, with the same grace period ("knows the task" below reads "reads the
version" for it).

During a rolling deploy, workers of two releases read one queue, and a worker of the older
one meets jobs of a task that only the newer one has (a cron tick's among them). Running such
a job could only fail it, while the worker next to it would run it. So a worker never starts a
job whose task it does not know: it counts no attempt and takes no slot. It asks the registry
of live workers (``aqueue/_registry.py``) whether one that reads the job's queue knows the task:

- One does: the entry goes back to the end of its stream, through the script that hands
  entries back at shutdown (a fresh copy at the tail, the old one acked, in one step), and the
  knowing worker's next read takes it, within milliseconds. (Leaving the entry pending for a
  claim by idle time would make it wait a lease, and count each claim as a delivery: a
  fire-and-forget job, whose attempts are its deliveries, would end up as poison.) A job that
  comes back to this worker again (the workers that know it were busy) goes back after a pause
  that doubles each time, so the same entries do not cycle through it at the speed of its reads.
- None does: the entry stays pending here, its lease renewed (so no other worker of the same
  release takes it), and the registry is asked again every second; once a worker that knows
  the task registers, the entry goes back to the stream for it. When no live worker has known
  the task for ``App.unknown_task_grace``, the job starts like any other and its run sends it
  to the dead letters with the reason (``aqueue.UnknownTask``): a typo, a task removed before
  its jobs drained. Such entries are held in memory meanwhile, however many come: reading on
  past them is how this worker gets to the jobs it knows behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import NamedTuple

from .._app import App
from .._redis._keys import Keys
from .._redis._wire import ENTRY, reads
from .._registry import live_workers
from ..exceptions import AqueueError
from ._outcome import Action, Delivery, Outcome

logger = logging.getLogger("aqueue.worker")

LOOK_INTERVAL = 1.0
"""Seconds between looks at the registry while entries wait here (and the most a look is
reused for a decision)."""
FIRST_PAUSE = 0.1
"""Seconds a job this worker handed back once waits before it goes back again; doubled each
time after, up to :data:`LONGEST_PAUSE`. Also how long the fetcher pauses its reads when a read
brought only such jobs."""
LONGEST_PAUSE = 1.0
REMEMBERED = 10_000
"""Jobs whose hand-backs are counted (for the pause); the oldest are forgotten first."""


class _Readers(NamedTuple):
    """What the live workers reading one queue can take."""

    tasks: frozenset[str]
    """The task names they know."""
    protocol: int
    """The newest protocol version one of them reads."""

    def take(self, delivery: Delivery) -> bool:
        """Whether one of them can run ``delivery``."""
        if reads(delivery.fields):
            return (delivery.task_name or "") in self.tasks
        # A newer release's entry: which task it names is for a worker that reads it to say.
        version = delivery.fields.get(ENTRY.version, b"")
        return version.isdigit() and int(version) <= self.protocol


def _wanted(delivery: Delivery) -> str:
    """What a worker needs to run ``delivery`` (for the log, and the grace period's clock)."""
    if reads(delivery.fields):
        return f"task {delivery.task_name or ''}"
    version = delivery.fields.get(ENTRY.version, b"").decode(errors="replace")
    return f"protocol version {version}"


class UnknownTasks:
    """Holds a worker's deliveries of tasks it does not know until a live worker that knows
    them can take them, or their grace period ends."""

    def __init__(
        self,
        *,
        app: App,
        in_flight: MutableMapping[tuple[bytes, bytes], Keys],
        hand_back: Callable[[Outcome], None],
        start: Callable[[list[Delivery]], Awaitable[None]],
    ) -> None:
        """``hand_back`` writes an outcome (the worker's outcome writer); ``start`` starts
        deliveries whose grace ended (their run dead-letters them), free slot or not."""
        self._app = app
        self._in_flight = in_flight
        """Entries whose leases the worker renews: held ones are added here."""
        self._hand_back = hand_back
        self._start = start
        self._known = frozenset(name.encode() for name in app.tasks)
        """The task names this worker knows, as entries carry them (tasks registered later
        are looked up by name)."""
        self._waiting: list[tuple[float, Delivery]] = []
        """Held entries, each with when (monotonic) to decide about it next."""
        self._arrived = asyncio.Event()
        self._stopping = False
        self._knowers: dict[str, _Readers] = {}
        """What live workers can take, by queue they read, as of ``_looked``."""
        self._looked = float("-inf")
        self._unknown_since: dict[tuple[str, str], float] = {}
        """When a look first found no live worker of the queue that can take what a job
        needs (see :func:`_wanted`)."""
        self._handed_back: dict[str, int] = {}
        """How often this worker handed each job back (for the pause)."""

    def divert(self, deliveries: list[Delivery]) -> tuple[list[Delivery], bool]:
        """The deliveries to start now (those of tasks this worker does not know stay here),
        and whether only jobs this worker handed back before came: then the fetcher pauses
        its reads briefly, so that the workers that know them read them first.

        Entries of a protocol version it reads without a job id or task name are started:
        their run dead-letters them."""
        known = self._known
        if all(
            delivery.fields.get(ENTRY.task) in known and reads(delivery.fields)
            for delivery in deliveries
        ):
            return deliveries, False  # the hot path: no name decoded, no list made
        tasks = self._app.tasks
        started: list[Delivery] = []
        again = True
        for delivery in deliveries:
            name, job_id = delivery.task_name, delivery.job_id
            if reads(delivery.fields) and (name is None or job_id is None or name in tasks):
                started.append(delivery)
                again = False
            elif self._stopping:
                self._give_back(delivery)
            else:
                self._in_flight[(delivery.stream, delivery.entry_id)] = delivery.keys
                times = self._handed_back.get(job_id or "", 0)
                again = again and times > 0
                pause = min(FIRST_PAUSE * 2 ** (times - 1), LONGEST_PAUSE) if times else 0.0
                self._waiting.append((time.monotonic() + pause, delivery))
                self._arrived.set()
        return started, again

    def stop(self) -> None:
        """Hand every held entry back now and end :meth:`run` (the worker stops)."""
        self._stopping = True
        self._arrived.set()
        waiting, self._waiting = self._waiting, []
        for _, delivery in waiting:
            self._give_back(delivery)

    async def run(self) -> None:
        """Decide about held entries as their time comes, until :meth:`stop`.

        Never cancelled: it returns after the decision in flight, which may start jobs."""
        while not self._stopping:
            self._arrived.clear()
            now = time.monotonic()
            due = [delivery for when, delivery in self._waiting if when <= now]
            if due:
                await self._decide(due, now)
                continue
            wait = min((when for when, _ in self._waiting), default=now + LOOK_INTERVAL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait - now)

    async def _decide(self, due: list[Delivery], now: float) -> None:
        """Hand back, keep or start the entries due at ``now`` (still in ``_waiting`` while
        the registry is read, so that a stop meanwhile hands them back)."""
        knowers = await self._look()
        if self._stopping:
            return
        # Entries that came during the look are due later than `now`: only `due` goes.
        self._waiting = [(when, delivery) for when, delivery in self._waiting if when > now]
        now = time.monotonic()
        if knowers is None:  # the registry cannot be read now: ask again later
            self._waiting.extend((now + LOOK_INTERVAL, delivery) for delivery in due)
            return
        grace = self._app.unknown_task_grace
        ended: list[Delivery] = []
        for delivery in due:
            queue, wanted = delivery.keys.queue, _wanted(delivery)
            readers = knowers.get(queue)
            if readers is not None and readers.take(delivery):
                if self._unknown_since.pop((queue, wanted), None) is not None:
                    logger.info("a worker that can take %s reads queue %s now", wanted, queue)
                self._give_back(delivery)
                continue
            since = self._unknown_since.get((queue, wanted))
            if since is None:
                since = self._unknown_since[(queue, wanted)] = now
                logger.warning(
                    "no live worker reading queue %s can take %s: its jobs wait up to "
                    "%g s for one (unknown_task_grace), then go to the dead letters",
                    queue,
                    wanted,
                    grace,
                )
            if now - since >= grace:
                ended.append(delivery)
            else:
                self._waiting.append((now + LOOK_INTERVAL, delivery))
        if ended:
            await self._start(ended)

    async def _look(self) -> dict[str, _Readers] | None:
        """What live workers can take, by queue they read; None when the registry cannot be
        read."""
        if time.monotonic() - self._looked < LOOK_INTERVAL:
            return self._knowers
        try:
            workers = await live_workers(self._app)
        except AqueueError as exc:
            logger.warning("cannot read the registry of workers: %s; asking again", exc)
            return None
        knowers: dict[str, set[str]] = {}
        protocols: dict[str, int] = {}
        for worker in workers:
            for queue in worker.queues:
                knowers.setdefault(queue, set()).update(worker.tasks)
                protocols[queue] = max(protocols.get(queue, 0), worker.protocol)
        self._knowers = {
            queue: _Readers(frozenset(tasks), protocols[queue]) for queue, tasks in knowers.items()
        }
        self._looked = time.monotonic()
        return self._knowers

    def _give_back(self, delivery: Delivery) -> None:
        job_id = delivery.job_id or ""
        self._handed_back[job_id] = self._handed_back.pop(job_id, 0) + 1
        if len(self._handed_back) > REMEMBERED:
            del self._handed_back[next(iter(self._handed_back))]
        logger.debug("job %s of task %s left to other workers", job_id, delivery.task_name)
        self._hand_back(Outcome(delivery, Action.REQUEUE))
