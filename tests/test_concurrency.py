"""Concurrency: however many queues and priority levels a worker serves, no more than its
``concurrency`` jobs run at once; entries read beyond the free slots go back to their queue at
once, unstarted, for an idle worker or a free slot; a busy queue does not hold another back, and
a job on any queue still wakes an idle worker at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually
from tests.internals import GROUP, Keys


class Gauge:
    """How many jobs run at once, and the most that ever did."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.started: list[str] = []

    @contextmanager
    def run(self, name: str) -> Iterator[None]:
        self.started.append(name)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            self.running -= 1


def gauged(app: aqueue.App, gauge: Gauge, pause: float) -> aqueue.Task[[str], None]:
    """A task that runs for ``pause`` seconds under ``gauge``."""

    @app.task
    async def work(name: str) -> None:
        with gauge.run(name):
            await asyncio.sleep(pause)

    return work


async def drain(app: aqueue.App, jobs: list[aqueue.Job[Any]], **worker: Any) -> None:
    """Serve ``jobs`` (enqueued already) with one worker until every one has its result."""
    async with aqueue.Worker(app, **worker):
        await asyncio.gather(*(job.result(timeout=20) for job in jobs))


async def test_one_slot_on_two_queues_runs_one_job_at_a_time(app: aqueue.App) -> None:
    gauge = Gauge()
    work = gauged(app, gauge, 0.01)
    jobs = [
        job
        for queue in ("a", "b")
        for job in await work.options(queue=queue).enqueue_many([(queue,)] * 8)
    ]

    await drain(app, jobs, queues=["a", "b"], concurrency=1)

    assert (gauge.peak, len(gauge.started)) == (1, 16)


async def test_five_slots_on_fifty_queues_run_at_most_five_jobs_at_once(
    app: aqueue.App,
) -> None:
    gauge = Gauge()
    work = gauged(app, gauge, 0.01)
    queues = [f"q{n}" for n in range(50)]
    jobs = [
        job
        for queue in queues
        for job in await work.options(queue=queue).enqueue_many([(queue,)] * 2)
    ]

    await drain(app, jobs, queues=queues, concurrency=5)

    assert (gauge.peak, len(gauge.started)) == (5, 100)


async def test_one_slot_on_a_queue_with_several_priority_levels_runs_one_job_at_a_time(
    app: aqueue.App,
) -> None:
    gauge = Gauge()
    work = gauged(app, gauge, 0.01)
    levels = [0, 2, 5, 7, 9]
    async with aqueue.Worker(app, concurrency=1):
        # Due together: one promotion puts them on every level's stream while the worker
        # waits for new entries on all of them.
        jobs = [
            job
            for level in levels
            for job in await work.options(priority=level, delay=0.3).enqueue_many(
                [(f"{level}",)] * 3
            )
        ]
        await asyncio.gather(*(job.result(timeout=20) for job in jobs))

    assert (gauge.peak, len(gauge.started)) == (1, 15)


@pytest.mark.parametrize("priority", [5, 9], ids=["one level", "two levels"])
async def test_a_busy_queue_does_not_hold_back_another(app: aqueue.App, priority: int) -> None:
    gauge = Gauge()
    work = gauged(app, gauge, 0.005).options(priority=priority)
    busy = await work.options(queue="busy").enqueue_many([("busy",)] * 40)
    other = await work.options(queue="other").enqueue_many([("other",)] * 3)

    await drain(app, busy + other, queues=["busy", "other"], concurrency=1)

    # Served in turn: the other queue's jobs do not wait for the busy queue's backlog.
    assert gauge.started[:10].count("other") == 3


@pytest.mark.parametrize("priority", [5, 9], ids=["one level", "two levels"])
async def test_a_worker_takes_no_more_waiting_jobs_than_it_has_free_slots(
    app: aqueue.App, priority: int
) -> None:
    release = asyncio.Event()

    @app.task(priority=priority)
    async def hold() -> None:
        await release.wait()

    jobs = [await hold.options(queue=queue).enqueue() for queue in ("a", "b")]
    async with aqueue.Worker(app, queues=["a", "b"], concurrency=1):
        await eventually(lambda: _running(jobs, 1))
        # The other job is left in its queue for the next worker, which runs it at once.
        async with aqueue.Worker(app, queues=["a", "b"], concurrency=1):
            await eventually(lambda: _running(jobs, 2))
            release.set()
            await asyncio.gather(*(job.result(timeout=5) for job in jobs))


