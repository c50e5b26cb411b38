"""Script calls: EVALSHA, each script loaded once per connection; a batch runs in the order it
was written, whatever the server's script cache."""

from __future__ import annotations

from typing import cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.internals import (
    GROUP,
    Keys,
    connections_of,
    registry_index,
    registry_record,
    run_sync,
    scripts,
)


async def _pending_entry(redis: Redis, stream: bytes) -> bytes:
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entry_id = cast("bytes", await redis.xadd(stream, {"j": "default:1"}))
    await redis.xreadgroup(GROUP, "worker", {stream: ">"})
    return entry_id


async def _script_loads(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_script|load", {}).get("calls", 0))


async def test_a_batch_keeps_its_order_when_the_server_lacks_its_first_script(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    entry_id = await _pending_entry(redis, keys.stream)
    holders, parked = keys.prefix.encode() + b":holders", keys.prefix.encode() + b":parked"
    await redis.zadd(holders, {keys.stream + b" " + entry_id: 1})
    requeue = scripts.requeue(
        stream=keys.stream,
        record=keys.job("default:1"),
        queued=keys.queued("default:1"),
        group=GROUP,
        consumer=b"worker",
        entry_id=entry_id,
    )
    release = scripts.release(
        stream=keys.stream,
        holders=holders,
        parked_line=parked,
        delayed=keys.delayed,
        group=GROUP,
        entry_id=entry_id,
    )
    # The server knows the release script but not the requeue that must run before it.
    await redis.script_flush()
    await redis.script_load(release.script.source)
    requeued, released = await connections_of(app).direct.run([requeue, release])
    assert requeued
    assert released == 1
    assert await redis.zcard(holders) == 0


async def test_a_connection_loads_each_script_once_not_in_every_batch(namespace: str) -> None:
    # A server of its own: the count of SCRIPT LOAD calls is the server's, not the test's.
    with RedisServer.valkey() as own:
        async with aqueue.App(own.url, namespace=namespace) as app:

            @app.task
            async def work() -> None: ...

            jobs = [await work.enqueue() for _ in range(6)]
            await jobs[0].cancel()  # the app's connection has loaded the cancel script
            async with Redis.from_url(own.url) as redis:
                before = await _script_loads(redis)
                for job in jobs[1:]:
                    await job.cancel()
                assert await _script_loads(redis) == before


async def test_calls_still_run_after_the_server_flushed_its_scripts(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def work() -> None: ...

    await work.enqueue()
    await redis.script_flush()
    job = await work.enqueue()
    assert await job.status() is aqueue.JobStatus.QUEUED


def test_synchronous_calls_still_run_after_the_server_flushed_their_scripts(
    server: RedisServer, namespace: str
) -> None:
    index = registry_index(namespace)
    beat = scripts.register(
        index=index,
        record=registry_record(namespace, "w1"),
        name="w1",
        worker="{}",
        ttl_ms=60_000,
        forget_after=60_000,
    )
    with SyncRedis.from_url(server.url) as client:
        run_sync(client, [beat])
        client.script_flush()
        [alive] = run_sync(client, [beat])
        assert isinstance(alive, int)
        assert client.zrange(index, 0, -1) == [b"w1"]
