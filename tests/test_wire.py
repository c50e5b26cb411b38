"""A job's wire fields: one table (aqueue._redis._wire.FIELDS), carried whole on every path.

For each option that sets a field, a job enqueued with it keeps the field when it waits for
another job (``after=``), when it is retried and when its dead letter is replayed.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

import aqueue
from tests.helpers import entries, eventually
from tests.internals import (
    CODES,
    ENTRY,
    FIELDS,
    PROTOCOL_VERSION,
    VERSION_FIELDS,
    Keys,
    with_wire,
)

LUA = Path(aqueue.__file__).parent / "_redis" / "lua"

OPTIONS: dict[str, dict[str, Any]] = {
    "timeout": {"timeout": 7},
    "priority": {"priority": 8},
    "expires at": {"expires": datetime(2100, 1, 1, tzinfo=UTC)},
    "result_ttl": {"result_ttl": 77},
}
"""Option sets that a job which waits for another may have, each setting entry fields."""

KEYED = {"key": "only-one", "key_ttl": 30}
"""Uniqueness: for jobs that do not wait (a waiting job cannot have a key)."""


def _fields(entry: tuple[bytes, dict[bytes, bytes]]) -> dict[str, bytes]:
    return {name.decode(): value for name, value in entry[1].items()}


def _carried(fields: dict[str, bytes]) -> dict[str, bytes]:
    """The fields a job keeps whatever path it takes (its id and payload aside)."""
    return {code: value for code, value in fields.items() if code not in ("j", "p")}


async def _entry(redis: Redis, keys: Keys, job_id: str) -> dict[str, bytes]:
    """The stream entry of ``job_id``, at whatever priority level it is."""
    streams = [keys.stream, *(keys.stream_at(level) for level in range(10) if level != 5)]
    for stream in streams:
        for entry in await entries(redis, stream):
            if entry[1].get(b"j") == job_id.encode():
                return _fields(entry)
    raise AssertionError(f"no entry of {job_id}")


def test_no_lua_script_spells_an_entry_field_by_its_code() -> None:
    codes = {wire.code for wire in FIELDS}
    spelled = {
        (script.name, found)
        for script in LUA.glob("*.lua")
        for _, found in re.findall(r"(['\"])(\w+)\1", script.read_text())
        if found in codes
    }
    assert spelled == set(), "name an entry field as FIELD.<name> (aqueue/_redis/_wire.py)"


async def test_a_field_a_script_names_reads_on_the_server_as_its_code(redis: Redis) -> None:
    named = ", ".join(f"FIELD.{name}" for name in ENTRY._fields)
    codes = await redis.eval(with_wire(f"return {{{named}}}".encode()).decode(), 0)
    assert codes == list(ENTRY)


async def test_the_version_fields_a_script_names_are_the_ones_this_release_writes(
    redis: Redis,
) -> None:
    fields = await redis.eval(with_wire(b"return {VERSION_FIELDS 'j'}").decode(), 0)
    assert fields == [*(item.encode() for pair in VERSION_FIELDS.items() for item in pair), b"j"]


def test_an_entry_of_protocol_version_1_carries_no_version_field() -> None:
    """13 bytes of Redis memory per queued job, for what an entry without one says."""
    assert PROTOCOL_VERSION == 1
    assert VERSION_FIELDS == {}


def test_a_script_that_names_no_entry_field_fails_to_load() -> None:
    with pytest.raises(LookupError, match=r"FIELD\.taks is no entry field"):
        with_wire(b"return FIELD.taks")


def test_the_python_code_reads_entry_fields_by_name_never_by_letter() -> None:
    package = Path(aqueue.__file__).parent
    lettered = {
        (str(source.relative_to(package)), found)
        for source in package.rglob("*.py")
        if source.name != "_wire.py"  # the table itself, and its docstrings
        for found in re.findall(r'\bb"([a-z])"', source.read_text())
    }
    assert lettered == set(), "read an entry's field as ENTRY.<name> (aqueue/_redis/_wire.py)"


def test_entry_names_every_field_of_the_table_by_its_code() -> None:
    assert {name: code.decode() for name, code in ENTRY._asdict().items()} == CODES


def test_the_option_sets_cover_every_field_a_waiting_job_can_have() -> None:
    """Adding a field to the table without a case here fails this test."""
    not_waiting = {CODES["unique_key"], CODES["key_ttl"], CODES["prior_attempts"]}
    assert {wire.code for wire in FIELDS} - not_waiting == {"v", "j", "t", "p", "r", "o", "l", "x"}


@pytest.mark.parametrize("option", OPTIONS)
async def test_a_job_that_waits_keeps_every_field_of_its_options(
    app: aqueue.App, redis: Redis, option: str
) -> None:
    @app.task(name="wire.job")
    async def job(n: int) -> int:
        return n

    keys = Keys(app.namespace, "default")
    done = "default:" + "d" * 32
    await redis.hset(keys.job(done), mapping={"status": "succeeded", "result": "1"})
    task = job.options(**OPTIONS[option])
    direct = await task.enqueue(1)
    waited = await task.options(after=[done]).enqueue(1)
    assert _carried(await _entry(redis, keys, waited.id)) == _carried(
        await _entry(redis, keys, direct.id)
    )


async def test_a_job_that_waits_keeps_an_expiry_in_seconds_from_its_enqueue(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="wire.job")
    async def job() -> None:
        pass

    keys = Keys(app.namespace, "default")
    done = "default:" + "d" * 32
    await redis.hset(keys.job(done), mapping={"status": "succeeded", "result": "1"})
    before = datetime.now(UTC).timestamp() * 1000
    waited = await job.options(expires=3600, after=[done]).enqueue()
    expires = int((await _entry(redis, keys, waited.id))["x"])
    assert before + 3_595_000 < expires < before + 3_605_000


async def test_a_job_that_expires_while_it_waits_is_cancelled_instead_of_run(
    app: aqueue.App,
) -> None:
    runs: list[int] = []

    @app.task
    async def slow() -> int:
        await asyncio.sleep(1.5)
        return 1

    @app.task
    async def late() -> None:
        runs.append(1)

    async with aqueue.Worker(app):
        first = await slow.enqueue()
        waiting = await late.options(after=[first], expires=0.5).enqueue()
        with pytest.raises(aqueue.JobCancelled, match="expired"):
            await waiting.result(timeout=10)
    assert runs == []


async def _dead_lettered(app: aqueue.App, redis: Redis) -> None:
    """Run the queue's job on a worker that does not know its task: it is dead-lettered."""
    keys = Keys(app.namespace, "default")
    # Deployed before the task, while no worker that knows it runs.
    old = aqueue.App(app.url, namespace=app.namespace, unknown_task_grace=0)
    async with old, aqueue.Worker(old):

        async def dead() -> bool:
            return await redis.xlen(keys.dead) == 1

        await eventually(dead, timeout=10)


