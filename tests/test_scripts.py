"""Script calls: EVALSHA, each script loaded once per connection; a batch runs in the order it
was written, whatever the server's script cache."""

from __future__ import annotations

from typing import cast

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.internals import (
    GROUP,
    Keys,
    Script,
    connections_of,
    prelude_for,
    prelude_functions,
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


PRELUDE = b"""-- Comments above a function go with the file, not with the script.
local function now_ms()
  return 1
end

local function due_in(ms)
  return now_ms() + ms
end
local function unused()
  return 2
end
"""


def test_a_script_carries_only_the_prelude_functions_it_calls_and_theirs() -> None:
    prelude = prelude_functions(PRELUDE)

    carried = prelude_for(b"return due_in(5)", prelude)

    assert carried == prelude[b"now_ms"] + prelude[b"due_in"]


def test_a_prelude_function_named_only_in_a_comment_or_as_a_field_is_left_out() -> None:
    prelude = prelude_functions(PRELUDE)

    assert prelude_for(b"-- unused() is not called\nreturn spec.unused(1)", prelude) == b""


def test_a_prelude_with_code_outside_its_functions_is_refused() -> None:
    with pytest.raises(ValueError, match="only functions and comments"):
        prelude_functions(PRELUDE + b"local cached = {}\n")


def test_the_enqueue_script_defines_none_of_the_workers_helpers() -> None:
    # Lua makes a closure per function defined, on every call: the producer's hot path
    # carries only what it calls.
    defined = {line.split(b"(")[0] for line in Script("enqueue").source.splitlines()}
    assert b"local function owned_rows" not in defined
    assert b"local function delay" in defined
