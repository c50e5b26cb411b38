"""Faults injected into real worker processes: SIGKILL, SIGTERM, SIGSTOP, poison messages."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.faults.conftest import WorkerProcess
from tests.helpers import eventually
from tests.internals import GROUP, Keys

pytestmark = pytest.mark.slow

Spawn = Callable[..., WorkerProcess]


@pytest.fixture
async def producer(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    """Enqueues the fault app's tasks by name, as a service without their code would."""
    async with aqueue.App(server.url, namespace=namespace) as app:
        yield app


async def runs(redis: Redis, namespace: str) -> dict[int, int]:
    raw = await redis.hgetall(f"{namespace}:runs")
    return {int(key): int(value) for key, value in raw.items()}


async def test_a_sigkilled_workers_jobs_are_finished_by_another_worker(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    lease = 2.0
    first = spawn("-c", "100", FAULT_LEASE=str(lease))
    jobs = [await producer.enqueue("tests.faults.fault_app.work", n, 3.0) for n in range(50)]
    await eventually(lambda: _all_ran(redis, namespace, 50, times=1), timeout=15)
    first.signal(signal.SIGKILL)
    killed = time.monotonic()
    first.wait(5)
    spawn("-c", "100", FAULT_LEASE=str(lease))
    await eventually(lambda: _all_ran(redis, namespace, 50, times=2), timeout=15)
    redelivery = time.monotonic() - killed
    results = await asyncio.gather(*(job.result(timeout=15) for job in jobs))
    assert results == [2 * n for n in range(50)]
    assert set((await runs(redis, namespace)).values()) == {2}  # killed mid-run, run again once
    # The lease lapses at most `lease` after the last renewal; claims are scanned every second;
    # the second worker needs about a second to start.
    assert redelivery <= lease + 1.0 + 1.5
    report(
        enqueued=50, completed=len(results), lost=0, duplicated=0, redelivery_s=round(redelivery, 2)
    )


async def test_sigterm_lets_running_jobs_finish_and_exits_0(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    worker = spawn("-c", "50", "--grace-period", "10")
    jobs = [await producer.enqueue("tests.faults.fault_app.work", n, 1.0) for n in range(20)]
    await eventually(lambda: _all_ran(redis, namespace, 20, times=1), timeout=15)
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output
    statuses = [await job.status() for job in jobs]
    assert statuses == [aqueue.JobStatus.SUCCEEDED] * 20
    assert set((await runs(redis, namespace)).values()) == {1}
    report(enqueued=20, completed=20, lost=0, duplicated=0)


async def test_sigterm_past_the_grace_period_hands_jobs_to_the_next_worker(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    worker = spawn("-c", "50", "--grace-period", "0.5")
    jobs = [await producer.enqueue("tests.faults.fault_app.work", n, 4.0) for n in range(20)]
    await eventually(lambda: _all_ran(redis, namespace, 20, times=1), timeout=15)
    stopped = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output
    assert time.monotonic() - stopped < 3
    assert [await job.status() for job in jobs] == [aqueue.JobStatus.QUEUED] * 20
    spawn("-c", "50")
    results = await asyncio.gather(*(job.result(timeout=20) for job in jobs))
    assert results == [2 * n for n in range(20)]
    report(
        enqueued=20,
        completed=20,
        lost=0,
        handed_back=20,
        restart_to_done_s=round(time.monotonic() - stopped, 2),
    )


async def test_a_message_that_kills_its_worker_every_time_ends_in_the_dead_letters(
    spawn: Spawn, producer: aqueue.App, report: Callable[..., None]
) -> None:
    env = {"FAULT_LEASE": "1", "FAULT_MAX_DELIVERIES": "3"}
    job = await producer.enqueue("tests.faults.fault_app.suicide")
    deaths = 0
    survivor = None
    for _ in range(6):
        worker = spawn(**env)
        if worker.wait(8) is None:
            survivor = worker  # it dead-lettered the poison instead of running it
            break
        deaths += 1
    assert deaths == 3
    assert survivor is not None
    with pytest.raises(aqueue.TaskFailed) as failure:
        await job.result(timeout=10)
    assert failure.value.type == "aqueue.Poison"
    [letter] = await producer.queue().dead_letters()
    assert letter.job_id == job.id
    assert letter.reason.startswith("delivered more than 3 times")
    survivor.signal(signal.SIGTERM)
    assert survivor.wait(10) == 0
    report(deliveries=deaths, dead_lettered=1, workers_killed=deaths)


async def test_a_paused_workers_late_ack_is_refused_and_the_new_owners_outcome_stands(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    env = {"FAULT_LEASE": "1"}
    paused = spawn(**env)
    # Each run lasts until the test releases its attempt: the new owner's still runs when the
    # paused worker's late ack arrives, however slow the machine.
    job = await producer.enqueue("tests.faults.fault_app.held", 7)
    await eventually(lambda: _all_ran(redis, namespace, 1, times=1), timeout=15)
    paused.signal(signal.SIGSTOP)  # its lease lapses: it cannot renew while stopped
    taker = spawn(**env)
    await eventually(lambda: _all_ran(redis, namespace, 1, times=2), timeout=15)
    new_owner = (await job.info()).worker
    assert new_owner is not None
    # It wakes up with its run over while the new owner still runs the job, and acks late:
    # the fence, not a missing entry, must refuse it.
    await redis.set(f"{namespace}:release:1", 1)
    paused.signal(signal.SIGCONT)
    await eventually(lambda: _says(paused, "outcome(s) refused"), timeout=10)
    info = await job.info()
    assert (info.status, info.worker) == (aqueue.JobStatus.RUNNING, new_owner)
    stream = Keys(namespace, "default").stream
    [pending] = await redis.xpending_range(stream, GROUP, "-", "+", 10)
    assert pending["consumer"] == new_owner.encode()
    await redis.set(f"{namespace}:release:2", 1)
    assert await job.result(timeout=20) == 14
    info = await job.info()
    assert (info.status, info.worker) == (aqueue.JobStatus.SUCCEEDED, new_owner)
    assert await redis.xlen(stream) == 0
    for worker in (paused, taker):
        worker.signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    report(runs=(await runs(redis, namespace))[7], refused_late_acks=1, lost=0)


async def _all_ran(redis: Redis, namespace: str, count: int, *, times: int) -> bool:
    counts = await runs(redis, namespace)
    return len(counts) == count and all(value >= times for value in counts.values())


async def _says(worker: WorkerProcess, text: str) -> bool:
    return text in worker.output


async def test_a_job_running_three_leases_on_a_live_worker_runs_exactly_once(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    env = {"FAULT_LEASE": "1"}
    first, second = spawn(**env), spawn(**env)
    job = await producer.enqueue("tests.faults.fault_app.work", 3, 3.0)  # three leases long
    assert await job.result(timeout=15) == 6
    assert (await runs(redis, namespace)) == {3: 1}
    assert "claimed" not in first.output + second.output
    report(lease_s=1, run_s=3, runs=1)


async def test_the_new_owner_killed_before_its_ack_still_gets_the_job_redelivered(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    env = {"FAULT_LEASE": "1"}
    paused = spawn(**env)
    job = await producer.enqueue("tests.faults.fault_app.work", 5, 2.0)
    await eventually(lambda: _all_ran(redis, namespace, 1, times=1), timeout=15)
    paused.signal(signal.SIGSTOP)
    taker = spawn(**env)
    await eventually(lambda: _all_ran(redis, namespace, 1, times=2), timeout=15)
    taker.signal(signal.SIGKILL)  # the new owner dies mid-run, before it acks
    paused.signal(signal.SIGCONT)  # the first worker's late ack is refused...
    assert await job.result(timeout=20) == 10  # ...and the job is redelivered and finished
    await eventually(lambda: _says(paused, "outcome(s) refused"), timeout=10)
    assert (await runs(redis, namespace))[5] == 3
    paused.signal(signal.SIGTERM)
    assert paused.wait(10) == 0
    report(runs=3, refused_late_acks=1, lost=0)
