"""Leases: entries of a worker that went silent are claimed and run by a live one; a live
worker keeps its leases, and a stale worker's late outcome is refused (fenced acks)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import entries, eventually, read_as
from tests.internals import (
    GROUP,
    RENEW,
    Delivery,
    Keys,
    LeaseKeeper,
    Levels,
    Reclaimer,
    Slots,
    connections_of,
    prune_consumers,
    registry_index,
)
from tests.proxies import DelayingProxy


async def test_a_dead_workers_job_is_claimed_and_run_after_the_lease(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=1)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    keys = Keys(namespace, "default")
    async with app:
        job = await add.enqueue(2, 3)
        assert len(await read_as(redis, keys, "ghost")) == 1
        taken = time.monotonic()
        async with aqueue.Worker(app) as worker:
            assert await job.result(timeout=10) == 5
            delay = time.monotonic() - taken
        assert worker.claimed == 1
        assert (await job.info()).attempts == 1  # the ghost never started it
    assert 1.0 <= delay <= 1.0 + 1.0 + 0.5  # the lease, plus one claim interval, plus slack
    assert await redis.xlen(keys.stream) == 0


async def test_a_job_running_longer_than_the_lease_is_not_claimed_by_another_worker(
    server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=0.6)
    runs = 0

    @app.task
    async def long() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(2.0)  # more than three leases
        return "once"

    async with app, aqueue.Worker(app, name="a") as first, aqueue.Worker(app, name="b") as second:
        job = await long.enqueue()
        assert await job.result(timeout=10) == "once"
    assert runs == 1
    assert first.claimed == second.claimed == 0


async def test_leases_are_renewed_while_a_task_blocks_the_event_loop(
    server: RedisServer, namespace: str
) -> None:
    runs = 0

    async def hog() -> str:
        nonlocal runs
        runs += 1
        time.sleep(2.5)  # noqa: ASYNC251 - blocks the loop past a lease plus a claim interval
        return "done"

    app = aqueue.App(server.url, namespace=namespace, lease=0.6)
    app.task(name="hog")(hog)
    # A second worker on a loop of its own (another thread), ready to claim a lapsed lease.
    other = aqueue.App(server.url, namespace=namespace, lease=0.6)
    other.task(name="hog")(hog)
    other_worker = aqueue.Worker(other, name="other")
    ready, done = threading.Event(), threading.Event()

    async def serve_other() -> None:
        async with other, other_worker:
            ready.set()
            await asyncio.to_thread(done.wait, 10)  # claiming all along, until the job ended

    thread = threading.Thread(target=asyncio.run, args=(serve_other(),))
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10)
        async with app, aqueue.Worker(app, name="blocker"):
            job = await app.enqueue("hog")
            assert await job.result(timeout=10) == "done"
    finally:
        done.set()
        await asyncio.to_thread(thread.join, 10)
    assert runs == 1
    assert other_worker.claimed == 0


async def test_a_stale_workers_late_outcome_is_refused_and_the_new_owners_stands(
    app: aqueue.App, redis: Redis
) -> None:
    release = asyncio.Event()

    @app.task
    async def slow() -> str:
        await release.wait()
        return aqueue.current_job().worker

    keys = Keys(app.namespace, "default")
    async with aqueue.Worker(app, name="stale") as stale:
        job = await slow.enqueue()
        await eventually(lambda: _running(job))
        [(entry_id, _)] = await entries(redis, keys.stream)
        # Another consumer takes the entry over, as XAUTOCLAIM does once a lease lapsed.
        await redis.xclaim(keys.stream, GROUP, "new-owner", 0, [entry_id])
        release.set()
        await eventually(lambda: _refused(stale))
    assert await job.status() is aqueue.JobStatus.RUNNING  # the stale outcome was not written
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 1  # still the new owner's


async def test_a_job_delivered_more_than_its_limit_is_dead_lettered_as_poison(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=0.5, max_deliveries=3)
    ran = False

    @app.task
    async def killer() -> None:
        nonlocal ran
        ran = True

    keys = Keys(namespace, "default")
    async with app:
        job = await killer.enqueue()
        # As three deliveries that died left it: started (so it has its record) three times.
        await redis.hdel(keys.queued(job.id), job.id.partition(":")[2])
        await redis.hset(keys.job(job.id), mapping={"status": "running", "attempts": 3})
        await read_as(redis, keys, "ghost")
        async with aqueue.Worker(app):
            with_error = await _failure(job)
    assert not ran
    assert with_error.type == "aqueue.Poison"
    [(_, dead)] = await entries(redis, keys.dead)
    assert dead[b"reason"].startswith(b"delivered more than 3 times")
    assert orjson.loads(dead[b"p"]) == [[], {}]


async def _failure(job: aqueue.Job[None]) -> aqueue.TaskFailed:
    try:
        await job.result(timeout=10)
    except aqueue.TaskFailed as failure:
        return failure
    raise AssertionError("the job did not fail")


async def _running(job: aqueue.Job[Any]) -> bool:
    return await job.status() is aqueue.JobStatus.RUNNING


async def _refused(worker: aqueue.Worker) -> bool:
    return worker.refused_acks == 1


async def test_a_silent_consumer_with_nothing_pending_is_pruned_but_one_with_work_is_kept(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    await app.enqueue("some.task")
    await read_as(redis, keys, "ghost")  # "ghost" now holds one pending entry
    await redis.xgroup_createconsumer(keys.stream, GROUP, "idle-and-empty")
    assert await prune_consumers(connections_of(app).direct, keys, idle_ms=0) == 1
    [left] = await redis.xinfo_consumers(keys.stream, GROUP)
    assert left["name"] == b"ghost"


async def test_a_pending_entry_deleted_by_hand_is_dead_lettered_not_forgotten(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=0.5)
    keys = Keys(namespace, "default")
    async with app:
        await app.enqueue("some.task")
        [entry_id] = await read_as(redis, keys, "ghost")
        await redis.xdel(keys.stream, entry_id)  # pending for "ghost", but its entry is gone
        async with aqueue.Worker(app):
            await eventually(lambda: _dead_count_is(redis, keys, 1), timeout=5)
    [(_, dead)] = await entries(redis, keys.dead)
    assert dead[b"reason"] == b"entry deleted from the stream unfinished"
    assert dead[b"entry"] == entry_id
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_a_worker_recreates_a_vanished_stream_and_group_and_goes_on(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def echo(n: int) -> int:
        return n

    keys = Keys(app.namespace, "default")
    async with aqueue.Worker(app):
        assert await (await echo.enqueue(1)).result(timeout=5) == 1
        await redis.delete(keys.stream)  # as FLUSHDB or a failover to an empty replica would
        await asyncio.sleep(0.1)
        assert await (await echo.enqueue(2)).result(timeout=10) == 2
    assert [group["name"] for group in await redis.xinfo_groups(keys.stream)] == [b"aqueue"]


async def _dead_count_is(redis: Redis, keys: Keys, count: int) -> bool:
    return int(await redis.xlen(keys.dead)) == count


async def test_stopping_claims_waits_for_a_claim_in_flight_to_start_its_jobs(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def work() -> None: ...

    keys = Keys(app.namespace, "default")
    await work.enqueue()
    await read_as(redis, keys, "ghost")
    claimed = asyncio.Event()
    release = asyncio.Event()
    started: list[Delivery] = []

    async def begin(deliveries: list[Delivery]) -> None:
        claimed.set()
        await release.wait()  # the start scripts of the claimed jobs are on a slow link
        started.extend(deliveries)

    async def levels_changed() -> None: ...

    reclaimer = Reclaimer(
        redis=app.redis,
        calls=connections_of(app).direct,
        levels=Levels([keys]),
        consumer="heir",
        lease=0.001,
        slots=Slots(10),
        begin=begin,
        cancel=lambda job_ids: None,
        levels_changed=levels_changed,
    )
    running = asyncio.create_task(reclaimer.run())
    await asyncio.wait_for(claimed.wait(), 5)
    stopping = asyncio.create_task(reclaimer.stop_claiming())
    await asyncio.sleep(0.1)
    # A worker waits for its running jobs once this returns: the claimed job must be one.
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert len(started) == 1
    reclaimer.stop()
    await asyncio.wait_for(running, 5)


async def test_a_job_whose_entry_is_trimmed_while_it_runs_still_records_its_outcome(
    namespace: str, server: RedisServer, redis: Redis
) -> None:
    # A lease that a loaded machine's late renewal does not let lapse (the leader would then
    # claim the entry, find it deleted and drop it: another behaviour, tested elsewhere).
    lease = 1.5
    app = aqueue.App(server.url, namespace=namespace, lease=lease)
    release = asyncio.Event()

    @app.task
    async def held() -> str:
        await release.wait()
        return "done"

    stream = Keys(namespace, "default").stream
    async with app, aqueue.Worker(app) as worker:
        job = await held.enqueue()
        await eventually(lambda: _running(job))
        await redis.xtrim(stream, maxlen=0)  # an operator empties the stream by hand
        await asyncio.sleep(lease / 3 + 0.2)  # a renewal (every lease / 3) passes over the entry
        assert len(await redis.xpending_range(stream, GROUP, "-", "+", 10)) == 1
        release.set()
        assert await job.result(timeout=5) == "done"
        assert worker.refused_acks == 0
    assert await redis.xpending_range(stream, GROUP, "-", "+", 10) == []


@pytest.mark.slow
async def test_a_running_jobs_idle_time_in_the_pending_list_stays_well_under_the_lease(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    """Leases are renewed about three times per lease, not once: never near lapsing."""
    lease = 1.5
    app = aqueue.App(server.url, namespace=namespace, lease=lease)
    release = asyncio.Event()

    @app.task
    async def held() -> None:
        await release.wait()

    stream = Keys(namespace, "default").stream
    idle_ms: list[int] = []
    async with app, aqueue.Worker(app):
        job = await held.enqueue()
        await eventually(lambda: _running(job))
        sampled_until = time.monotonic() + 2 * lease
        while time.monotonic() < sampled_until:
            [pending] = await redis.xpending_range(stream, GROUP, "-", "+", 1)
            idle_ms.append(int(pending["time_since_delivered"]))
            await asyncio.sleep(0.05)
        release.set()
        await job.result(timeout=5)
    assert max(idle_ms) < 0.6 * lease * 1000


@pytest.fixture(params=["valkey", "redis"])
def small_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server of its own with a small ``maxmemory`` and no eviction, for tests that fill it."""
    if request.param == "redis" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    launcher = RedisServer.valkey if request.param == "valkey" else RedisServer.redis
    config = {"maxmemory": "16mb", "maxmemory-policy": "noeviction"}
    with launcher(config=config) as running:
        yield running


