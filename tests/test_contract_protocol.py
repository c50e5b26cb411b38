"""The wire protocol (docs/protocol.md): entries carry their version, the page documents every
field of the table in ``aqueue._redis._wire``, and a producer with plain Redis commands, following
the page, enqueues a job that a worker runs."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from redis.asyncio import Redis

import aqueue
from tests.helpers import entries
from tests.internals import FIELDS, PROTOCOL_VERSION, Keys

PROTOCOL = Path(__file__).parent.parent / "docs" / "protocol.md"

PRODUCER = """
import json, os, sys, time

import redis

url, namespace, queue, task = sys.argv[1:5]
hex_id = os.urandom(16).hex()
job_id = f"{queue}:{hex_id}"
prefix = f"{namespace}:{{{queue}}}"
record = f"{prefix}:job:{hex_id}"
client = redis.Redis.from_url(url)
with client.pipeline(transaction=True) as pipe:
    entry = {"v": 1, "j": job_id, "t": task, "p": json.dumps([[2], {"y": 3}]), "r": 3600}
    pipe.xadd(f"{prefix}:stream", entry)
    enqueued_at = int(time.time() * 1000)
    pipe.hset(record, mapping={"status": "queued", "task": task, "enqueued_at": enqueued_at})
    pipe.expire(record, 7 * 24 * 3600)
    pipe.execute()
assert "aqueue" not in sys.modules
print(job_id)
"""
"""A producer in another language, as docs/protocol.md tells it: Redis commands alone, in a
process that never imports aqueue."""


def test_the_protocol_page_documents_every_field_of_an_entry() -> None:
    documented = set(re.findall(r"^\| `(\w)`(?:, `(\w)`)? \|", PROTOCOL.read_text(), re.M))
    codes = {code for pair in documented for code in pair if code}
    assert codes == {wire.code for wire in FIELDS}


async def test_every_entry_carries_the_protocol_version(app: aqueue.App, redis: Redis) -> None:
    @app.task(name="protocol.job")
    async def job() -> None: ...

    keys = Keys(app.namespace, "default")
    done = "default:" + "d" * 32
    await redis.hset(keys.job(done), mapping={"status": "succeeded", "result": "null"})
    await job.enqueue()
    await job.options(priority=8).enqueue()
    await job.options(after=[done]).enqueue()  # released at once: its dependency ended
    written = [*await entries(redis, keys.stream), *await entries(redis, keys.stream_at(8))]
    assert [fields[b"v"] for _, fields in written] == [str(PROTOCOL_VERSION).encode()] * 3


async def test_a_producer_with_plain_redis_commands_enqueues_a_job_a_worker_runs(
    app: aqueue.App,
) -> None:
    @app.task(name="protocol.add")
    async def add(x: int, y: int) -> int:
        return x + y

    producer = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", PRODUCER, app.url, app.namespace, "default", add.name),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await producer.communicate()
    assert producer.returncode == 0
    job = app.job(out.decode().strip())
    assert await job.status() is aqueue.JobStatus.QUEUED
    async with aqueue.Worker(app):
        assert await job.result(timeout=10) == 5
