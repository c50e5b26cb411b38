"""The bounds and one-time steps that keep a job from running or ending twice: the poison
bound, the ownership checks of every script that changes an entry, a chord's one release,
and the dead-letter stream's trimming."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import entries, eventually, read_as
from tests.internals import GROUP, Delivery, Keys, _acker, connections_of, job_ended, members


async def test_a_task_with_more_retries_than_max_deliveries_gets_every_retry(
    server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace, max_deliveries=2)

    @app.task(retries=3, backoff=aqueue.backoff.fixed(0))
    async def fourth_time_lucky() -> int:
        attempt = aqueue.current_job().attempt
        if attempt < 4:
            raise ConnectionError("partner down")
        return attempt

    async with app, aqueue.Worker(app):
        job = await fourth_time_lucky.enqueue()
        assert await job.result(timeout=10) == 4
        assert not await app.queue("default").dead_letters()


async def test_a_fire_and_forget_job_delivered_past_its_limit_is_dead_lettered(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=0.5, max_deliveries=2)
    ran = False

    @app.task(result_ttl=0)
    async def killer() -> None:
        nonlocal ran
        ran = True

    keys = Keys(namespace, "default")
    async with app:
        await killer.enqueue()
        # Two deliveries that died: read, then claimed by another consumer that died too.
        [entry_id] = await read_as(redis, keys, "ghost")
        await redis.xclaim(keys.stream, GROUP, "ghost-2", 0, [entry_id])
        async with aqueue.Worker(app):
            await eventually(lambda: _length_is(redis, keys.dead, 1))
    assert not ran
    [(_, dead)] = await entries(redis, keys.dead)
    assert dead[b"reason"].startswith(b"delivered more than 2 times")
    assert await redis.xlen(keys.stream) == 0


async def test_a_stopping_worker_whose_entry_was_claimed_hands_nothing_back(
    app: aqueue.App, redis: Redis
) -> None:
    release = asyncio.Event()

    @app.task
    async def slow() -> None:
        await release.wait()

    keys = Keys(app.namespace, "default")
    stale = aqueue.Worker(app, name="stale", grace_period=0)
    async with stale:
        job = await slow.enqueue()
        await eventually(lambda: _is_running(job))
        [(entry_id, _)] = await entries(redis, keys.stream)
        # Its lease lapsed and another consumer claimed the entry, as XAUTOCLAIM does.
        await redis.xclaim(keys.stream, GROUP, "new-owner", 0, [entry_id])
    # Stopped past its grace period: the hand-back of the claimed entry was refused.
    assert stale.refused_acks == 1
    [(still, _)] = await entries(redis, keys.stream)
    assert still == entry_id  # no copy at the tail, the new owner's delivery untouched
    [pending] = await redis.xpending_range(keys.stream, GROUP, "-", "+", 10)
    assert pending["consumer"] == b"new-owner"


async def test_an_entry_claimed_by_another_consumer_before_its_start_is_not_run(
    app: aqueue.App, redis: Redis
) -> None:
    ran = False

    @app.task
    async def once() -> None:
        nonlocal ran
        ran = True

    keys = Keys(app.namespace, "default")
    # The worker serves another queue, so only the start below can begin this entry.
    async with aqueue.Worker(app, queues=["elsewhere"], name="late") as worker:
        job = await once.enqueue()
        [entry_id] = await read_as(redis, keys, "late")  # read by the worker...
        await redis.xclaim(keys.stream, GROUP, "new-owner", 0, [entry_id])  # ...taken over
        [(_, fields)] = await entries(redis, keys.stream)
        assert worker._fetcher is not None
        await worker._fetcher.begin([Delivery(keys, entry_id, fields, keys.stream)], claimed=True)
        await asyncio.sleep(0.2)
        assert await job.status() is aqueue.JobStatus.QUEUED
    assert not ran
    [pending] = await redis.xpending_range(keys.stream, GROUP, "-", "+", 10)
    assert (pending["consumer"], pending["times_delivered"]) == (b"new-owner", 2)


async def test_a_header_reported_ended_twice_releases_the_chords_callback_once(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(queue="headers")
    async def double(x: int) -> int:
        return 2 * x

    @app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    callbacks = Keys(app.namespace, "default")
    # Only the headers run: the callback's entry, once released, waits in its queue.
    async with aqueue.Worker(app, queues=["headers"]):
        chord = await aqueue.chord([double.s(1), double.s(2)], total.s()).enqueue()
        await eventually(lambda: _length_is(redis, callbacks.stream, 1))
    header = (await members(app, chord.id))[1]
    # As the redelivery after a crash between the outcome and the final ack does.
    await job_ended(app, connections_of(app), header)
    assert await redis.xlen(callbacks.stream) == 1
    async with aqueue.Worker(app):
        assert await chord.result(timeout=10) == 6


async def test_the_dead_letter_stream_is_trimmed_to_about_its_limit(
    app: aqueue.App, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 50
    monkeypatch.setattr(_acker, "DEAD_LETTER_LIMIT", limit)
    keys = Keys(app.namespace, "default")
    async with app.redis.pipeline(transaction=False) as pipe:
        for n in range(300):
            pipe.xadd(keys.stream, {"garbage": str(n)})  # no job id: each is dead-lettered
        await pipe.execute()
    async with aqueue.Worker(app):
        await eventually(lambda: _length_is(redis, keys.stream, 0), timeout=20)
    # Trimmed approximately: whole nodes of the stream (100 entries each by default) go.
    assert limit <= await redis.xlen(keys.dead) <= limit + 100


async def _length_is(redis: Redis, stream: bytes, length: int) -> bool:
    return await redis.xlen(stream) == length


async def _is_running(job: aqueue.Job[Any]) -> bool:
    return await job.status() is aqueue.JobStatus.RUNNING
