"""Finished jobs' entries that wait in their stream for the trim that drops them (finish.lua
leaves those acked less than a second after the oldest running one) count as no work: not as
queued in a queue's statistics, not against its length limit, not as queued for a purge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import entries, read_as
from tests.internals import GROUP, Keys

QUICK = 2
"""Jobs that end above the running one in each test."""


async def _finished_above_a_running_job(
    app: aqueue.App, redis: Redis
) -> Callable[[], Awaitable[aqueue.Job[None]]]:
    """A job delivered to consumer "busy" (running, as far as the queue can tell), and
    :data:`QUICK` jobs enqueued after it that a worker ran, whose entries wait above its entry.
    Returns what enqueues one more job (no worker runs it)."""

    @app.task
    async def noop() -> None:
        pass

    keys = Keys(app.namespace, "default")
    await noop.enqueue()
    await read_as(redis, keys, "busy")
    async with aqueue.Worker(app, concurrency=10):
        for job in [await noop.enqueue() for _ in range(QUICK)]:
            await job.result(timeout=5)
    assert await redis.xlen(keys.stream) == 1 + QUICK  # left for the trim, not deleted
    return noop.enqueue


async def test_finished_entries_left_in_a_stream_are_not_counted_as_queued(
    app: aqueue.App, redis: Redis
) -> None:
    enqueue = await _finished_above_a_running_job(app, redis)
    for _ in range(2):
        await enqueue()
    stats = await app.queue().stats()
    assert (stats.queued, stats.running) == (2, 1)


async def test_queued_jobs_are_counted_exactly_when_the_server_cannot_tell_the_lag(
    app: aqueue.App, redis: Redis
) -> None:
    """An entry deleted ahead of the group (by hand here) makes the server's lag unknown: the
    entries up to the group's position are counted instead."""
    enqueue = await _finished_above_a_running_job(app, redis)
    for _ in range(3):
        await enqueue()
    keys = Keys(app.namespace, "default")
    await redis.xdel(keys.stream, (await entries(redis, keys.stream))[-1][0])
    [group] = await redis.xinfo_groups(keys.stream)
    assert group["lag"] is None
    stats = await app.queue().stats()
    assert (stats.queued, stats.running) == (2, 1)


async def test_a_full_queue_still_takes_jobs_while_finished_entries_wait_for_their_trim(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    """The stream's length says full (one running job and the finished ones above it); the
    unfinished jobs counted exactly leave room up to the limit."""
    limit = 1 + QUICK
    async with aqueue.App(server.url, namespace=namespace, lease=3, max_queue_length=limit) as app:
        enqueue = await _finished_above_a_running_job(app, redis)
        for _ in range(limit - 1):
            await enqueue()
        with pytest.raises(aqueue.QueueFull):
            await enqueue()
        stats = await app.queue().stats()
        assert (stats.queued, stats.running) == (limit - 1, 1)


async def test_a_purge_drops_only_queued_jobs_and_they_are_counted_right_after(
    app: aqueue.App, redis: Redis
) -> None:
    """Reads past the purged entries keep the queued count right (Redis before 7.4 counted
    entries deleted ahead of the group as queued ever after)."""
    enqueue = await _finished_above_a_running_job(app, redis)
    for _ in range(2):
        await enqueue()
    assert await app.queue().purge_queued() == 2
    keys = Keys(app.namespace, "default")
    for _ in range(2):
        await enqueue()
    await redis.xreadgroup(GROUP, "busy", {keys.stream: ">"}, count=1)
    stats = await app.queue().stats()
    assert (stats.queued, stats.running) == (1, 2)
