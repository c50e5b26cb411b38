"""An idle fleet costs Redis almost nothing, and loses no promptness for it: one leader per
queue promotes and reclaims, woken by pub/sub; cancels reach every worker by pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, read_as
from tests.internals import GROUP, PROMPT_GRACE, PROMPT_SPREAD, TELL_INTERVAL, Keys

# Command counts and timings do not depend on the event loop (the loops' own tests do).
ONE_LOOP = True

CALM_LEASE = 30.0
"""The default lease: a leader then looks on its own only every 10 s, so a test that sees a
job promoted or cancelled sooner sees a notice at work."""
IDLE_BUDGET = 0.5
"""Most commands per second the server may run for an idle worker for each queue it serves,
counting those that scripts run (as INFO commandstats does)."""
IDLE_WINDOW = CALM_LEASE + 1
"""Seconds the idle test counts commands: longer than the workers' slowest cycle (a lease: the
other workers ask how long the leader's leadership has left about that often)."""


@pytest.fixture
async def calm_app(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(server.url, namespace=namespace, lease=CALM_LEASE) as the_app:
        yield the_app


@contextlib.asynccontextmanager
async def _commands_run(url: str) -> AsyncIterator[Counter[str]]:
    """The commands the server runs during the block, by name, those inside scripts too
    (counted once the block is left)."""
    ran: Counter[str] = Counter()
    async with Redis.from_url(url, single_connection_client=True) as client:
        await client.config_resetstat()
        yield ran
        stats = await client.info("commandstats")
    ran.update({name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()})
    for own in ("config|resetstat", "info"):  # this count's own
        del ran[own]


@pytest.mark.slow
async def test_idle_workers_cost_at_most_half_a_command_per_second_per_queue(
    calm_app: aqueue.App, server: RedisServer
) -> None:
    """4 workers on 5 queues (as benchmarks/idle.py runs them), counted by INFO commandstats."""

    @calm_app.cron("0 0 1 1 *", queue="a")  # a schedule: its ticks are waited for, not polled
    async def yearly() -> None:
        pass

    queues = ["a", "b", "c", "d", "e"]
    async with contextlib.AsyncExitStack() as fleet:
        for _ in range(4):
            await fleet.enter_async_context(aqueue.Worker(calm_app, queues=queues))
        await asyncio.sleep(1)  # started: the first looks and scans are over
        async with _commands_run(server.url) as ran:
            await asyncio.sleep(IDLE_WINDOW)
    per_pair = ran.total() / IDLE_WINDOW / (4 * len(queues))
    assert per_pair <= IDLE_BUDGET, ran.most_common()


async def test_delayed_jobs_a_live_leader_promotes_cost_the_other_workers_no_look(
    calm_app: aqueue.App, server: RedisServer
) -> None:
    """Each promotion announces the next due time, so the others never find one overdue."""

    @calm_app.task
    async def noop() -> None:
        pass

    async with contextlib.AsyncExitStack() as fleet:
        for _ in range(4):
            await fleet.enter_async_context(aqueue.Worker(calm_app))
        await asyncio.sleep(1)  # started: the first looks are over
        async with _commands_run(server.url) as ran:
            jobs = [await noop.options(delay=0.3 * n).enqueue() for n in (1, 2, 3)]
            for job in jobs:
                await job.result(timeout=5)
            await asyncio.sleep(PROMPT_GRACE + PROMPT_SPREAD)  # when the others would look
    assert ran["scard"] == len(jobs)  # a look's SCARD: the leader's, one at each due time


async def test_jobs_coming_due_one_after_another_tell_their_next_due_time_now_and_then(
    calm_app: aqueue.App, server: RedisServer
) -> None:
    """Each notice reaches every worker of the queue: a run of due times costs a few of them,
    not one per promotion."""
    count, gap = 20, 0.02
    ran = asyncio.Semaphore(0)

    @calm_app.task(result_ttl=0)  # no record, whose watchers a promotion would tell too
    async def noop() -> None:
        ran.release()

    async with (
        aqueue.Worker(calm_app),
        aqueue.Worker(calm_app),
        _commands_run(server.url) as counted,
    ):
        for n in range(count):
            await noop.options(delay=0.5 + n * gap).enqueue()
        for _ in range(count):
            await asyncio.wait_for(ran.acquire(), 5)
    # The first job's schedule, then the promotions once a TELL_INTERVAL, and the last.
    assert counted["spublish"] <= 1 + (count - 1) * gap / TELL_INTERVAL + 2


async def test_a_delayed_job_starts_on_time_though_a_later_one_was_scheduled_first(
    calm_app: aqueue.App,
) -> None:
    started: dict[str, float] = {}

    @calm_app.task
    async def note(name: str) -> None:
        started[name] = time.time()

    async with aqueue.Worker(calm_app), aqueue.Worker(calm_app):
        await note.options(delay=60).enqueue("later")
        await asyncio.sleep(0.3)  # the leader sleeps until the later job is due
        due = time.time() + 1.0
        await (await note.options(delay=1.0).enqueue("sooner")).result(timeout=5)
    assert started["sooner"] - due < 0.1


async def test_a_retry_starts_on_time_while_the_leader_sleeps(calm_app: aqueue.App) -> None:
    attempts: list[float] = []

    @calm_app.task(retries=1, backoff=aqueue.backoff.fixed(1.0))
    async def flaky() -> None:
        attempts.append(time.time())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    async with aqueue.Worker(calm_app):
        await asyncio.sleep(0.3)  # the leader sleeps: nothing is due
        await (await flaky.enqueue()).result(timeout=5)
    assert attempts[1] - attempts[0] < 1.0 + 0.1


async def test_a_stopping_leader_hands_its_queue_over_at_once(calm_app: aqueue.App) -> None:
    started: list[float] = []

    @calm_app.task
    async def note() -> None:
        started.append(time.time())

    keys = Keys(calm_app.namespace, "default")
    async with aqueue.Worker(calm_app) as leaving:
        await eventually(lambda: _leads(calm_app, keys, leaving.name))
        async with aqueue.Worker(calm_app) as staying:
            # A graceful stop, while the other works on (leaving the block again is a no-op).
            await leaving.__aexit__(None, None, None)
            due = time.time() + 0.5
            await (await note.options(delay=0.5).enqueue()).result(timeout=5)
            assert await _leads(calm_app, keys, staying.name)
    assert started[0] - due < 0.1


async def test_an_idle_leader_keeps_its_queue_lease_after_lease(
    server: RedisServer, namespace: str
) -> None:
    """Nothing is due, so the leader does not look: it renews its leadership all the same."""
    async with aqueue.App(server.url, namespace=namespace, lease=0.6) as app:
        keys = Keys(app.namespace, "default")
        async with aqueue.Worker(app) as first:
            await eventually(lambda: _leads(app, keys, first.name))
            async with aqueue.Worker(app):
                await asyncio.sleep(5 * app.lease)
                assert await _leads(app, keys, first.name)


async def _leads(app: aqueue.App, keys: Keys, name: str) -> bool:
    return await app.redis.get(keys.leader) == name.encode()


async def test_a_dead_leaders_job_runs_on_another_worker_within_the_lease_and_a_second(
    app: aqueue.App, redis: Redis
) -> None:
    ran = asyncio.Event()

    @app.task
    async def work() -> None:
        ran.set()

    keys = Keys(app.namespace, "default")
    # A worker that led the queue and took the job, then died (no renewal of either).
    await work.enqueue()
    await read_as(redis, keys, "dead-worker")
    await redis.set(keys.leader, "dead-worker", px=int(app.lease * 1000))
    died = time.monotonic()
    async with aqueue.Worker(app):
        await asyncio.wait_for(ran.wait(), app.lease + 5)
    assert time.monotonic() - died <= app.lease + 1


async def test_a_dead_workers_job_runs_on_the_leader_within_the_lease_and_a_second(
    app: aqueue.App, redis: Redis
) -> None:
    ran = asyncio.Event()

    @app.task
    async def work() -> None:
        ran.set()

    keys = Keys(app.namespace, "default")
    await work.enqueue()
    await read_as(redis, keys, "dead-worker")  # a worker took the job, then died
    died = time.monotonic()
    async with aqueue.Worker(app) as first, aqueue.Worker(app) as second:
        await asyncio.wait_for(ran.wait(), app.lease + 5)
        took = time.monotonic() - died
        claimant = first if first.claimed else second
        assert await _leads(app, keys, claimant.name)
    assert took <= app.lease + 1
    assert first.claimed + second.claimed == 1


async def test_a_dead_workers_job_runs_within_the_lease_and_a_second_on_a_worker_with_room(
    app: aqueue.App, redis: Redis
) -> None:
    """The leader has no free slot: it asks the others, and one with room claims the job."""
    keys = Keys(app.namespace, "default")
    busy, ran = asyncio.Event(), asyncio.Event()

    @app.task
    async def hold() -> None:
        busy.set()
        await asyncio.sleep(30)

    @app.task
    async def work() -> None:
        ran.set()

    async with aqueue.Worker(app, concurrency=1, grace_period=0) as leader:
        await eventually(lambda: _leads(app, keys, leader.name))
        await hold.enqueue()
        await asyncio.wait_for(busy.wait(), 5)
        await work.enqueue()
        # A worker took the job (the leader, busy, reads nothing), then died.
        await redis.xreadgroup(GROUP, "dead-worker", {keys.stream: ">"}, count=1)
        died = time.monotonic()
        async with aqueue.Worker(app) as roomy:
            await asyncio.wait_for(ran.wait(), app.lease + 5)
            took = time.monotonic() - died
    assert took <= app.lease + 1
    assert roomy.claimed == 1


def _stoppable(app: aqueue.App) -> tuple[aqueue.Task[[], None], asyncio.Event, asyncio.Event]:
    """A task that runs until cancelled; events set when it started and when it stopped."""
    started, stopped = asyncio.Event(), asyncio.Event()

    @app.task
    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise

    return slow, started, stopped


async def test_a_cancel_sent_while_a_worker_was_not_listening_still_stops_its_job(
    calm_app: aqueue.App, redis: Redis
) -> None:
    slow, started, stopped = _stoppable(calm_app)
    async with aqueue.Worker(calm_app):
        job = await slow.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        await redis.client_kill_filter(_type="pubsub")  # the worker subscribes again
        await job.cancel()
        await asyncio.wait_for(stopped.wait(), 2)


async def test_a_cancel_reaches_a_listening_worker_at_once(calm_app: aqueue.App) -> None:
    slow, started, stopped = _stoppable(calm_app)
    async with aqueue.Worker(calm_app):
        job = await slow.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        await job.cancel()
        await asyncio.wait_for(stopped.wait(), 0.5)


async def test_a_pause_reaches_an_idle_worker_at_once(calm_app: aqueue.App) -> None:
    @calm_app.task
    async def noop() -> None:
        pass

    async with aqueue.Worker(calm_app):
        await asyncio.sleep(0.3)  # idle: its read blocks
        await calm_app.queue().pause()
        await asyncio.sleep(0.2)
        job = await noop.enqueue()
        await asyncio.sleep(1)
        assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_new_priority_level_reaches_an_idle_worker_at_once(calm_app: aqueue.App) -> None:
    @calm_app.task
    async def noop() -> None:
        pass

    async with aqueue.Worker(calm_app):
        await asyncio.sleep(0.3)  # idle: its read blocks on the default level's stream
        job = await noop.options(priority=9).enqueue()
        await job.result(timeout=1)
