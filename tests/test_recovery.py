"""Connection faults in the fast run (the fault tests repeat them with worker processes and
more load): outcomes that meet a lost server are kept and written when it is back."""

from __future__ import annotations

import asyncio

import aqueue
from aqueue.testing import RedisServer
from tests.faults.test_network import DroppingProxy
from tests.faults.test_network import proxy as proxy  # the fixture, shared with the fault tests


async def test_jobs_finishing_while_connections_drop_all_record_their_results(
    proxy: DroppingProxy, namespace: str
) -> None:
    app = aqueue.App(proxy.url, namespace=namespace)

    @app.task
    async def double(n: int) -> int:
        await asyncio.sleep(0.1)
        return 2 * n

    async with app, aqueue.Worker(app, concurrency=20):
        jobs = await double.enqueue_many([(n,) for n in range(60)])
        for _ in range(3):
            await asyncio.sleep(0.1)  # outcomes are on the wire when the connections go
            proxy.drop_all()
        results = [await _result_despite_drops(job) for job in jobs]
    assert results == [2 * n for n in range(60)]


async def test_jobs_finishing_while_the_server_restarts_all_record_their_results(
    namespace: str,
) -> None:
    durable = {"appendonly": "yes", "appendfsync": "always"}
    with RedisServer.valkey(config=durable) as server:
        app = aqueue.App(server.url, namespace=namespace)

        @app.task
        async def double(n: int) -> int:
            await asyncio.sleep(0.3)
            return 2 * n

        async with app, aqueue.Worker(app, concurrency=20):
            jobs = await double.enqueue_many([(n,) for n in range(20)])
            await asyncio.sleep(0.1)  # they run...
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.5)  # ...and end while the server is down
            await asyncio.to_thread(server.start)
            results = [await _result_despite_drops(job) for job in jobs]
    assert results == [2 * n for n in range(20)]


async def _result_despite_drops(job: aqueue.Job[int]) -> int:
    # A waiter whose own connection was cut gets ConnectionFailed: the job is fine, wait again.
    for _ in range(5):
        try:
            return await job.result(timeout=15)
        except aqueue.ConnectionFailed:
            await asyncio.sleep(0.1)
    raise AssertionError(f"no result for job {job.id}")