async def _fill(redis: Redis, namespace: str) -> list[str]:
    """Write until the server refuses with OOM, and keep it full; the keys written."""
    filler: list[str] = []
    while True:
        key = f"{namespace}:filler:{len(filler)}"
        try:
            await redis.set(key, b"x" * 65536)
        except ResponseError as exc:
            if not str(exc).startswith("command not allowed when used memory"):
                raise
            break
        filler.append(key)
    # The refused write's buffer is freed again, leaving room for small writes: lower the
    # limit under what is used, as more data would, so that every write is refused.
    used = (await redis.info("memory"))["used_memory"]
    await redis.config_set("maxmemory", used - 1024 * 1024)
    return filler


@pytest.mark.slow
async def test_a_running_job_keeps_its_lease_while_redis_is_full(
    small_server: RedisServer, namespace: str
) -> None:
    """At maxmemory (noeviction) the heartbeat is refused; the renewal must go on anyway."""
    app = aqueue.App(small_server.url, namespace=namespace, lease=0.6)
    release = asyncio.Event()
    runs = 0

    @app.task
    async def held() -> str:
        nonlocal runs
        runs += 1
        await release.wait()
        return "once"

    redis = Redis.from_url(small_server.url)
    async with app, aqueue.Worker(app, name="a") as first, aqueue.Worker(app, name="b") as second:
        job = await held.enqueue()
        await eventually(lambda: _running(job))
        filler = await _fill(redis, namespace)
        await asyncio.sleep(2.0)  # three leases and a claim interval with the server full
        await redis.delete(*filler)
        release.set()
        assert await job.result(timeout=10) == "once"
    await redis.aclose()
    assert runs == 1
    assert first.claimed == second.claimed == 0


