"""A queue's leader SIGKILLed: its delayed jobs still start about on time, on another worker."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.faults.conftest import WorkerProcess
from tests.helpers import eventually
from tests.internals import PROMPT_GRACE, PROMPT_SPREAD, Keys

pytestmark = pytest.mark.slow

Spawn = Callable[..., WorkerProcess]

LEASE = 10.0
"""Long enough that a job started within a second or two of its due time was not waiting for
the dead leader's leadership to lapse."""
DELAY = 1.0


@pytest.fixture
async def producer(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(server.url, namespace=namespace) as app:
        yield app


async def _led(redis: Redis, keys: Keys) -> bool:
    return bool(await redis.exists(keys.leader))


async def _serving(worker: WorkerProcess) -> bool:
    return "serving" in worker.output  # logged once it hears its queues' notices


async def test_a_sigkilled_leaders_delayed_job_starts_on_another_worker_long_before_the_lease(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    @producer.task(name="tests.faults.fault_app.work")
    async def work(n: int, seconds: float) -> int:
        raise NotImplementedError  # runs on the fault app's workers

    keys = Keys(namespace, "default")
    leader = spawn(FAULT_LEASE=str(LEASE))
    await eventually(lambda: _led(redis, keys), timeout=15)
    dead_leader = await redis.get(keys.leader)
    follower = spawn(FAULT_LEASE=str(LEASE))
    await eventually(lambda: _serving(follower), timeout=15)

    job = await work.options(delay=DELAY).enqueue(1, 0.0)
    leader.signal(signal.SIGKILL)
    assert leader.wait(5) is not None
    assert await job.result(timeout=LEASE) == 2
    info = await job.info()
    assert info.started_at is not None
    assert info.enqueued_at is not None
    late = (info.started_at - info.enqueued_at).total_seconds() - DELAY
    # Moved by the follower while the dead leader still held the queue, a grace after it was
    # due: not by a new leader, a lease after the old one's last renewal.
    assert await redis.get(keys.leader) == dead_leader
    assert late <= PROMPT_GRACE + PROMPT_SPREAD + 0.5, follower.output
    report(lease_s=LEASE, started_late_s=round(late, 2))