async def test_a_job_on_any_of_fifty_queues_wakes_an_idle_worker_at_once(
    app: aqueue.App,
) -> None:
    started: list[float] = []

    @app.task
    async def note() -> None:
        started.append(time.monotonic())

    queues = [f"q{n}" for n in range(50)]
    async with aqueue.Worker(app, queues=queues, concurrency=1):
        await asyncio.sleep(0.2)  # the worker waits for new entries by now
        for queue in (queues[-1], queues[0], queues[25]):
            enqueued = time.monotonic()
            await (await note.options(queue=queue).enqueue()).result(timeout=5)
            # Well under the second a read waits for new entries before it is made again.
            assert started[-1] - enqueued < 0.5


@pytest.fixture
def reads_streams_together(server: RedisServer) -> None:
    """Skip where a read that waits on several streams is handed the new entries of one only
    (Redis before 7.2): entries that arrive together are read one by one, none beyond the slots."""
    major, minor = (int(part) for part in server.version().split(".")[:2])
    if (major, minor) < (7, 2):
        pytest.skip(f"server {server.version()} hands a waiting read one stream at a time")


async def arriving_together(task: aqueue.Task[[str], None]) -> dict[str, aqueue.Job[None]]:
    """Two jobs of ``task`` on two levels of its queue, due at once: one promotion moves both
    into their streams, so a one-slot worker waiting for new entries reads both in one go.
    It runs ``high`` and hands ``low`` back. (Due in a second: time for a worker that just
    started to learn the levels from the set the enqueue writes.)"""
    due = datetime.now(UTC) + timedelta(seconds=1)
    return {
        "high": await task.options(priority=9, at=due).enqueue("high"),
        "low": await task.options(priority=1, at=due).enqueue("low"),
    }


@pytest.mark.usefixtures("reads_streams_together")
async def test_an_entry_read_beyond_the_free_slots_goes_back_to_its_queue_at_once_unstarted(
    app: aqueue.App, redis: Redis
) -> None:
    release = asyncio.Event()
    ran: list[str] = []

    @app.task
    async def hold(name: str) -> None:
        ran.append(name)
        await release.wait()

    async with aqueue.Worker(app, concurrency=1):
        jobs = await arriving_together(hold)
        await eventually(lambda: _ran(ran))

        # Back in its queue while the worker is busy: not kept waiting for its slot.
        stream = Keys(app.namespace, "default").stream_at(1)
        await eventually(lambda: _nothing_pending(redis, stream))
        assert await jobs["low"].status() is aqueue.JobStatus.QUEUED
        assert (await jobs["low"].info()).attempts == 0
        release.set()
        await jobs["low"].result(timeout=5)
    assert ran == ["high", "low"]
    assert (await jobs["low"].info()).attempts == 1


@pytest.mark.usefixtures("reads_streams_together")
async def test_an_entry_read_beyond_the_free_slots_runs_at_once_on_an_idle_worker(
    app: aqueue.App,
) -> None:
    release = asyncio.Event()

    @app.task
    async def hold(name: str) -> None:
        if name == "high":
            await release.wait()

    async with aqueue.Worker(app, concurrency=1):
        await asyncio.sleep(0.2)  # waits for new entries first: it reads both
        async with aqueue.Worker(app, concurrency=1):
            jobs = await arriving_together(hold)
            await jobs["low"].result(timeout=5)
            assert await jobs["high"].status() is aqueue.JobStatus.RUNNING
            release.set()
            await jobs["high"].result(timeout=5)


async def _running(jobs: list[aqueue.Job[None]], count: int) -> bool:
    statuses = [await job.status() for job in jobs]
    return statuses.count(aqueue.JobStatus.RUNNING) == count


async def _ran(ran: list[str]) -> bool:
    return bool(ran)


async def _nothing_pending(redis: Redis, stream: bytes) -> bool:
    summary: Any = await redis.xpending(stream, GROUP)
    return bool(summary["pending"] == 0)