async def test_a_stream_whose_renewal_fails_does_not_keep_the_other_streams_from_renewal(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    await app.enqueue("some.task")
    [entry_id] = await read_as(redis, keys, "holder")
    broken = f"{app.namespace}:broken".encode()
    await redis.set(broken, "a stream replaced by hand")  # its renewal fails: WRONGTYPE
    await asyncio.sleep(1.0)
    keeper = LeaseKeeper(
        url=app.url,
        consumer="holder",
        lease=30,
        in_flight={(broken, b"1-0"): keys, (keys.stream, entry_id): keys},
        loop=asyncio.get_running_loop(),
    )
    await asyncio.to_thread(keeper.start)  # one cycle at once, the next after 10 s
    try:
        [pending] = await redis.xpending_range(keys.stream, GROUP, "-", "+", 1)
        assert int(pending["time_since_delivered"]) < 500  # renewed by that cycle
    finally:
        await asyncio.to_thread(keeper.stop)


async def test_a_renewal_that_keeps_failing_is_logged_once_not_every_cycle(
    app: aqueue.App, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(app.namespace, "default")
    broken = f"{app.namespace}:broken".encode()
    await redis.set(broken, "a stream replaced by hand")
    keeper = LeaseKeeper(
        url=app.url,
        consumer="holder",
        lease=0.3,
        in_flight={(broken, b"1-0"): keys},
        loop=asyncio.get_running_loop(),
    )
    with caplog.at_level(logging.WARNING, logger="aqueue.worker"):
        await asyncio.to_thread(keeper.start)
        await asyncio.sleep(0.6)  # about six cycles
        await asyncio.to_thread(keeper.stop)
    failures = [r for r in caplog.records if r.getMessage().startswith("cannot renew leases")]
    assert len(failures) == 1


async def _lag_warnings(url: str, keys: Keys, *, block: float = 0.0) -> list[str]:
    """The loop-lag warnings of a lease keeper (lease 0.9 s: it checks every 0.3 s) renewing
    one entry for 3 s, its event loop blocked for ``block`` seconds in the middle."""
    keeper = LeaseKeeper(
        url=url,
        consumer="holder",
        lease=0.9,
        in_flight={(keys.stream, b"1-0"): keys},
        loop=asyncio.get_running_loop(),
    )
    handler = _Records()
    logging.getLogger("aqueue.worker").addHandler(handler)
    try:
        await asyncio.to_thread(keeper.start)
        await asyncio.sleep(1.0)
        time.sleep(block)  # noqa: ASYNC251 - what the keeper is to notice
        await asyncio.sleep(2.0 - block)
        await asyncio.to_thread(keeper.stop)
    finally:
        logging.getLogger("aqueue.worker").removeHandler(handler)
    return [text for text in handler.texts if "event loop has not answered" in text]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


@pytest.mark.one_loop  # the keeper is a thread of its own, whatever the loop
async def test_a_blocked_event_loop_is_logged_while_leases_are_renewed(app: aqueue.App) -> None:
    assert await _lag_warnings(app.url, Keys(app.namespace, "default"), block=1.8)


@pytest.mark.one_loop
@pytest.mark.not_on("cluster", "sentinel", reason="the proxy stands in front of one server")
async def test_a_slow_renewal_is_not_taken_for_a_blocked_event_loop(
    server: RedisServer, namespace: str
) -> None:
    """A saturated server may take seconds to renew: the loop answered all along."""
    proxy = DelayingProxy(server.port, marker=RENEW.sha.encode(), delay=1.5)
    await proxy.start()
    try:
        assert await _lag_warnings(proxy.url, Keys(namespace, "default")) == []
        assert proxy.delayed >= 1
    finally:
        await proxy.close()


async def test_a_live_worker_still_says_it_is_alive_while_redis_is_full(
    small_server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(small_server.url, namespace=namespace, lease=0.6)
    redis = Redis.from_url(small_server.url)
    async with app, aqueue.Worker(app, name="a"):
        filler = await _fill(redis, namespace)
        before = await redis.zscore(registry_index(namespace), "a")
        await asyncio.sleep(0.8)  # past the record's TTL (a lease): renewed meanwhile, or gone
        after = await redis.zscore(registry_index(namespace), "a")
        workers = (await app.queue().stats()).workers
        await redis.delete(*filler)
    await redis.aclose()
    assert before is not None
    assert after is not None
    assert after > before
    assert workers == 1
