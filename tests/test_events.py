"""Following a job: progress reports and ``job.events()``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import cast

import pytest
from redis.asyncio import Redis

import aqueue
from tests.internals import Keys


async def test_events_stream_status_and_progress_until_the_end(app: aqueue.App) -> None:
    go = asyncio.Event()

    @app.task
    async def steps() -> str:
        await go.wait()
        await aqueue.current_job().progress(0.5, "halfway")
        await asyncio.sleep(0.3)  # past the progress interval: a separate snapshot
        return "done"

    job = await steps.enqueue()
    seen: list[tuple[aqueue.JobStatus, float | None, str | None]] = []
    async with contextlib.AsyncExitStack() as stack:
        async for info in job.events():
            seen.append((info.status, info.progress, info.progress_message))
            if info.status is aqueue.JobStatus.QUEUED:
                await stack.enter_async_context(aqueue.Worker(app))
            if info.status is aqueue.JobStatus.RUNNING:
                go.set()
    assert seen[0][0] is aqueue.JobStatus.QUEUED
    assert (aqueue.JobStatus.RUNNING, 0.5, "halfway") in seen
    assert seen[-1][0] is aqueue.JobStatus.SUCCEEDED


async def test_events_of_an_ended_job_yield_its_final_state_once(app: aqueue.App) -> None:
    @app.task
    async def work() -> int:
        return 7

    async with aqueue.Worker(app):
        job = await work.enqueue()
        await job.result(timeout=5)
    snapshots = [info async for info in job.events()]
    assert [info.status for info in snapshots] == [aqueue.JobStatus.SUCCEEDED]
    assert snapshots[0].result == 7


async def test_events_show_a_retry_as_scheduled(app: aqueue.App) -> None:
    @app.task(retries=1, backoff=aqueue.backoff.fixed(0.2))
    async def flaky() -> str:
        if aqueue.current_job().attempt == 1:
            raise RuntimeError("first try fails")
        return "second try"

    job = await flaky.enqueue()
    async with aqueue.Worker(app):
        statuses = [info.status async for info in job.events()]
    assert aqueue.JobStatus.SCHEDULED in statuses
    assert statuses[-1] is aqueue.JobStatus.SUCCEEDED


async def test_events_end_when_the_job_is_cancelled(app: aqueue.App) -> None:
    @app.task
    async def work() -> None: ...

    job = await work.enqueue()

    async def follow() -> list[aqueue.JobStatus]:
        return [info.status async for info in job.events()]

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    await job.cancel()
    assert await asyncio.wait_for(following, 5) == [
        aqueue.JobStatus.QUEUED,
        aqueue.JobStatus.CANCELLED,
    ]


async def test_events_of_an_unknown_job_raise_job_not_found(app: aqueue.App) -> None:
    with pytest.raises(aqueue.JobNotFound):
        async for _ in app.job("default:nope").events():
            pass


async def test_a_chatty_task_writes_progress_a_few_times_and_ends_with_the_last(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def chatty() -> None:
        for step in range(1, 1001):
            await aqueue.current_job().progress(step / 1000, f"step {step}")
            if step % 100 == 0:
                await asyncio.sleep(0.01)

    job = await chatty.enqueue()
    record = Keys(app.namespace, "default").job(job.id)
    writes = 0
    async with redis.pubsub() as pubsub:
        await pubsub.ssubscribe(record)
        async with aqueue.Worker(app):
            await job.result(timeout=5)
            while message := await pubsub.get_sharded_message(timeout=0.2):
                writes += message["type"] == "smessage" and message["data"] == b"progress"
    assert 1 <= writes <= 5
    info = await job.info()
    assert (info.progress, info.progress_message) == (1.0, "step 1000")


async def test_progress_after_the_job_ended_is_not_written(app: aqueue.App, redis: Redis) -> None:
    late: list[aqueue.JobContext] = []

    @app.task
    async def work() -> None:
        late.append(aqueue.current_job())

    async with aqueue.Worker(app):
        job = await work.enqueue()
        await job.result(timeout=5)
        await late[0].progress(0.9, "too late")
    assert (await job.info()).progress is None


async def test_a_follower_that_left_no_longer_counts_as_following_the_job(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def noop() -> None:
        pass

    job = await noop.enqueue()
    followed = Keys(app.namespace, "default").followed
    following = cast("AsyncGenerator[aqueue.JobInfo, None]", job.events())
    async with contextlib.aclosing(following) as events:
        async for _ in events:
            assert await redis.zscore(followed, job.id) == 1
            break
    assert await redis.zscore(followed, job.id) is None
