"""Rolling deploys: workers of two releases on one queue, one of them without a newer task.

The "old" app is a worker of the release before a task was added: it shares the namespace
and the other tasks with the "new" one, but not the task ``added``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, pending_count
from tests.internals import Keys


@dataclass
class Releases:
    old: aqueue.App
    new: aqueue.App
    added: aqueue.Task[[int], int]
    """The task only the new release has."""
    shared: aqueue.Task[[], str]
    """A task of both releases (the old app's)."""


def _release(server: RedisServer, namespace: str, grace: float) -> aqueue.App:
    app = aqueue.App(server.url, namespace=namespace, lease=3, unknown_task_grace=grace)

    @app.task(name="shared")
    async def shared() -> str:
        return "ok"

    return app


@pytest.fixture
async def releases(server: RedisServer, namespace: str) -> AsyncIterator[Releases]:
    old, new = _release(server, namespace, 60), _release(server, namespace, 60)

    @new.task(name="added")
    async def added(n: int) -> int:
        return n

    async with old, new:
        yield Releases(old, new, added, old.tasks["shared"])


async def test_jobs_of_a_task_an_old_worker_does_not_know_all_run_on_the_new_worker(
    releases: Releases,
) -> None:
    async with (
        aqueue.Worker(releases.old, concurrency=50),
        aqueue.Worker(releases.new, concurrency=5) as new_worker,
    ):
        jobs = await releases.added.enqueue_many([(n,) for n in range(20)])
        results = [await job.result(timeout=15) for job in jobs]
    assert results == list(range(20))
    infos = [await job.info() for job in jobs]
    assert {info.worker for info in infos} == {new_worker.name}
    assert {info.attempts for info in infos} == {1}
    assert await releases.new.queue().dead_letters() == []


async def test_jobs_an_old_worker_holds_go_to_a_new_worker_that_starts_later(
    releases: Releases, redis: Redis
) -> None:
    queue = releases.new.queue()
    async with aqueue.Worker(releases.old, concurrency=1):
        jobs = await releases.added.enqueue_many([(n,) for n in range(20)])
        await eventually(lambda: _pending_is(redis, releases.new, 20))
        # Holding them takes none of its slots: its own job runs meanwhile.
        assert await (await releases.shared.enqueue()).result(timeout=5) == "ok"
        async with aqueue.Worker(releases.new, concurrency=5) as new_worker:
            results = [await job.result(timeout=15) for job in jobs]
    assert results == list(range(20))
    infos = [await job.info() for job in jobs]
    assert {info.worker for info in infos} == {new_worker.name}
    assert {info.attempts for info in infos} == {1}
    assert await queue.dead_letters() == []


async def test_a_job_no_live_worker_knows_waits_as_queued_for_the_grace_then_is_dead_lettered(
    server: RedisServer, namespace: str
) -> None:
    async with _release(server, namespace, 1.5) as old, aqueue.Worker(old):
        started = time.monotonic()
        job = await old.enqueue("added", 1)
        await asyncio.sleep(0.5)
        assert await job.status() is aqueue.JobStatus.QUEUED
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=10)
        [letter] = await old.queue().dead_letters()
    assert time.monotonic() - started >= 1.5
    assert failure.value.type == "aqueue.UnknownTask"
    assert letter.job_id == job.id
    assert "unknown_task_grace" in letter.reason


async def test_an_old_worker_that_stops_hands_the_jobs_it_holds_back_at_once(
    releases: Releases, redis: Redis
) -> None:
    async with aqueue.Worker(releases.old):
        job = await releases.added.enqueue(7)
        await eventually(lambda: _pending_is(redis, releases.new, 1))
    assert not await _pending_is(redis, releases.new, 1)
    info = await job.info()
    assert (info.status, info.task) == (aqueue.JobStatus.QUEUED, "added")
    async with aqueue.Worker(releases.new):
        assert await job.result(timeout=5) == 7


async def test_ticks_of_a_periodic_task_the_old_worker_does_not_know_run_on_the_new_one(
    releases: Releases,
) -> None:
    ticks: list[float] = []

    @releases.new.periodic(every=0.3, name="new.tick")
    async def tick() -> None:
        ticks.append(time.monotonic())

    async with aqueue.Worker(releases.old, concurrency=50), aqueue.Worker(releases.new):
        await eventually(lambda: _more_than(ticks, 5), timeout=10)
    assert await releases.new.queue().dead_letters() == []


async def _pending_is(redis: Redis, app: aqueue.App, count: int) -> bool:
    return await pending_count(redis, Keys(app.namespace, "default").stream) == count


async def _more_than(items: list[float], count: int) -> bool:
    return len(items) > count
