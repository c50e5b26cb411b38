"""Script calls: a batch runs in the order it was written, whatever the server's script cache."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

import aqueue
from aqueue._redis._scripts import RELEASE, REQUEUE, execute
from tests.internals import GROUP


async def _pending_entry(redis: Redis, stream: str) -> bytes:
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    entry_id = cast("bytes", await redis.xadd(stream, {"j": "default:1"}))
    await redis.xreadgroup(GROUP, "worker", {stream: ">"})
    return entry_id


async def test_a_batch_keeps_its_order_when_the_server_lacks_its_first_script(
    app: aqueue.App, redis: Redis, namespace: str
) -> None:
    stream, holders = f"{namespace}:stream", f"{namespace}:holders"
    entry_id = await _pending_entry(redis, stream)
    await redis.zadd(holders, {f"{stream} ".encode() + entry_id: 1})
    # The server knows the release script but not the requeue that must run before it.
    await redis.script_flush()
    await redis.script_load(RELEASE.source)
    requeued, released = await app._direct.run(
        [
            (REQUEUE, [stream.encode(), b"no-record"], [GROUP, "worker", entry_id]),
            (
                RELEASE,
                [stream.encode(), holders.encode(), b"parked", b"delayed"],
                [GROUP, entry_id],
            ),
        ]
    )
    assert requeued
    assert released == 1
    assert await redis.zcard(holders) == 0


async def test_a_pipeline_keeps_its_order_when_the_server_lacks_its_first_script(
    redis: Redis, namespace: str
) -> None:
    stream, holders = f"{namespace}:stream", f"{namespace}:holders"
    entry_id = await _pending_entry(redis, stream)
    await redis.zadd(holders, {f"{stream} ".encode() + entry_id: 1})
    await redis.script_flush()
    await redis.script_load(RELEASE.source)
    pipe = redis.pipeline(transaction=False)
    REQUEUE.queue(pipe, [stream.encode(), b"no-record"], [GROUP, "worker", entry_id])
    RELEASE.queue(
        pipe, [stream.encode(), holders.encode(), b"parked", b"delayed"], [GROUP, entry_id]
    )
    requeued, released = await execute(redis, pipe, [REQUEUE, RELEASE])
    assert requeued
    assert released == 1


async def test_calls_still_run_after_the_server_flushed_its_scripts(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def work() -> None: ...

    await work.enqueue()  # the app's connection has loaded the enqueue script
    await redis.script_flush()
    job = await work.enqueue()
    assert await job.status() is aqueue.JobStatus.QUEUED
