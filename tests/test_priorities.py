"""Priorities: with a backlog, a worker runs higher levels first; a job keeps its level through
retries, delays, dead letters and reclaims; the starvation guard lets low levels through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually
from tests.internals import GROUP, Keys


async def run_backlog(app: aqueue.App, done: list[Any], count: int, **worker: Any) -> None:
    """Serve the enqueued backlog with one worker until ``count`` jobs ran."""
    async with aqueue.Worker(app, **worker):
        await eventually(lambda: _ran(done, count), timeout=15)


async def _ran(done: list[Any], count: int) -> bool:
    return len(done) >= count


async def test_a_backlog_runs_highest_priority_first_with_concurrency_one(
    app: aqueue.App,
) -> None:
    done: list[str] = []

    @app.task
    async def note(name: str) -> None:
        done.append(name)

    @app.task(priority=9)
    async def urgent(name: str) -> None:
        done.append(name)

    await note.options(priority=0).enqueue("low")
    await note.enqueue("normal-1")
    await urgent.enqueue("urgent-1")
    await note.options(priority=7).enqueue("high")
    await note.enqueue("normal-2")
    await urgent.options(priority=9).enqueue("urgent-2")
    await app.enqueue(urgent.name, "urgent-3")  # by name: the task's own priority
    await run_backlog(app, done, 7, concurrency=1)
    assert done == ["urgent-1", "urgent-2", "urgent-3", "high", "normal-1", "normal-2", "low"]


async def test_one_group_of_jobs_at_several_levels_puts_each_on_its_own_level(
    app: aqueue.App,
) -> None:
    done: list[str] = []

    @app.task
    async def note(text: str) -> None:
        done.append(text)

    # One enqueue call for the three: each job still goes to its level's stream.
    signatures = [
        note.options(priority=1).s("low"),
        note.s("normal"),
        note.options(priority=8).s("high"),
    ]
    await aqueue.group(signatures).enqueue()
    await run_backlog(app, done, 3, concurrency=1)
    assert done == ["high", "normal", "low"]


async def test_a_queued_job_at_a_priority_level_reads_queued_with_its_task(
    app: aqueue.App,
) -> None:
    @app.task
    async def urgent() -> None: ...

    job = await urgent.options(priority=9).enqueue()

    info = await job.info()
    assert (info.status, info.task) == (aqueue.JobStatus.QUEUED, urgent.name)
    assert await job.cancel() is True
    assert (await job.info()).task == urgent.name


async def test_a_retried_job_comes_back_at_its_own_priority(app: aqueue.App) -> None:
    done: list[str] = []

    @app.task(priority=9, retries=1)
    async def urgent() -> None:
        done.append("urgent")
        if done.count("urgent") == 1:
            raise aqueue.Retry(delay=0.2)

    @app.task
    async def chore(n: int) -> None:
        await asyncio.sleep(0.05)
        done.append(f"chore-{n}")

    await urgent.enqueue()
    await chore.enqueue_many([(n,) for n in range(20)])
    await run_backlog(app, done, 22, concurrency=1)
    # Back in the level-9 stream, the retry overtakes the default-level backlog; in the
    # default stream it would have waited behind all of it.
    retried_at = done.index("urgent", 1)
    assert len(done) - retried_at > 5


async def test_a_delayed_job_comes_back_at_its_own_priority(app: aqueue.App) -> None:
    done: list[str] = []

    @app.task
    async def chore(name: str) -> None:
        await asyncio.sleep(0.05)
        done.append(name)

    await chore.options(priority=9, delay=0.3).enqueue("delayed")
    await chore.enqueue_many([(f"chore-{n}",) for n in range(20)])
    await run_backlog(app, done, 21, concurrency=1)
    assert len(done) - done.index("delayed") > 5


async def test_a_replayed_dead_letter_goes_back_to_its_own_priority(app: aqueue.App) -> None:
    fail = True

    @app.task(priority=2, dead_letter_failures=True)
    async def fragile() -> str:
        if fail:
            raise RuntimeError("not yet")
        return "fixed"

    job = await fragile.enqueue()
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await job.result(timeout=10)
    queue = app.queue()
    assert await queue.replay_dead_letters() == 1
    assert (await queue.stats()).queued_by_priority == {5: 0, 2: 1}
    fail = False
    async with aqueue.Worker(app):
        assert await job.result(timeout=10) == "fixed"


async def test_a_dead_workers_job_on_another_level_is_claimed_and_run(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=1)

    @app.task(priority=8)
    async def add(x: int, y: int) -> int:
        return x + y

    stream = Keys(namespace, "default").stream_at(8)
    async with app:
        job = await add.enqueue(2, 3)
        # A consumer takes the entry and dies without acking it.
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        assert await redis.xreadgroup(GROUP, "ghost", {stream: ">"}, count=10)
        async with aqueue.Worker(app) as worker:
            assert await job.result(timeout=10) == 5
        assert worker.claimed == 1
    assert await redis.xlen(stream) == 0


async def test_stats_count_every_level(app: aqueue.App) -> None:
    @app.task
    async def noop() -> None: ...

    await noop.options(priority=0).enqueue()
    await noop.enqueue()
    await noop.options(priority=9).enqueue()
    await noop.options(priority=9).enqueue()
    await noop.options(priority=9, delay=60).enqueue()
    stats = await app.queue().stats()
    assert (stats.queued, stats.scheduled, stats.running) == (4, 1, 0)
    assert stats.queued_by_priority == {9: 2, 5: 1, 0: 1}


async def test_a_queue_without_priorities_reports_only_the_default_level(
    app: aqueue.App,
) -> None:
    @app.task
    async def noop() -> None: ...

    await noop.enqueue()
    assert (await app.queue().stats()).queued_by_priority == {5: 1}


async def test_the_queue_length_limit_counts_every_level(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace, max_queue_length=2) as app:

        @app.task
        async def noop() -> None: ...

        await noop.options(priority=9).enqueue()
        await noop.options(priority=1).enqueue()
        with pytest.raises(aqueue.QueueFull):
            await noop.enqueue()


async def test_the_starvation_guard_lets_low_priority_work_through(app: aqueue.App) -> None:
    done: list[int] = []

    @app.task
    async def note(level: int) -> None:
        done.append(level)

    await note.options(priority=0).enqueue_many([(0,)] * 3)
    await note.options(priority=9).enqueue_many([(9,)] * 9)
    await run_backlog(app, done, 12, concurrency=1, starvation_guard=3)
    # Every third read takes the lowest waiting level first.
    assert done == [9, 9, 0, 9, 9, 0, 9, 9, 0, 9, 9, 9]


async def test_a_level_first_used_while_the_worker_waits_is_read(app: aqueue.App) -> None:
    @app.task
    async def echo(n: int) -> int:
        return n

    async with aqueue.Worker(app):
        assert await (await echo.enqueue(1)).result(timeout=5) == 1
        assert await (await echo.options(priority=9).enqueue(2)).result(timeout=5) == 2
        assert await (await echo.options(priority=0).enqueue(3)).result(timeout=5) == 3


async def test_a_worker_recreates_a_vanished_level_stream_and_goes_on(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(priority=9)
    async def echo(n: int) -> int:
        return n

    stream = Keys(app.namespace, "default").stream_at(9)
    async with aqueue.Worker(app):
        assert await (await echo.enqueue(1)).result(timeout=5) == 1
        await redis.delete(stream)  # as FLUSHDB or a failover to an empty replica would
        assert await (await echo.enqueue(2)).result(timeout=10) == 2
    assert [group["name"] for group in await redis.xinfo_groups(stream)] == [b"aqueue"]


async def test_a_stopped_worker_leaves_no_consumer_on_any_level(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(priority=1)
    async def noop() -> None: ...

    async with aqueue.Worker(app):
        await (await noop.enqueue()).result(timeout=5)
    keys = Keys(app.namespace, "default")
    for stream in (keys.stream, keys.stream_at(1)):
        assert await redis.xinfo_consumers(stream, GROUP) == []


@pytest.mark.parametrize("priority", [-1, 10, 2.5, "high", True])
def test_an_invalid_priority_is_refused(priority: Any) -> None:
    app = aqueue.App()

    @app.task
    async def noop() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="priority must be a whole number"):
        app.task(name="other", priority=priority)
    with pytest.raises(aqueue.ConfigurationError, match=r"from 0 \(lowest\) to 9 \(highest\)"):
        noop.options(priority=priority)


@pytest.mark.parametrize("guard", [0, 1, 2.0, True])
def test_an_invalid_starvation_guard_is_refused(guard: Any) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="starvation_guard"):
        aqueue.Worker(aqueue.App(), starvation_guard=guard)


async def test_a_worker_on_several_queues_serves_each_by_its_own_priorities(
    app: aqueue.App,
) -> None:
    done: list[str] = []

    @app.task
    async def note(name: str) -> None:
        done.append(name)

    await note.options(queue="a", priority=1).enqueue("a-low")
    await note.options(queue="a", priority=8).enqueue("a-high")
    await note.options(queue="b").enqueue("b-normal")
    await run_backlog(app, done, 3, queues=["a", "b"], concurrency=1)
    assert set(done) == {"a-low", "a-high", "b-normal"}
    assert done.index("a-high") < done.index("a-low")
