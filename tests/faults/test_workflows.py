"""Workflows under faults: a chord whose header worker is SIGKILLed mid-header."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.faults.conftest import WorkerProcess
from tests.helpers import eventually
from tests.internals import members

pytestmark = pytest.mark.slow

Spawn = Callable[..., WorkerProcess]


@pytest.fixture
async def producer(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    """A producer with stand-ins for the fault app's tasks (same names and signatures)."""
    async with aqueue.App(server.url, namespace=namespace) as app:
        yield app


async def test_a_chords_callback_runs_once_when_a_header_worker_is_killed(
    spawn: Spawn, producer: aqueue.App, redis: Redis, namespace: str, report: Callable[..., None]
) -> None:
    @producer.task(name="tests.faults.fault_app.header")
    async def header(n: int) -> int:
        raise NotImplementedError  # a stand-in: the fault app's worker runs its own

    @producer.task(name="tests.faults.fault_app.collect")
    async def collect(values: list[int]) -> int:
        raise NotImplementedError

    first = spawn("-c", "100", FAULT_LEASE="2")
    # Half the header ends before the kill (its callback count is in), half is killed mid-run.
    job = await aqueue.chord([header.s(n) for n in range(10)], collect.s()).enqueue()
    header_ids = (await members(producer, job.id))[:-1]

    async def half_done_all_running() -> bool:
        ran = await redis.hlen(f"{namespace}:runs")
        statuses = [await producer.job(i).status() for i in header_ids]
        return ran == 10 and statuses.count(aqueue.JobStatus.SUCCEEDED) == 5

    await eventually(half_done_all_running, timeout=15)
    first.signal(signal.SIGKILL)
    first.wait(5)
    spawn("-c", "100", FAULT_LEASE="2")
    assert await job.result(timeout=60) == sum(2 * n for n in range(10))
    assert int(await redis.get(f"{namespace}:callback_runs") or 0) == 1
    report(headers=10, killed_mid_header=5, callback_runs=1)