async def test_a_replayed_job_keeps_every_field_of_its_entry(app: aqueue.App, redis: Redis) -> None:
    keys = Keys(app.namespace, "default")
    options = {k: v for case in OPTIONS.values() for k, v in case.items()} | KEYED

    @app.task(name="wire.unknown")
    async def unknown() -> None:
        pass

    job = await unknown.options(**options).enqueue()
    before = await _entry(redis, keys, job.id)
    written = {wire.code for wire in FIELDS if wire.replayed} - {CODES["version"]}
    assert set(before) >= written | set(VERSION_FIELDS)
    await _dead_lettered(app, redis)
    assert await app.queue().replay_dead_letters() == 1
    assert await _entry(redis, keys, job.id) == before


async def test_a_replayed_entry_keeps_fields_of_another_program(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    written = {
        b"j": b"default:" + b"f" * 32,
        b"t": b"foreign.task",
        b"p": b"[[],{}]",
        b"r": b"60",
        b"reason": b"theirs",
        b"trace": b"abc",
    }
    await redis.xadd(keys.stream, written)  # type: ignore[arg-type]
    await _dead_lettered(app, redis)
    assert await app.queue().replay_dead_letters() == 1
    [replayed] = await entries(redis, keys.stream)
    assert replayed[1] == written


async def test_a_retry_keeps_every_field_of_its_entry(app: aqueue.App, redis: Redis) -> None:
    keys = Keys(app.namespace, "default")

    @app.task(name="wire.flaky", retries=1, backoff=aqueue.backoff.fixed(60))
    async def flaky() -> None:
        raise ConnectionError("again later")

    options = {k: v for case in OPTIONS.values() for k, v in case.items()} | KEYED
    job = await flaky.options(**options).enqueue()
    before = await _entry(redis, keys, job.id)
    async with aqueue.Worker(app):

        async def waits() -> bool:
            return await redis.zcard(keys.delayed) == 1

        await eventually(waits, timeout=10)
    [member] = cast("list[bytes]", await redis.zrange(keys.delayed, 0, 0))
    unpacked = cast("list[bytes]", await redis.eval("return cmsgpack.unpack(ARGV[1])", 0, member))
    retried = {unpacked[i].decode(): unpacked[i + 1] for i in range(0, len(unpacked), 2)}
    assert retried == before | {"a": b"1"}


async def test_an_entry_holds_the_fields_without_a_default_and_each_reads_as_its_type(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(name="wire.job")
    async def job() -> None:
        pass

    keys = Keys(app.namespace, "default")
    options = {k: v for case in OPTIONS.values() for k, v in case.items()} | KEYED
    plain = await _entry(redis, keys, (await job.enqueue()).id)
    full = await _entry(redis, keys, (await job.options(**options).enqueue()).id)
    # The version has a default, for entries without one: this release writes it past 1.
    required = {wire.code for wire in FIELDS if wire.default is None} | set(VERSION_FIELDS)
    assert set(plain) == required
    for wire in FIELDS:
        value = full.get(wire.code, (wire.default or "").encode())
        assert wire.type is not int or value.isdigit(), (wire.code, value)
