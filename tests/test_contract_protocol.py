"""The wire protocol (docs/protocol.md): entries carry their version, the page documents every
field of the table in ``aqueue._redis._wire``, and a producer with plain Redis commands, following
the page, enqueues a job that a worker runs. A worker reads an entry without a version as
version 1, and leaves one of a newer version for a worker that reads it."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import entries, eventually, pending_count
from tests.internals import (
    ABSENT_VERSION,
    CODES,
    FIELDS,
    PROTOCOL_VERSION,
    Keys,
    encode_record,
    registry_index,
    registry_record,
)

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


async def test_every_entry_reads_as_the_protocol_version_of_this_release(
    app: aqueue.App, redis: Redis
) -> None:
    """Its ``v`` field, or none for version 1 (see VERSION_FIELDS)."""

    @app.task(name="protocol.job")
    async def job() -> None: ...

    keys = Keys(app.namespace, "default")
    done = "default:" + "d" * 32
    await redis.hset(keys.job(done), mapping={"status": "succeeded", "result": "null"})
    await job.enqueue()
    await job.options(priority=8).enqueue()
    await job.options(after=[done]).enqueue()  # released at once: its dependency ended
    written = [*await entries(redis, keys.stream), *await entries(redis, keys.stream_at(8))]
    versions = [fields.get(b"v", ABSENT_VERSION) for _, fields in written]
    assert versions == [str(PROTOCOL_VERSION).encode()] * 3


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


NEWER = str(PROTOCOL_VERSION + 1)
"""The version a later release's entries carry."""


async def _counted_entry(
    app: aqueue.App, redis: Redis, version: str | None
) -> tuple[list[int], Keys, str]:
    """A task that counts its runs, and its job's entry (and record) written as a producer of
    ``version`` would (None: one of a release before the version field): the runs, the
    queue's keys and the job id."""
    runs: list[int] = []

    @app.task(name="protocol.count")
    async def count(n: int) -> int:
        runs.append(n)
        return n

    keys = Keys(app.namespace, "default")
    job_id = "default:" + "e" * 32
    entry = {CODES["job_id"]: job_id, CODES["task"]: count.name, CODES["payload"]: "[[2],{}]"}
    entry[CODES["result_ttl"]] = "3600"
    if version is not None:
        entry[CODES["version"]] = version
    await redis.xadd(keys.stream, entry)  # type: ignore[arg-type]
    await redis.hset(keys.job(job_id), mapping={"status": "queued", "task": count.name})
    return runs, keys, job_id


async def test_an_entry_without_a_version_is_read_as_version_1(
    app: aqueue.App, redis: Redis
) -> None:
    runs, _, job_id = await _counted_entry(app, redis, None)
    job = app.job(job_id)
    async with aqueue.Worker(app):
        assert await job.result(timeout=10) == 2
    assert runs == [2]


@pytest.fixture
async def patient(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    """An app whose workers wait a minute for a worker that can take a job they cannot."""
    async with aqueue.App(server.url, namespace=namespace, unknown_task_grace=60) as the_app:
        yield the_app


async def test_an_entry_of_a_newer_version_waits_unread_without_an_attempt(
    patient: aqueue.App, redis: Redis
) -> None:
    runs, keys, job_id = await _counted_entry(patient, redis, NEWER)
    async with aqueue.Worker(patient):

        async def held() -> bool:
            return await pending_count(redis, keys.stream) == 1

        await eventually(held)
        await asyncio.sleep(1)
    assert runs == []
    assert await patient.job(job_id).status() is aqueue.JobStatus.QUEUED
    assert await redis.hget(keys.job(job_id), "attempts") is None
    assert await redis.xlen(keys.dead) == 0


async def test_an_entry_of_a_newer_version_goes_back_for_a_live_worker_that_reads_it(
    patient: aqueue.App, redis: Redis
) -> None:
    runs, keys, _ = await _counted_entry(patient, redis, NEWER)
    [(first, _)] = await entries(redis, keys.stream)
    async with aqueue.Worker(patient):
        # A worker of the later release, as it describes itself in the registry.
        [ours] = await patient.workers()
        newer = dataclasses.replace(
            ours, id="newer", tasks=(), protocol=int(NEWER), seen=datetime.now(UTC)
        )
        await redis.set(registry_record(patient.namespace, "newer"), encode_record(newer), ex=60)
        await redis.zadd(registry_index(patient.namespace), {"newer": time.time() * 1000})

        async def handed_back() -> bool:
            return [entry_id for entry_id, _ in await entries(redis, keys.stream)] != [first]

        await eventually(handed_back)
    assert runs == []


async def test_an_entry_of_a_version_no_live_worker_reads_is_dead_lettered_after_the_grace(
    app: aqueue.App, redis: Redis
) -> None:
    runs, keys, job_id = await _counted_entry(app, redis, NEWER)
    async with aqueue.Worker(app):

        async def dead() -> bool:
            return await redis.xlen(keys.dead) == 1

        await eventually(dead, timeout=10)
    [(_, letter)] = await entries(redis, keys.dead)
    assert f"protocol version '{NEWER}'".encode() in letter[b"reason"]
    assert runs == []
    assert await app.job(job_id).status() is aqueue.JobStatus.FAILED
