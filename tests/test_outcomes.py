"""Outcomes the server refuses: kept and written again while the entry stays the worker's,
and results no server would store fail their job at once."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, read_as
from tests.internals import GROUP, Keys

# What the server refuses, and for how long, is the server's: the loop makes no difference
# (and each refusal's test waits it out, for seconds).
ONE_LOOP = True


@pytest.fixture(params=["valkey", "redis"])
def own_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server of this test's own: its settings (maxmemory, replication) change here."""
    if request.param == "redis" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    launcher = RedisServer.valkey if request.param == "valkey" else RedisServer.redis
    with launcher(config={"proto-max-bulk-len": "1mb"}) as running:
        yield running


@pytest.fixture
async def admin(own_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_server.url)
    yield client
    await client.aclose()


async def _outcome_refused_for_a_while(
    own_server: RedisServer,
    refuse: Callable[[], Awaitable[Any]],
    allow: Callable[[], Awaitable[Any]],
) -> tuple[str, int, aqueue.JobStatus]:
    """Run a job whose outcome comes while the server refuses writes (for less than a lease);
    returns its result, how often it ran, and its status while the server refused."""
    app = aqueue.App(own_server.url, namespace="refused", lease=3)
    runs = 0
    release = asyncio.Event()

    @app.task
    async def slow() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "done"

    async with app, aqueue.Worker(app) as worker:
        job = await slow.enqueue()
        await eventually(lambda: _is_running(job))
        await refuse()
        release.set()
        await asyncio.sleep(1.2)  # the outcome is refused, again and again
        status_meanwhile = await job.status()
        await allow()
        # An outcome dropped on refusal would come only from a second run, after the lease.
        result = await job.result(timeout=10)
        assert worker.refused_acks == 0
    return result, runs, status_meanwhile


async def test_an_outcome_refused_at_maxmemory_is_written_once_memory_frees(
    own_server: RedisServer, admin: Redis
) -> None:
    result, runs, meanwhile = await _outcome_refused_for_a_while(
        own_server,
        lambda: admin.config_set("maxmemory", 1),  # noeviction, the default policy
        lambda: admin.config_set("maxmemory", 0),
    )
    assert (result, runs) == ("done", 1)
    assert meanwhile is aqueue.JobStatus.RUNNING  # the refused outcome was not half-written


@pytest.mark.slow
async def test_a_job_whose_outcome_is_refused_for_several_leases_runs_once(
    own_server: RedisServer, admin: Redis
) -> None:
    """Leases are renewed at maxmemory while the outcome waits: a second worker, idle and
    claiming all along, never takes the job over, however long the server stays full."""
    app = aqueue.App(own_server.url, namespace="full", lease=1)
    runs = 0
    release = asyncio.Event()

    @app.task
    async def slow() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "done"

    async with app, aqueue.Worker(app, name="first"), aqueue.Worker(app, name="second"):
        job = await slow.enqueue()
        await eventually(lambda: _is_running(job))
        await admin.config_set("maxmemory", 1)  # noeviction, the default policy
        release.set()
        await asyncio.sleep(3.5)  # three and a half leases of refused outcomes
        await admin.config_set("maxmemory", 0)
        assert await job.result(timeout=10) == "done"
    assert runs == 1


async def test_an_outcome_refused_by_a_read_only_replica_is_written_once_it_is_master(
    own_server: RedisServer, admin: Redis
) -> None:
    # As in a failover: the server turns replica (of a master that is not there) for a while.
    result, runs, meanwhile = await _outcome_refused_for_a_while(
        own_server,
        lambda: admin.replicaof("127.0.0.1", 1),
        lambda: admin.replicaof("NO", "ONE"),
    )
    assert (result, runs) == ("done", 1)
    assert meanwhile is aqueue.JobStatus.RUNNING


async def test_an_outcome_refused_for_want_of_replicas_is_written_once_they_are_back(
    own_server: RedisServer, admin: Redis
) -> None:
    result, runs, meanwhile = await _outcome_refused_for_a_while(
        own_server,
        lambda: admin.config_set("min-replicas-to-write", 1),  # NOREPLICAS: it has none
        lambda: admin.config_set("min-replicas-to-write", 0),
    )
    assert (result, runs) == ("done", 1)
    assert meanwhile is aqueue.JobStatus.RUNNING


async def test_a_worker_stopping_while_its_server_is_a_read_only_replica_stops_cleanly(
    own_server: RedisServer, admin: Redis
) -> None:
    """Leaving its consumer group is housekeeping: a failover under way does not make the
    stop fail (with nothing pending, the consumer is pruned later by any worker)."""
    app = aqueue.App(own_server.url, namespace="leaving")

    @app.task
    async def quick() -> str:
        return "done"

    async with app:
        worker = aqueue.Worker(app)
        serving = asyncio.create_task(worker.run(handle_signals=False))
        assert await (await quick.enqueue()).result(timeout=5) == "done"
        await admin.replicaof("127.0.0.1", 1)  # a failover: it turns replica
        worker.stop()
        await asyncio.wait_for(serving, 5)  # raised READONLY before


async def test_a_start_refused_at_maxmemory_is_made_once_memory_frees_not_after_the_lease(
    own_server: RedisServer, admin: Redis
) -> None:
    """A job read while the server is full is this worker's: its start (a write) is tried
    again, its lease renewed, instead of leaving it to lapse and be claimed as abandoned."""
    app = aqueue.App(own_server.url, namespace="full-start", lease=5)
    release = asyncio.Event()

    @app.task
    async def first() -> None:
        await release.wait()

    @app.task
    async def second() -> str:
        return "done"

    async with app, aqueue.Worker(app, concurrency=1):
        running = await first.enqueue()
        await eventually(lambda: _is_running(running))
        waiting = await second.enqueue()  # read once the slot frees, at maxmemory
        await admin.config_set("maxmemory", 1)  # noeviction, the default policy
        release.set()
        await asyncio.sleep(1.5)
        await admin.config_set("maxmemory", 0)
        # Left to its lease, it would start only once claimed, 5 s after it was read.
        assert await waiting.result(timeout=3) == "done"
        assert (await waiting.info()).attempts == 1


