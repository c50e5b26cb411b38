"""Backpressure from the acks: a worker whose outcomes the server takes slowly reads no new
jobs until they are written, so it never runs far ahead of its acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import entries, eventually, read_as
from tests.internals import (
    FINISH,
    GROUP,
    Delivery,
    Keys,
    Levels,
    Reclaimer,
    Slots,
    _acker,
    connections_of,
)
from tests.proxies import DelayingProxy

pytestmark = pytest.mark.not_on(
    "cluster", "sentinel", reason="the proxy stands in front of one server"
)

CONCURRENCY = 20
BOUND = _acker.most_unflushed(CONCURRENCY)
JOBS = 300
ACK_DELAY = 0.1
"""Seconds each flush of outcomes waits on its way to the server: much longer than running a
read's jobs takes, so without backpressure a flush's outcomes pile up by the hundreds."""


@pytest.fixture
async def slow_acks(server: RedisServer) -> AsyncIterator[DelayingProxy]:
    """A server that takes ``ACK_DELAY`` to answer each call of the finish script."""
    proxy = DelayingProxy(server.port, marker=FINISH.sha.encode(), delay=ACK_DELAY)
    await proxy.start()
    yield proxy
    await proxy.close()


async def _pending(redis: Redis, keys: Keys) -> int:
    """Entries delivered and not acked yet: every job that ran and was not acked is one."""
    summary = await redis.xpending(keys.stream, GROUP)
    return int(summary["pending"])


async def _most_pending(redis: Redis, keys: Keys, done: asyncio.Event) -> int:
    most = 0
    while not done.is_set():
        most = max(most, await _pending(redis, keys))
        await asyncio.sleep(0.005)
    return most


class _Ran:
    """The jobs whose body ran, as the task itself counts them."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.all = asyncio.Event()

    def app(self, url: str, namespace: str) -> aqueue.App:
        """An app whose ``note(n)`` counts itself, keeping no result."""
        app = aqueue.App(url, namespace=namespace, result_ttl=0)

        @app.task(name="note")
        async def note(n: int) -> None:
            self.numbers.append(n)
            if len(self.numbers) == JOBS:
                self.all.set()

        return app


@pytest.mark.one_loop
async def test_a_worker_runs_no_more_jobs_ahead_of_slow_acks_than_its_bound(
    slow_acks: DelayingProxy, namespace: str, redis: Redis
) -> None:
    ran = _Ran()
    keys = Keys(namespace, "default")
    async with ran.app(slow_acks.url, namespace) as app:
        await app.tasks["note"].enqueue_many([(n,) for n in range(JOBS)])
        done = asyncio.Event()
        async with aqueue.Worker(app, concurrency=CONCURRENCY):
            sampling = asyncio.create_task(_most_pending(redis, keys, done))
            await asyncio.wait_for(ran.all.wait(), 30)
            await eventually(lambda: _none_pending(redis, keys), timeout=10)
            done.set()
            most = await sampling
    assert slow_acks.delayed > 0
    # Run but not acked: at most the bound's outcomes, and the jobs holding the slots.
    assert most <= BOUND + CONCURRENCY
    assert sorted(ran.numbers) == list(range(JOBS))


@pytest.mark.one_loop
async def test_a_worker_stopped_with_a_backlog_writes_it_and_leaves_the_rest_queued(
    slow_acks: DelayingProxy, server: RedisServer, namespace: str, redis: Redis
) -> None:
    ran = _Ran()
    keys = Keys(namespace, "default")
    async with ran.app(slow_acks.url, namespace) as app:
        await app.tasks["note"].enqueue_many([(n,) for n in range(JOBS)])
        async with asyncio.timeout(10), aqueue.Worker(app, concurrency=CONCURRENCY):
            await eventually(lambda: _pending_beyond(redis, keys, BOUND))
        # The backlog was written before the worker left: none of it runs again.
        assert await _pending(redis, keys) == 0
    assert len(ran.numbers) < JOBS
    # The rest waited in the queue for the next worker (no proxy: a healthy server).
    async with ran.app(server.url, namespace) as direct, aqueue.Worker(direct):
        await asyncio.wait_for(ran.all.wait(), 30)
    assert sorted(ran.numbers) == list(range(JOBS))


async def _none_pending(redis: Redis, keys: Keys) -> bool:
    return await _pending(redis, keys) == 0


async def _pending_beyond(redis: Redis, keys: Keys, count: int) -> bool:
    return await _pending(redis, keys) >= count


async def test_a_backlogged_leader_claims_lapsed_entries_only_once_its_outcomes_are_written(
    app: aqueue.App, redis: Redis
) -> None:
    """Claimed jobs would pile their outcomes onto those waiting; it asks workers with room."""

    @app.task
    async def work() -> None: ...

    keys = Keys(app.namespace, "default")
    await work.enqueue()
    await read_as(redis, keys, "ghost")  # a worker that died with the job
    slots = Slots(10)
    slots.backlog(True)
    claimed: list[Delivery] = []

    async def begin(deliveries: list[Delivery]) -> None:
        claimed.extend(deliveries)

    async def levels_changed() -> None: ...

    reclaimer = Reclaimer(
        redis=app.redis,
        calls=connections_of(app).direct,
        levels=Levels([keys]),
        consumer="heir",
        lease=0.001,
        slots=slots,
        begin=begin,
        cancel=lambda job_ids: None,
        levels_changed=levels_changed,
    )
    async with redis.pubsub() as notices:
        await notices.ssubscribe(keys.stream)
        running = asyncio.create_task(reclaimer.run())
        try:
            async with asyncio.timeout(5):
                # The first scan's outcome: a call for help on the queue's channel, or a claim.
                while not claimed:
                    asked = await notices.get_sharded_message(True, timeout=0.05)
                    if asked is not None:
                        break
            assert claimed == []
            slots.backlog(False)
            await eventually(lambda: _has_claimed(claimed))
        finally:
            reclaimer.stop()
            await asyncio.wait_for(running, 5)
    assert [delivery.entry_id for delivery in claimed] == [
        entry_id for entry_id, _ in await entries(redis, keys.stream)
    ]


async def _has_claimed(claimed: list[Delivery]) -> bool:
    return bool(claimed)


async def test_a_stopped_workers_wait_for_room_ends_though_a_backlog_comes_after_the_stop() -> None:
    """A server that stopped taking outcomes keeps the backlog for good: the stop must hold."""
    slots = Slots(1)
    slots.wake()  # the worker stops
    slots.take(1)  # a claim in flight starts its job
    slots.backlog(True)
    assert await asyncio.wait_for(slots.wait(), 1) == 0
