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
LATE = PROMPT_GRACE + PROMPT_SPREAD + 0.5
"""Most seconds after its due time a job of the dead leader's queue may start: the follower's
grace, and half a second for its look, the run and the result."""


@pytest.fixture
async def producer(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(server.url, namespace=namespace) as app:
        yield app


@pytest.fixture
def work(producer: aqueue.App) -> aqueue.Task[[int, float], int]:
    """The fault app's task, enqueued by name with options, as a producer with its stub does."""

    @producer.task(name="tests.faults.fault_app.work")
    async def work(n: int, seconds: float) -> int:
        raise NotImplementedError  # runs on the fault app's workers

    return work


async def _led(redis: Redis, keys: Keys) -> bool:
    return bool(await redis.exists(keys.leader))


async def _serving(worker: WorkerProcess) -> bool:
    return "serving" in worker.output  # logged once it hears its queues' notices


async def _leader_and_follower(spawn: Spawn, redis: Redis, keys: Keys) -> WorkerProcess:
    """Two workers of the queue, both serving; the one that leads it."""
    leader = spawn(FAULT_LEASE=str(LEASE))
    await eventually(lambda: _led(redis, keys), timeout=15)
    follower = spawn(FAULT_LEASE=str(LEASE))
    await eventually(lambda: _serving(follower), timeout=15)
    return leader


def _kill(worker: WorkerProcess) -> None:
    worker.signal(signal.SIGKILL)
    assert worker.wait(5) is not None


async def _lateness(job: aqueue.Job[int], delay: float) -> float:
    """Seconds between the job's due time and its start, once it ran."""
    await job.result(timeout=LEASE)
    info = await job.info()
    assert info.started_at is not None
    assert info.enqueued_at is not None
    return (info.started_at - info.enqueued_at).total_seconds() - delay


async def test_a_sigkilled_leaders_delayed_job_starts_on_another_worker_long_before_the_lease(
    spawn: Spawn,
    work: aqueue.Task[[int, float], int],
    redis: Redis,
    namespace: str,
    report: Callable[..., None],
) -> None:
    keys = Keys(namespace, "default")
    leader = await _leader_and_follower(spawn, redis, keys)
    dead_leader = await redis.get(keys.leader)
    job = await work.options(delay=1.0).enqueue(1, 0.0)
    _kill(leader)
    late = await _lateness(job, 1.0)
    # Moved by the follower while the dead leader still held the queue, a grace after it was
    # due: not by a new leader, a lease after the old one's last renewal.
    assert await redis.get(keys.leader) == dead_leader
    assert late <= LATE
    report(lease_s=LEASE, started_late_s=round(late, 2))


async def test_a_sigkilled_leaders_delayed_jobs_keep_starting_about_on_time_one_after_another(
    spawn: Spawn,
    work: aqueue.Task[[int, float], int],
    redis: Redis,
    namespace: str,
    report: Callable[..., None],
) -> None:
    """The follower's promotion tells it the next due time, so it moves that one too."""
    keys = Keys(namespace, "default")
    leader = await _leader_and_follower(spawn, redis, keys)
    delays = [1.0, 2.5, 4.0]
    jobs = [await work.options(delay=delay).enqueue(1, 0.0) for delay in delays]
    _kill(leader)
    lateness = [await _lateness(job, delay) for job, delay in zip(jobs, delays, strict=True)]
    assert max(lateness) <= LATE
    report(lease_s=LEASE, started_late_s=[round(late, 2) for late in lateness])