async def test_reads_refused_during_a_failover_are_retried_without_blaming_the_queues_keys(
    own_server: RedisServer, admin: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = aqueue.App(own_server.url, namespace="failover")

    @app.task
    async def quick() -> str:
        return "done"

    async with app, aqueue.Worker(app):
        await admin.replicaof("127.0.0.1", 1)  # the worker's reads are refused a while
        await asyncio.sleep(1)
        await admin.replicaof("NO", "ONE")
        assert await (await quick.enqueue()).result(timeout=5) == "done"
    assert "cannot read jobs" in caplog.text  # said once, as an outage
    assert "check the queue's keys" not in caplog.text


async def test_a_worker_claiming_a_job_whose_start_the_full_server_refuses_still_stops(
    own_server: RedisServer, admin: Redis
) -> None:
    """Its claim waits on the start, which waits for memory: a stop ends that wait."""
    app = aqueue.App(own_server.url, namespace="full-claim", lease=2)

    @app.task
    async def quick() -> None:
        pass

    async with app:
        await quick.enqueue()
        await read_as(admin, Keys("full-claim", "default"), "a-dead-worker")
        worker = aqueue.Worker(app)
        serving = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: _has_consumers(admin, 2))
        await admin.config_set("maxmemory", 1)  # noeviction, the default policy
        await eventually(lambda: _claimed(admin), timeout=8)
        worker.stop()
        worker.stop()
        try:
            await asyncio.wait_for(serving, 5)
        finally:
            await admin.config_set("maxmemory", 0)


async def test_an_outcome_write_that_fails_leaves_the_entry_pending_not_acked(
    server: RedisServer, namespace: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The finish script writes the outcome before the ack: a refused write acks nothing."""
    app = aqueue.App(server.url, namespace=namespace, lease=3)
    keys = Keys(namespace, "default")

    @app.task
    async def clobbered() -> None:
        # Another program writes a string where the job's record is.
        await redis.set(keys.job(aqueue.current_job().id), "not a hash")

    async with app, aqueue.Worker(app):
        await clobbered.enqueue()
        await eventually(lambda: _says(caplog, "cannot record the outcome"))
        assert await redis.xlen(keys.stream) == 1
        assert (await redis.xpending(keys.stream, GROUP))["pending"] == 1


async def test_an_outcome_refused_for_good_is_let_go_to_be_delivered_again(
    server: RedisServer, namespace: str, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Writing it again would fail forever: the worker stops renewing the entry's lease."""
    app = aqueue.App(server.url, namespace=namespace, lease=1)
    keys = Keys(namespace, "default")

    @app.task
    async def clobbered() -> None:
        await redis.set(keys.job(aqueue.current_job().id), "not a hash")

    async with app, aqueue.Worker(app):
        await clobbered.enqueue()
        await eventually(lambda: _says(caplog, "cannot record the outcome"))
        await eventually(lambda: _delivered_again(redis, keys.stream), timeout=5)


async def test_a_result_over_max_result_size_fails_the_job_saying_the_limit(
    server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace, max_result_size=1000)
    runs = 0

    @app.task
    async def big() -> str:
        nonlocal runs
        runs += 1
        return "x" * 2000

    async with app, aqueue.Worker(app):
        job = await big.enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=10)
        assert not await app.queue("default").dead_letters()
    assert failure.value.type == "aqueue.ResultTooLarge"
    assert "2002 bytes, over the limit of 1000" in failure.value.message
    assert "max_result_size" in failure.value.message
    assert runs == 1


async def test_a_result_over_the_servers_bulk_limit_fails_the_job_instead_of_running_again(
    own_server: RedisServer,
) -> None:
    # The server takes at most 1 MiB in one value, though the app would allow 4 MiB.
    app = aqueue.App(own_server.url, namespace="bulk", max_result_size=4 << 20)

    @app.task
    async def big() -> str:
        return "x" * (2 << 20)

    async with app, aqueue.Worker(app):
        job = await big.enqueue()
        with pytest.raises(aqueue.TaskFailed) as failure:
            await job.result(timeout=10)
    assert failure.value.type == "aqueue.ResultTooLarge"
    assert f"over the limit of {1 << 20}" in failure.value.message


async def _is_running(job: aqueue.Job[Any]) -> bool:
    return await job.status() is aqueue.JobStatus.RUNNING


async def _delivered_again(redis: Redis, stream: bytes) -> bool:
    [pending] = await redis.xpending_range(stream, GROUP, "-", "+", 1)
    return int(pending["times_delivered"]) >= 2


async def _says(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return text in caplog.text


async def _claimed(redis: Redis) -> bool:
    """Whether the worker took the dead worker's entry (a server that lets the start be
    written at maxmemory, as Redis 7.0 may, even ran it)."""
    pending = await redis.xpending_range(Keys("full-claim", "default").stream, GROUP, "-", "+", 1)
    return all(entry["consumer"] != b"a-dead-worker" for entry in pending)


async def _has_consumers(redis: Redis, count: int) -> bool:
    consumers = await redis.xinfo_consumers(Keys("full-claim", "default").stream, GROUP)
    return len(consumers) == count
