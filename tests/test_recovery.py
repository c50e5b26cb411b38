"""Connection faults in the fast run (the fault tests repeat them with worker processes and
more load): outcomes that meet a lost server are kept and written when it is back."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

import aqueue
from aqueue.testing import RedisServer
from tests.internals import pause_after
from tests.proxies import DroppingProxy
from tests.proxies import proxy as proxy  # the fixture, shared with the fault tests


def test_reconnect_pauses_grow_to_five_seconds_while_nothing_answers() -> None:
    pauses = [pause_after(n, RedisConnectionError("Connection refused")) for n in range(10)]
    assert pauses == sorted(pauses)
    assert (pauses[0], pauses[-1]) == (0.05, 5.0)


@pytest.mark.parametrize(
    "refusal",
    [
        ReadOnlyError("You can't write against a read only replica."),
        ResponseError("NOREPLICAS Not enough good replicas to write."),
    ],
    ids=["READONLY", "NOREPLICAS"],
)
def test_a_server_refusing_writes_for_now_is_tried_again_at_least_every_half_second(
    refusal: Exception,
) -> None:
    """A failover's refusals end when the old master is demoted: no pause may outgrow it."""
    pauses = [pause_after(n, refusal) for n in range(10)]
    assert (pauses[0], max(pauses)) == (0.05, 0.5)


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


@pytest.mark.one_loop  # the pauses are the worker's, whatever the loop
async def test_a_due_job_refused_for_want_of_memory_moves_soon_after_memory_is_back(
    namespace: str,
) -> None:
    """The look's move refused (OOM) is a refusal for now: looked again within half a second,
    not after pauses grown to 5 s."""
    with RedisServer.valkey() as server:
        app = aqueue.App(server.url, namespace=namespace, lease=3)

        @app.task
        async def noop() -> None: ...

        async with app, aqueue.Worker(app):
            job = await noop.options(delay=0.3).enqueue()
            await app.redis.config_set("maxmemory-policy", "noeviction")
            await app.redis.config_set("maxmemory", 1)
            await asyncio.sleep(4.5)  # refused all along: pauses grown to 5 s by now
            await app.redis.config_set("maxmemory", 0)
            back = time.monotonic()
            await job.result(timeout=10)
            assert time.monotonic() - back < 2.0
