"""The worker: lifecycle and shutdown. Fetching, running and acking live in their own modules."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import traceback
import uuid
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, RedisError

from .._app import App, connections_of, lifecycle_of
from .._checks import seconds, whole_number
from .._depend import job_ended
from .._hooks import ResourceKey, lookup
from .._redis._backoff import Backoff
from .._redis._cluster import check_workers_supported
from .._redis._errors import passing_refusal, redact, translate_errors
from .._redis._keys import Keys, check_name, keys_of
from .._version import __version__
from ..exceptions import ConfigurationError, ConnectionFailed, ErrorType, ServerError
from ._acker import Acker
from ._burst import until_drained
from ._control import Controller
from ._fetcher import Fetcher, Slots
from ._lease import LeaseKeeper
from ._levels import Levels
from ._outcome import Action, Delivery, Outcome
from ._presence import Presence
from ._reads import BlockingReads
from ._reclaim import Reclaimer, prune_consumers
from ._recycle import Recycler
from ._runner import Runner, failure_outcome
from ._scheduler import Scheduler
from ._supervisor import Loops

logger = logging.getLogger("aqueue.worker")

T = TypeVar("T")

HURRIED_WRITES = 2.0
"""Seconds a worker stopped at once still gives the server to take the outcomes it holds."""
CONTROL_READY_SECONDS = 5.0
"""Most seconds a start waits for the worker's subscriptions (remote control, its queues'
notices)."""


class Worker:
    """Runs an app's jobs: many at once on the current event loop.

    Args:
        app: The app whose tasks this worker runs.
        queues: Queue names to consume; defaults to the app's default queue.
        concurrency: Most jobs run at once.
        grace_period: On stop, seconds running jobs get to finish before they are cancelled
            and handed back to the queue.
        threads: Most synchronous (``def``) tasks run at once, each in a thread.
        name: The worker's consumer name; unique by default (host, pid, random suffix).
        starvation_guard: With a backlog on several priority levels, every this many reads
            take from the lowest waiting level first, so low-priority work still moves while
            higher work keeps coming. ``None`` (the default): strictly higher first.
        max_jobs: Stop fetching once this many jobs have started, finish them and stop, so
            that a supervisor (``aqueue worker -p N``) replaces the process; :attr:`recycled`
            then says so. Jobs already read in the same batch as the last one allowed (at most
            ``concurrency - 1``) still run here.
        max_memory_mib: Stop gracefully, as ``max_jobs`` does, once a job ends with the
            process's resident memory above this many MiB.
        burst: Stop once the queues hold no job ready to run (none waiting in an unpaused
            queue, no delayed job due) and nothing runs in this worker.

    Run it until stopped with ``await worker.run()``, or in the background of a running loop
    with ``async with worker: ...`` (leaving the block stops it gracefully).
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 100,
        grace_period: float | timedelta = 30.0,
        threads: int = 20,
        name: str | None = None,
        starvation_guard: int | None = None,
        max_jobs: int | None = None,
        max_memory_mib: int | None = None,
        burst: bool = False,
    ) -> None:
        whole_number(concurrency, "concurrency")
        whole_number(threads, "threads")
        if max_jobs is not None:
            whole_number(max_jobs, "max_jobs")
        if max_memory_mib is not None:
            whole_number(max_memory_mib, "max_memory_mib")
        check_workers_supported(app.url)
        self.app = app
        self.queues = [check_name("queue", q) for q in (queues or [app.default_queue])]
        self.concurrency = concurrency
        self.grace_period = seconds(grace_period, "grace_period", allow_zero=True) or 0.0
        self.threads = threads
        if starvation_guard is not None and (
            isinstance(starvation_guard, bool)
            or not isinstance(starvation_guard, int)
            or starvation_guard < 2
        ):
            raise ConfigurationError(
                "starvation_guard must be a whole number >= 2 (every Nth read takes the lowest "
                f"level first) or None, not {starvation_guard!r}"
            )
        self.starvation_guard = starvation_guard
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._keys = [keys_of(app.namespace, q) for q in self.queues]
        self._levels = Levels(self._keys)
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._by_job: dict[str, asyncio.Task[None]] = {}
        self._cancelled = _RecentIds()
        self._background: asyncio.Task[None] | None = None
        self._in_flight: dict[tuple[bytes, bytes], Keys] = {}
        self._acker: Acker | None = None
        self._reclaimer: Reclaimer | None = None
        self._fetcher: Fetcher | None = None
        self._keeper: LeaseKeeper | None = None
        self._presence = Presence(
            namespace=app.namespace,
            name=self.name,
            queues=self.queues,
            concurrency=concurrency,
            tasks=list(app.tasks),
            running=lambda: len(self._running),
        )
        self._died: Exception | None = None
        """What a loop of this worker died of (raised once the worker has stopped)."""
        self._resources: dict[ResourceKey[Any], Any] = {}
        # None without limits: nothing to count or measure per job.
        self._recycler = (
            None
            if max_jobs is None and max_memory_mib is None
            else Recycler(max_jobs=max_jobs, max_memory_mib=max_memory_mib)
        )
        self.burst = burst
        self._signalled = False
        self.recycled = False
        """Whether the worker stopped because of ``max_jobs`` or ``max_memory_mib``."""

    def __repr__(self) -> str:
        return f"<Worker {self.name} queues={self.queues}>"

    @property
    def refused_acks(self) -> int:
        """Outcomes refused because another worker owned the entry by then."""
        return 0 if self._acker is None else self._acker.refused

    @property
    def skipped(self) -> int:
        """Entries acked without running because their job had already ended."""
        return 0 if self._fetcher is None else self._fetcher.skipped

    @property
    def held_back(self) -> int:
        """Deliveries a rate or concurrency limit sent back to wait (see the Limits guide)."""
        return 0 if self._fetcher is None else self._fetcher.held_back

    @property
    def claimed(self) -> int:
        """Jobs this worker took over from workers that went silent."""
        return 0 if self._reclaimer is None else self._reclaimer.claimed

    def provide(self, key: ResourceKey[T], value: T) -> None:
        """Make ``value`` available to this worker's tasks as ``current_job().resource(key)``.

        Call it from an ``@app.on_worker_start`` hook, or before the worker starts.
        """
        self._resources[key] = value

    def resource(self, key: ResourceKey[T]) -> T:
        """The value provided under ``key``, e.g. to close it in an ``on_worker_stop`` hook.

        Raises:
            ResourceNotProvided: Nothing was provided under ``key``.
        """
        return lookup(self._resources, key, self.name)

    def stop(self) -> None:
        """Stop gracefully: fetch no more, let running jobs finish within the grace period.

        A second call stops at once: running jobs are cancelled and handed back.
        """
        if self._stop_requested.is_set():
            self._hurry.set()
        self._stop_requested.set()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until :meth:`stop` (or SIGTERM/SIGINT when ``handle_signals``), then shut down.

        A Redis that cannot be reached at start-up is waited for, with backoff (logged);
        ``async with worker`` raises :class:`ConnectionFailed` instead. Signal handlers are
        installed only from the main thread, and removed on return.

        Cancelled, it stops at once, as a second :meth:`stop` does (running jobs are cancelled
        and handed back), and raises the ``CancelledError`` once the worker has stopped.

        Raises:
            Exception: What one of the worker's loops (fetcher, outcome writer, promoter and
                reclaimer, scheduler, lease keeper) died of, once the worker has stopped; it
                is logged at ERROR with its traceback when it happens. Leaving
                ``async with worker`` raises it too.
        """
        installed = handle_signals and threading.current_thread() is threading.main_thread()
        loop = asyncio.get_running_loop()
        if installed:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        # The worker serves in a task of its own, which a cancellation of run() never reaches
        # half-way: cancelled, run() stops the worker as a second signal would, and returns
        # (raising the CancelledError) only once it has stopped.
        serving = asyncio.create_task(self._serve(None), name=f"aqueue {self.name}")
        try:
            await self._until_stopped(serving)
        finally:
            if installed:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def __aenter__(self) -> Self:
        started = asyncio.get_running_loop().create_future()
        self._background = asyncio.create_task(self._serve(started), name=f"aqueue {self.name}")
        try:
            await asyncio.shield(started)
        except asyncio.CancelledError:
            # Nobody would stop a worker whose start was cancelled: it would run on, and
            # reconnect after its app closed. It stops at once (once up), and is waited for.
            await self._stop_at_once(self._background)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._background is not None
        self.stop()
        # Cancelled while it stops gracefully (an anyio scope, whose cancellation ended the
        # block, cancels again at once), it stops at once instead, to the end.
        await self._until_stopped(self._background)

    async def _until_stopped(self, serving: asyncio.Task[None]) -> None:
        """Wait for ``serving`` to end, and raise what it raised; cancelled meanwhile, stop at
        once, and raise the CancelledError once stopped."""
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            if not serving.done():
                await self._stop_at_once(serving)
            raise

    async def _stop_at_once(self, serving: asyncio.Task[None]) -> None:
        """Stop as a second signal does, and wait until ``serving`` has stopped.

        For a cancelled start or run() (a lifespan's shutdown, a timeout): its running jobs
        are cancelled and handed back, its outcomes written (within ``HURRIED_WRITES``), its
        connections closed. A cancellation again meanwhile cannot cut that short, as nothing
        would finish it later: an anyio scope cancels again at every turn of the loop until
        the task ends.
        """
        self._hurry.set()
        self.stop()
        with anyio.CancelScope(shield=True):  # an anyio scope's cancellations stay away
            while not serving.done():
                with contextlib.suppress(asyncio.CancelledError):  # a plain task.cancel()
                    await asyncio.wait([serving])
        if not serving.cancelled():
            # Retrieved, so as not to be reported unretrieved: the caller gets its own
            # cancellation, and a loop's death was logged when it happened.
            serving.exception()

    def _on_signal(self, sig: signal.Signals) -> None:
        # Only a second signal hurries: one that comes while the worker already stops on its
        # own (a recycle, --burst, a remote shutdown) is the supervisor's or the service
        # manager's first, and running jobs keep their grace period.
        if self._signalled:
            logger.warning("%s again: stopping now, handing running jobs back", sig.name)
            self._hurry.set()
        else:
            logger.info(
                "%s: stopping; running jobs get %.0f s to finish", sig.name, self.grace_period
            )
        self._signalled = True
        self._stop_once()

    async def _serve(self, started: asyncio.Future[None] | None) -> None:
        app = self.app
        logger.info("%s", self._banner())
        reads = BlockingReads(app)
        try:
            # run() (the command) outlives a server that is not up yet, as in a deploy that
            # starts both at once; an embedding program learns at once from `async with`.
            if not await self._reach_redis(wait=started is None):
                logger.info("worker %s stopped before Redis could be reached", self.name)
                return
            stop_hooks = await lifecycle_of(app).start(self)
            try:
                await self._work(reads, started)
            finally:
                await lifecycle_of(app).stop(self, stop_hooks)
        except BaseException as exc:
            if started is not None and not started.done():
                started.set_exception(exc)
                return
            raise
        finally:
            await reads.close()

    def _banner(self) -> str:
        """What this worker serves and where, so a look at its log says what to expect."""
        app = self.app
        tasks = [f"{name} ({task._config.queue})" for name, task in sorted(app.tasks.items())]
        schedules = [f"{s.task_name}: {s.describe}" for s in app.schedules]
        return "\n".join(
            [
                f"worker {self.name} starting (aqueue {__version__})",
                f"  redis:      {redact(app.url)}, namespace {app.namespace}",
                f"  queues:     {', '.join(self.queues)}",
                f"  slots:      {self.concurrency} jobs at once, {self.threads} threads",
                f"  tasks:      {', '.join(tasks) or 'none registered'}",
                f"  schedules:  {', '.join(schedules) or 'none'}",
            ]
        )

    async def _reach_redis(self, *, wait: bool) -> bool:
        """Create the queues' streams and groups; False when stopped before Redis answered.

        With ``wait``, a server that cannot be reached, or takes no writes for now (a replica
        during a failover, maxmemory), is tried again with backoff until it takes them or the
        worker is stopped. Refused credentials are no outage: they raise.
        """
        backoff = Backoff(logger, f"reach Redis at {redact(self.app.url)} to start")
        while True:
            try:
                with translate_errors(self.app.url):
                    await self._levels.refresh(self.app.redis, recreate=True)
            except (ConnectionFailed, ServerError) as exc:
                # An outage, or a server that takes no writes for now (a replica during a
                # failover, maxmemory, loading its data): wait. Refused credentials and any
                # other refusal are no outage: they raise.
                cause = exc.__cause__
                refused = (AuthenticationError, AuthenticationWrongNumberOfArgsError)
                outage = isinstance(exc, ConnectionFailed) and not isinstance(cause, refused)
                if not wait or not (outage or passing_refusal(cause)):
                    raise
                retrying = asyncio.create_task(backoff.failed(exc.__cause__ or exc))
                stopping = asyncio.create_task(self._stop_requested.wait())
                try:
                    await asyncio.wait([retrying, stopping], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    # Even when the wait is cancelled: no task of a worker outlives it.
                    retrying.cancel()
                    stopping.cancel()
                    await asyncio.wait([retrying, stopping])
                if self._stop_requested.is_set():
                    return False
            else:
                backoff.succeeded()
                return True

    async def _work(self, reads: BlockingReads, started: asyncio.Future[None] | None) -> None:
        app = self.app
        connections = connections_of(app)
        in_flight = self._in_flight

        def stop_renewing(outcomes: list[Outcome]) -> None:
            for outcome in outcomes:
                in_flight.pop((outcome.delivery.stream, outcome.delivery.entry_id), None)

        slots = Slots(self.concurrency)
        acker = self._acker = Acker(
            connections.direct,
            self.name,
            stop_renewing,
            tell=functools.partial(job_ended, app, connections),
            lease=app.lease,
            slots=slots,
            events_limit=app.events_limit,
            kept_arguments_size=app.kept_arguments_size,
        )
        runner = Runner(app, self.name, self.threads, self._resources)

        running, by_job = self._running, self._by_job

        def start_job(delivery: Delivery, attempt: int) -> None:
            job_id = delivery.job_id or ""
            if job_id in self._cancelled:
                # Cancelled while its start was on the wire: the record says so already.
                slots.give()
                acker.submit(Outcome(delivery, Action.FINISH))
                return
            in_flight[(delivery.stream, delivery.entry_id)] = delivery.keys
            if self._recycler is not None:
                self._recycle_if(self._recycler.started())
            job = asyncio.create_task(self._run_job(runner, acker, delivery, attempt))
            running.add(job)
            by_job[job_id] = job

            def done(job: asyncio.Task[None]) -> None:
                running.discard(job)
                by_job.pop(job_id, None)
                slots.give()

            job.add_done_callback(done)

        fetcher = self._fetcher = Fetcher(
            app=app,
            redis=app.redis,
            reads=reads,
            levels=self._levels,
            consumer=self.name,
            slots=slots,
            in_flight=in_flight,
            start_job=start_job,
            skip=acker.submit,
            starvation_guard=self.starvation_guard,
        )
        reclaimer = self._reclaimer = Reclaimer(
            redis=app.redis,
            calls=connections.direct,
            levels=self._levels,
            consumer=self.name,
            lease=app.lease,
            slots=slots,
            begin=functools.partial(fetcher.begin, claimed=True),
            cancel=self._cancel_jobs,
            levels_changed=fetcher.levels_changed,
        )
        keeper = self._keeper = LeaseKeeper(
            url=app.url,
            consumer=self.name,
            lease=app.lease,
            in_flight=in_flight,
            loop=asyncio.get_running_loop(),
            presence=self._presence,
        )
        try:
            # In the try: cancelled while it waits for the server, the worker must still stop
            # the keeper, which would go on beating (and hold its connection) in its thread.
            with translate_errors(app.url):
                await asyncio.to_thread(keeper.start)
            scheduler = Scheduler(app)
            async with anyio.create_task_group() as group:
                loops = Loops(group, self._loop_died)
                loops.start("outcome writer", acker.run, hurry=True)
                loops.start("lease keeper", keeper.watch, hurry=True)
                reclaiming = loops.start("promoter and reclaimer", reclaimer.run)
                scheduling = loops.start("scheduler", scheduler.run)
                fetching = loops.start("fetcher", functools.partial(_fetch, fetcher, reclaimer))
                leaving = loops.start("keeper of unknown tasks' jobs", fetcher.unknown.run)
                controller = Controller(app, self.name, self._stop_once)
                loops.start("controller", controller.run)
                listen = functools.partial(reclaimer.listen, connections.result_waiter)
                loops.start("listener to the queues' notices", listen)
                # Started means reachable: a command or a notice sent once the worker has
                # started (or listed) is heard. Bounded: a server refusing the subscriptions
                # (an ACL user without channels) costs remote control and prompt notices, not
                # the start.
                with anyio.move_on_after(CONTROL_READY_SECONDS):
                    await controller.listening.wait()
                    await reclaimer.listening.wait()
                if self.burst:
                    loops.start("burst watch", self._stop_when_drained)
                logger.info(
                    "worker %s serving %s with concurrency %d",
                    self.name,
                    ", ".join(self.queues),
                    self.concurrency,
                )
                if started is not None:
                    started.set_result(None)
                await self._stop_requested.wait()  # a stop, or a loop that died
                # Take no more work, not even other workers' lapsed jobs; no command of
                # theirs is cancelled mid-reply.
                fetcher.give_up_starts()  # or a claim in flight may wait for the server
                await reclaimer.stop_claiming()
                scheduler.stop()
                await fetcher.stop()
                # The queues' housekeeping goes to a worker that stays; only now, since a
                # round trip spent before fetcher.stop() lets the fetcher read more jobs.
                await reclaimer.resign()
                await fetching.wait()
                await leaving.wait()
                await scheduling.wait()
                await self._finish_running()
                reclaimer.stop()
                await reclaiming.wait()
                await self._write_outcomes(acker)
                group.cancel_scope.cancel()
            await self._leave()
        finally:
            runner.close()
            await asyncio.to_thread(keeper.stop)
        logger.info("worker %s stopped", self.name)
        if self._died is not None:
            raise self._died

    def _stop_once(self) -> None:
        # A remote shutdown repeated while the worker stops gracefully must not hurry it,
        # as a second signal would: only a signal (someone at the console) does that.
        if not self._stop_requested.is_set():
            self.stop()

    def _recycle_if(self, reason: str | None) -> None:
        if reason is not None and not self._stop_requested.is_set():
            logger.info("worker %s recycles: %s; stopping gracefully", self.name, reason)
            self.recycled = True
            self.stop()

    async def _stop_when_drained(self) -> None:
        await until_drained(self.app, self._keys, lambda: len(self._running))
        logger.info("worker %s: no work left in %s (--burst)", self.name, ", ".join(self.queues))
        self._stop_once()

    def _loop_died(self, error: Exception, hurry: bool) -> None:
        if self._died is None:
            self._died = error  # the first: the others may only follow from it
        if hurry:
            self._hurry.set()
        self.stop()

    def _cancel_jobs(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._cancelled.add(job_id)
            job = self._by_job.get(job_id)
            if job is not None and not job.done():
                logger.info("job %s was cancelled: stopping it", job_id)
                job.cancel()

    async def _run_job(
        self, runner: Runner, acker: Acker, delivery: Delivery, attempt: int
    ) -> None:
        try:
            outcome = await runner.run(delivery, attempt)
        except asyncio.CancelledError:
            if (delivery.job_id or "") in self._cancelled:
                # Cancelled by request: the cancel recorded the outcome; only ack.
                outcome = Outcome(delivery, Action.FINISH)
            else:
                # A shutdown: hand the job back for another worker to run.
                outcome = Outcome(delivery, Action.REQUEUE)
        except Exception as exc:
            # A bug of ours must not strand the entry: it goes to the dead letters, with why.
            logger.exception("cannot handle entry %s", delivery.entry_id.decode())
            reason = f"the worker could not handle this entry: {exc!r}"
            text = "".join(traceback.format_exception(exc))
            outcome = failure_outcome(
                delivery, ErrorType.WORKER_ERROR, reason, text, dead_reason=reason
            )
        self._presence.ran(outcome)
        acker.submit(outcome)
        if self._recycler is not None:
            self._recycle_if(self._recycler.ended())

    async def _finish_running(self) -> None:
        if self._running and not self._hurry.is_set():
            count = len(self._running)
            logger.info("waiting up to %.0f s for %d running job(s)", self.grace_period, count)
            finished = asyncio.ensure_future(asyncio.wait(list(self._running)))
            hurry = asyncio.create_task(self._hurry.wait())
            await asyncio.wait(
                [finished, hurry], timeout=self.grace_period, return_when=asyncio.FIRST_COMPLETED
            )
            finished.cancel()
            hurry.cancel()
        left = list(self._running)
        if left:
            logger.warning("handing %d unfinished job(s) back to the queue", len(left))
            for job in left:
                job.cancel()
            await asyncio.wait(left)

    async def _write_outcomes(self, acker: Acker) -> None:
        # Normally every outcome is written before the worker goes. A second stop request
        # does not wait long for a server that is down: unwritten entries stay pending, and
        # another worker claims them after their lease. A server that is up writes them
        # (the hand-backs of the jobs the second request cancelled too) in milliseconds.
        drained = asyncio.create_task(acker.drained())
        hurry = asyncio.create_task(self._hurry.wait())
        await asyncio.wait([drained, hurry], return_when=asyncio.FIRST_COMPLETED)
        hurry.cancel()
        if not drained.done():
            await asyncio.wait([drained], timeout=HURRIED_WRITES)
        if not drained.done():
            logger.warning(
                "stopping without writing some outcomes (Redis did not answer within %.0f s); "
                "their jobs run again after their lease",
                HURRIED_WRITES,
            )
            drained.cancel()

    async def _leave(self) -> None:
        # Everything was acked or handed back: this consumer holds nothing and can go. Only
        # housekeeping: a server down or refusing writes (a replica, mid-failover) must not
        # fail the stop, since any worker prunes a consumer with nothing pending later.
        try:
            for keys in self._keys:
                await prune_consumers(
                    connections_of(self.app).direct, keys, idle_ms=0, name=self.name
                )
        except (RedisError, OSError) as exc:
            logger.debug("could not remove consumer %s: %s", self.name, exc)


async def _fetch(fetcher: Fetcher, reclaimer: Reclaimer) -> None:
    # The first look brings the cancellations of the last hour: a fire-and-forget job
    # cancelled while no worker ran has no record that says so, only that list.
    await reclaimer.looked.wait()
    await fetcher.run()


class _RecentIds:
    """The last few thousand job ids cancelled while running, oldest forgotten first."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}

    def add(self, job_id: str) -> None:
        self._ids[job_id] = None
        if len(self._ids) > self.LIMIT:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids
