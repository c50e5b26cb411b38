"""Faults of the server and the network: a Redis restart under load, dropped connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

import aqueue
from aqueue.testing import RedisServer
from tests.faults.conftest import WorkerProcess
from tests.proxies import DroppingProxy
from tests.proxies import proxy as proxy  # the fixture, shared with tests/test_recovery.py

pytestmark = [
    pytest.mark.slow,
    pytest.mark.not_on(
        "cluster",
        "sentinel",
        reason="these restart one server and cut its connections; a Cluster's and a Sentinel "
        "set's failovers are tested in test_cluster.py and faults/test_sentinel.py",
    ),
]


@pytest.fixture
def durable_server(server: RedisServer) -> Iterator[RedisServer]:
    """A server of each kind with an append-only file fsynced every second, restarted by the
    test (Valkey too, so that a machine without redis-server runs it)."""
    config = {"appendonly": "yes", "appendfsync": "everysec"}
    with RedisServer(server.binary, config=config) as durable:
        yield durable


async def test_a_redis_restart_under_load_loses_no_acknowledged_job(
    durable_server: RedisServer, namespace: str, report: Callable[..., None]
) -> None:
    worker = WorkerProcess(durable_server, namespace, {}, "-c", "50", "--log-level", "INFO")
    acknowledged: list[aqueue.Job[object]] = []
    numbers: list[int] = []
    refused = 0
    try:
        async with aqueue.App(durable_server.url, namespace=namespace) as app:
            deadline = time.monotonic() + 3.0
            restarted = False
            n = 0
            while time.monotonic() < deadline:
                if not restarted and time.monotonic() > deadline - 2.0:
                    # SIGTERM: Redis writes its AOF before it exits, as on a planned restart.
                    await asyncio.to_thread(durable_server.restart)
                    restarted = True
                try:
                    acknowledged.append(await app.enqueue("tests.faults.fault_app.work", n, 0))
                    numbers.append(n)
                except aqueue.ConnectionFailed:
                    refused += 1  # never acknowledged: the producer knows it was not enqueued
                    await asyncio.sleep(0.05)
                n += 1
            results = await asyncio.gather(*(job.result(timeout=30) for job in acknowledged))
        assert results == [2 * number for number in numbers]
        assert worker.process.poll() is None  # the same worker went on by itself
    except BaseException:
        print(worker.output[-20_000:])  # the worker's side of a failure, in pytest's report
        raise
    finally:
        worker.kill()
        worker.log.close()
    report(enqueued=len(acknowledged), completed=len(results), lost=0, refused_in_restart=refused)


async def test_connections_dropped_mid_flight_lose_no_job(
    proxy: DroppingProxy, namespace: str, report: Callable[..., None]
) -> None:
    app = aqueue.App(proxy.url, namespace=namespace, lease=1)

    @app.task
    async def double(n: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * n

    async with app, aqueue.Worker(app, concurrency=50):
        jobs = await double.enqueue_many([(n,) for n in range(300)])
        for _ in range(6):
            await asyncio.sleep(0.25)
            proxy.drop_all()
        results = await _results_despite_drops(jobs)
    assert results == [2 * n for n in range(300)]
    report(enqueued=300, completed=len(results), lost=0, connection_drops=proxy.drops)


async def _results_despite_drops(jobs: list[aqueue.Job[int]]) -> list[int]:
    # A waiter whose own connection was cut gets ConnectionFailed: the job is fine, wait again.
    results = []
    for job in jobs:
        for _ in range(5):
            try:
                results.append(await job.result(timeout=30))
                break
            except aqueue.ConnectionFailed:
                await asyncio.sleep(0.1)
    return results
