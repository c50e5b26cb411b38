"""A worker starts a read's deliveries of one stream, and finishes a flush's outcomes, in one
script call each, every job fenced, written and refused on its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from typing import Any, cast
from unittest.mock import patch

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue._inspect import job_arguments
from aqueue._redis._keys import GROUP, Keys
from aqueue._redis._msgpack import named_value
from aqueue._redis._scripts import Call
from aqueue._redis._wire import ENTRY
from aqueue._worker._acker import Acker
from aqueue._worker._outcome import Action, Delivery, Outcome
from aqueue.testing import RedisServer
from tests.helpers import entries, eventually, look, read_as
from tests.internals import Slots, connections_of


async def _told(job_id: str) -> None:
    """No job waits for these."""


_running: set[asyncio.Task[None]] = set()


@pytest.fixture(autouse=True)
async def _stop_ackers() -> AsyncIterator[None]:
    yield
    for running in _running:
        running.cancel()
    _running.clear()


async def _flush(app: aqueue.App, outcomes: list[Outcome]) -> Acker:
    """``outcomes`` submitted at once to an acker of consumer "w", and written."""
    acker = await _run(app, outcomes)
    await acker.drained()
    return acker


async def _read(app: aqueue.App, redis: Redis, *result_ttls: int) -> list[Delivery]:
    """A job enqueued per result ttl and read by consumer "w"; their deliveries."""

    @app.task
    async def noop() -> None:
        pass

    keys = Keys(app.namespace, "default")
    for result_ttl in result_ttls:
        await noop.options(result_ttl=result_ttl).enqueue()
    await read_as(redis, keys, "w")
    return [
        Delivery(keys, i, fields, keys.stream) for i, fields in await entries(redis, keys.stream)
    ]


async def _run(app: aqueue.App, outcomes: list[Outcome], *, kept_arguments_size: int = 0) -> Acker:
    """An acker of consumer "w", running, with ``outcomes`` submitted at once."""
    acker = Acker(
        connections_of(app).direct,
        "w",
        lambda outcomes: None,
        _told,
        lease=app.lease,
        slots=Slots(10),
        kept_arguments_size=kept_arguments_size,
    )
    for outcome in outcomes:
        acker.submit(outcome)
    _running.add(asyncio.create_task(acker.run()))
    return acker


def _succeeded(delivery: Delivery) -> Outcome:
    return Outcome(delivery, Action.FINISH, status="succeeded", value=b"null")


async def _evalsha_calls(redis: Redis) -> int:
    stats = cast("dict[str, dict[str, int]]", await redis.info("commandstats"))
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


async def test_the_outcomes_of_one_queue_flushed_together_cost_one_script_call(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, *[0] * 20)
    before = await _evalsha_calls(redis)
    await _flush(app, [_succeeded(d) for d in deliveries])
    assert await _evalsha_calls(redis) - before == 1
    assert await redis.xlen(deliveries[0].stream) == 0
    assert (await redis.xpending(deliveries[0].stream, GROUP))["pending"] == 0


async def test_outcomes_flushed_newest_first_are_all_recorded_and_acked(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, 60, 60, 60)
    await _flush(app, [_succeeded(d) for d in deliveries[::-1]])
    for delivery in deliveries:
        assert await app.job(delivery.job_id or "").status() is aqueue.JobStatus.SUCCEEDED
    assert await redis.xlen(deliveries[0].stream) == 0


async def test_each_job_of_one_finish_call_keeps_its_own_arguments_in_its_record(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def echo(text: str) -> None:
        pass

    keys = Keys(app.namespace, "default")
    small = await echo.enqueue("small")
    # Between the two, a job that keeps nothing: each job's values are found where they are.
    await echo.options(result_ttl=0).enqueue("forgotten")
    large = await echo.enqueue("large" * 20)
    await read_as(redis, keys, "w")
    deliveries = [
        Delivery(keys, i, fields, keys.stream) for i, fields in await entries(redis, keys.stream)
    ]
    acker = await _run(app, [_succeeded(d) for d in deliveries], kept_arguments_size=32)
    await acker.drained()
    kept = await job_arguments(app, await small.info())
    assert (kept.decoded, kept.size) == ([["small"], {}], None)
    too_large = await job_arguments(app, await large.info())
    assert too_large.decoded is None
    assert too_large.size == len(deliveries[2].fields[b"p"])


async def test_a_job_whose_write_fails_is_left_pending_while_the_rest_of_its_batch_finishes(
    app: aqueue.App, redis: Redis
) -> None:
    first, clobbered, last = await _read(app, redis, 60, 60, 60)
    # Another program writes a string where one job's record is.
    await redis.set(clobbered.record, "not a hash")
    acker = await _flush(app, [_succeeded(d) for d in (first, clobbered, last)])
    assert acker.failed == 1
    for done in (first, last):
        assert await app.job(done.job_id or "").status() is aqueue.JobStatus.SUCCEEDED
    [pending] = await redis.xpending_range(first.stream, GROUP, "-", "+", 10)
    assert pending["message_id"] == clobbered.entry_id
    # The last one finished above it: left for the trim that follows its ack, not queued.
    assert [i for i, _ in await entries(redis, first.stream)] == [
        clobbered.entry_id,
        last.entry_id,
    ]
    assert (await app.queue().stats()).queued == 0


async def test_an_entry_claimed_by_another_worker_is_refused_alone_in_its_batch(
    app: aqueue.App, redis: Redis
) -> None:
    first, claimed, last = await _read(app, redis, 60, 60, 60)
    await redis.xclaim(first.stream, GROUP, "new-owner", 0, [claimed.entry_id])
    acker = await _flush(app, [_succeeded(d) for d in (first, claimed, last)])
    assert acker.refused == 1
    assert await app.job(claimed.job_id or "").status() is aqueue.JobStatus.QUEUED
    assert await app.job(last.job_id or "").status() is aqueue.JobStatus.SUCCEEDED
    [pending] = await redis.xpending_range(first.stream, GROUP, "-", "+", 10)
    assert (pending["message_id"], pending["consumer"]) == (claimed.entry_id, b"new-owner")


async def test_at_maxmemory_a_batch_acks_its_jobs_without_writes_and_keeps_the_refused_one(
    namespace: str,
) -> None:
    """The refused outcome is written once memory frees; the job that keeps no result is
    acked meanwhile, in the same call."""
    with RedisServer.valkey() as server:
        async with (
            aqueue.App(server.url, namespace=namespace) as app,
            Redis.from_url(server.url) as redis,
        ):
            kept, forgotten = await _read(app, redis, 60, 0)
            await redis.config_set("maxmemory", 1)  # noeviction, the default policy
            acker = await _run(app, [_succeeded(kept), _succeeded(forgotten)])
            await eventually(lambda: _pending_is(redis, kept, [kept.entry_id]))
            assert await app.job(kept.job_id or "").status() is aqueue.JobStatus.QUEUED
            await redis.config_set("maxmemory", 0)
            await acker.drained()
            assert await app.job(kept.job_id or "").status() is aqueue.JobStatus.SUCCEEDED
            assert await redis.xlen(kept.stream) == 0


async def _pending_is(redis: Redis, delivery: Delivery, entry_ids: list[bytes]) -> bool:
    pending = await redis.xpending_range(delivery.stream, GROUP, "-", "+", 10)
    return [row["message_id"] for row in pending] == entry_ids


async def _begin(app: aqueue.App, redis: Redis, deliveries: list[Delivery]) -> list[str]:
    """``deliveries`` (read by consumer "w") begun by worker "w"; the scripts it called."""
    called: list[str] = []
    # The worker serves another queue, so only the begin below starts these entries.
    async with aqueue.Worker(app, queues=["elsewhere"], name="w", concurrency=50) as worker:
        assert worker._fetcher is not None
        with _scripts_called(app, called):
            await worker._fetcher.begin(deliveries, claimed=True)
        worker.stop()
    return called


@contextlib.contextmanager
def _scripts_called(app: aqueue.App, called: list[str]) -> Iterator[None]:
    """Note in ``called`` the name of each script the app runs meanwhile."""
    run = connections_of(app).direct.run

    def spied(calls: Iterable[Call]) -> Awaitable[list[Any]]:
        calls = list(calls)
        called.extend(call.script.name for call in calls)
        return run(calls)

    with patch.object(connections_of(app).direct, "run", spied):
        yield


async def test_the_starts_of_one_read_cost_one_script_call(app: aqueue.App, redis: Redis) -> None:
    deliveries = await _read(app, redis, *[60] * 20)
    # The worker's own loops (its queue's leader poll) may call scripts meanwhile.
    assert (await _begin(app, redis, deliveries)).count("start") == 1
    for delivery in deliveries:
        assert await app.job(delivery.job_id or "").status() is aqueue.JobStatus.SUCCEEDED


async def test_deliveries_begun_newest_first_all_run(app: aqueue.App, redis: Redis) -> None:
    deliveries = await _read(app, redis, 60, 60, 60)
    await _begin(app, redis, deliveries[::-1])
    for delivery in deliveries:
        assert await app.job(delivery.job_id or "").status() is aqueue.JobStatus.SUCCEEDED


async def test_a_job_whose_start_fails_is_not_run_while_the_rest_of_its_batch_runs(
    app: aqueue.App, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    first, clobbered, last = await _read(app, redis, 60, 60, 60)
    await redis.set(clobbered.record, "not a hash")
    await _begin(app, redis, [first, clobbered, last])
    assert "cannot start job " + (clobbered.job_id or "") in caplog.text
    for ran in (first, last):
        assert await app.job(ran.job_id or "").status() is aqueue.JobStatus.SUCCEEDED
    [pending] = await redis.xpending_range(first.stream, GROUP, "-", "+", 10)
    assert pending["message_id"] == clobbered.entry_id


@pytest.mark.parametrize("protocol", ["", "?protocol=3"])
async def test_a_worker_of_several_queues_without_priority_levels_reads_them_with_plain_reads(
    server: RedisServer, namespace: str, protocol: str
) -> None:
    """The script that reads levels in order costs the server more per entry than a read."""
    async with aqueue.App(server.url + protocol, namespace=namespace) as app:

        @app.task
        async def queue_of() -> str:
            return aqueue.current_job().queue

        jobs = [await queue_of.options(queue=q).enqueue() for q in "ab" for _ in range(10)]
        called: list[str] = []
        with _scripts_called(app, called):
            async with aqueue.Worker(app, queues=["a", "b"]):
                results = [await job.result(timeout=10) for job in jobs]
    assert results == ["a"] * 10 + ["b"] * 10
    assert "fetch" not in called


async def _calls_of(redis: Redis, command: str) -> int:
    stats = cast("dict[str, dict[str, int]]", await redis.info("commandstats"))
    return stats.get(f"cmdstat_{command}", {}).get("calls", 0)


async def test_a_job_started_from_its_queued_hash_is_found_there_by_removing_its_field(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, *[60] * 20)
    before = {command: await _calls_of(redis, command) for command in ("hget", "hmget", "hdel")}
    await _begin(app, redis, deliveries)
    # One call in each job's "queued" hash, which removes the field; none in a record that does
    # not exist yet, and none when the jobs finish (no job of the batch was cancelled).
    assert {command: await _calls_of(redis, command) - before[command] for command in before} == {
        "hget": 0,
        "hmget": 0,
        "hdel": 20,
    }
    for delivery in deliveries:
        assert await app.job(delivery.job_id or "").status() is aqueue.JobStatus.SUCCEEDED


async def test_finishing_jobs_nobody_cancelled_reads_none_of_their_records(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, *[60] * 20)
    before = await _calls_of(redis, "hget")
    await _flush(app, [_succeeded(d) for d in deliveries])
    assert await _calls_of(redis, "hget") - before == 0
    for delivery in deliveries:
        assert await app.job(delivery.job_id or "").status() is aqueue.JobStatus.SUCCEEDED


async def test_finishing_jobs_of_a_queue_where_none_was_cancelled_looks_up_no_job_id(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, *[60] * 20)
    before = await _calls_of(redis, "zmscore")
    await _flush(app, [_succeeded(d) for d in deliveries])
    assert await _calls_of(redis, "zmscore") == before
    assert await redis.xlen(deliveries[0].stream) == 0


async def test_a_job_cancelled_while_it_ran_stays_cancelled_while_its_batch_records_results(
    app: aqueue.App, redis: Redis
) -> None:
    first, cancelled, last = await _read(app, redis, 60, 60, 60)
    for delivery in (first, cancelled, last):
        # Running, as its start left it (the cancel below comes after the worker last looked).
        await redis.hset(delivery.record, "status", "running")
    assert await app.job(cancelled.job_id or "").cancel()
    await _flush(app, [_succeeded(d) for d in (first, cancelled, last)])
    assert await app.job(cancelled.job_id or "").status() is aqueue.JobStatus.CANCELLED
    for ran in (first, last):
        assert await app.job(ran.job_id or "").status() is aqueue.JobStatus.SUCCEEDED
    assert await redis.xlen(first.stream) == 0


async def test_entries_of_jobs_that_ended_before_an_older_one_leave_the_stream_with_it(
    app: aqueue.App, redis: Redis
) -> None:
    """Deleting each by id would cost more than the rest of their finish (with several
    workers, nearly every batch lies above another worker's oldest entry)."""
    older, *newer = await _read(app, redis, 60, 60, 60)
    await _flush(app, [_succeeded(d) for d in newer])
    left = [entry_id for entry_id, _ in await entries(redis, older.stream)]
    assert left == [older.entry_id, *(d.entry_id for d in newer)]
    assert (await app.queue().stats()).queued == 0
    await _flush(app, [_succeeded(older)])
    assert await redis.xlen(older.stream) == 0


@pytest.mark.slow
async def test_entries_enqueued_a_second_after_a_running_one_leave_the_stream_at_once(
    app: aqueue.App, redis: Redis
) -> None:
    """A long job holds back no more than a second of finished entries."""

    @app.task
    async def noop() -> None:
        pass

    keys = Keys(app.namespace, "default")
    await noop.enqueue()
    await read_as(redis, keys, "w")
    [(older, _)] = await entries(redis, keys.stream)
    await asyncio.sleep(1.1)
    await noop.enqueue()
    await redis.xreadgroup(GROUP, "w", {keys.stream: ">"})
    [_, newer] = [Delivery(keys, i, f, keys.stream) for i, f in await entries(redis, keys.stream)]
    await _flush(app, [_succeeded(newer)])
    assert [entry_id for entry_id, _ in await entries(redis, keys.stream)] == [older]


async def test_finishing_every_entry_read_leaves_those_not_read_yet_in_the_stream(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def noop() -> None:
        pass

    keys = Keys(app.namespace, "default")
    for _ in range(4):
        await noop.enqueue()
    read = await read_as(redis, keys, "w", count=2)
    deliveries = [Delivery(keys, i, f, keys.stream) for i, f in await entries(redis, keys.stream)]
    await _flush(app, [_succeeded(d) for d in deliveries if d.entry_id in read])
    unread = [d.entry_id for d in deliveries if d.entry_id not in read]
    assert [entry_id for entry_id, _ in await entries(redis, keys.stream)] == unread
    assert (await redis.xpending(keys.stream, GROUP))["pending"] == 0


async def test_entries_below_the_first_pending_one_leave_the_stream_without_a_delete_by_id(
    app: aqueue.App, redis: Redis
) -> None:
    *older, pending = await _read(app, redis, *[60] * 20)
    before = await _calls_of(redis, "xdel")
    await _flush(app, [_succeeded(d) for d in older])
    assert await _calls_of(redis, "xdel") == before
    assert [entry_id for entry_id, _ in await entries(redis, pending.stream)] == [pending.entry_id]


async def test_jobs_nobody_follows_are_told_only_when_they_end(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, *[60] * 20)
    listener = redis.pubsub()
    # Sharded pub/sub has no patterns: each job's record channel.
    keys = Keys(app.namespace, "default")
    await listener.ssubscribe(*(keys.job(d.job_id or "") for d in deliveries))
    await _begin(app, redis, deliveries)
    told: list[bytes] = []
    while (message := await listener.get_sharded_message(timeout=0.2)) is not None:
        if message["type"] == "smessage":
            told.append(message["data"])
    await listener.aclose()
    # A result waiter wakes only at the end: no "running" message for each start.
    assert told == [b"succeeded"] * 20


def _retried(delivery: Delivery, delay_ms: int = 60_000) -> Outcome:
    return Outcome(
        delivery,
        Action.FINISH,
        status="scheduled",
        field="error",
        value=b'"fails once"',
        retry_delay_ms=delay_ms,
        attempt=1,
    )


async def _told_on(listener: Any) -> list[tuple[bytes, bytes]]:
    """The (channel, message) pairs a sharded subscription heard, until it hears no more."""
    told: list[tuple[bytes, bytes]] = []
    while (message := await listener.get_sharded_message(timeout=0.2)) is not None:
        if message["type"] == "smessage":
            told.append((message["channel"], message["data"]))
    await listener.aclose()
    return told


@pytest.mark.parametrize(("size", "count"), [(3, 3), (40, 3), (300, 20), (70_000, 3)])
async def test_a_retry_waits_in_the_delayed_set_as_its_entry_packed_as_the_scripts_pack_it(
    app: aqueue.App, redis: Redis, size: int, count: int
) -> None:
    """Its fields as the stream holds them, the attempts made last, packed as cmsgpack packs
    them (fixstr, str8, str16, str32; a fixarray or an array16): what poll.lua, cancel.lua
    and the dashboard read. The finish reads no entry back for it."""
    keys = Keys(app.namespace, "default")
    await redis.xadd(keys.stream, {"j": "default:r1", "t": "noop", "r": "60", "a": "0"})
    # More fields (an entry written by another program), to need an array16.
    extra: dict[Any, Any] = {"j": "default:r2", "t": "noop", "r": "60"}
    extra.update((f"f{i}", "x" * size) for i in range(count))
    await redis.xadd(keys.stream, extra)
    await read_as(redis, keys, "w")
    deliveries = [Delivery(keys, i, f, keys.stream) for i, f in await entries(redis, keys.stream)]
    before = await _calls_of(redis, "xrange")
    await _flush(app, [_retried(d) for d in deliveries])
    assert await _calls_of(redis, "xrange") == before
    expected = []
    for delivery in deliveries:
        fields = [v for pair in delivery.fields.items() if pair[0] != b"a" for v in pair]
        packed = await redis.eval("return cmsgpack.pack(ARGV)", 0, *fields, b"a", b"1")
        expected.append(packed)
    assert sorted(await redis.zrange(keys.delayed, 0, -1)) == sorted(expected)


async def test_retries_flushed_together_wake_the_promoting_worker_once_with_the_earliest(
    app: aqueue.App, redis: Redis
) -> None:
    deliveries = await _read(app, redis, *[60] * 20)
    keys = Keys(app.namespace, "default")
    listener = redis.pubsub()
    await listener.ssubscribe(keys.delayed)
    before = await _calls_of(redis, "zrange")
    # Each due before the one flushed before it.
    await _flush(app, [_retried(d, 60_000 - 1000 * i) for i, d in enumerate(deliveries)])
    # One look at the set's first member, for the whole flush.
    assert await _calls_of(redis, "zrange") - before == 1
    [(_, earliest)] = cast(
        "list[tuple[bytes, float]]", await redis.zrange(keys.delayed, 0, 0, withscores=True)
    )
    assert await _told_on(listener) == [(keys.delayed, b"%d" % earliest)]


async def test_a_retry_is_told_only_to_the_followers_of_its_job(
    app: aqueue.App, redis: Redis
) -> None:
    """A result waiter wakes only at the end: "scheduled" is for job.events()."""
    deliveries = await _read(app, redis, *[60] * 20)
    keys = Keys(app.namespace, "default")
    followed = keys.job(deliveries[0].job_id or "")
    await redis.zincrby(keys.followed, 1, deliveries[0].job_id or "")
    listener = redis.pubsub()
    await listener.ssubscribe(*(keys.job(d.job_id or "") for d in deliveries))
    await _flush(app, [_retried(d) for d in deliveries])
    assert await _told_on(listener) == [(followed, b"scheduled")]
    for delivery in deliveries:
        assert await app.job(delivery.job_id or "").status() is aqueue.JobStatus.SCHEDULED


async def test_a_start_reads_a_records_status_and_attempts_in_one_look(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def noop() -> None:
        pass

    keys = Keys(app.namespace, "default")
    # A job with a uniqueness key has a record from its enqueue.
    jobs = [await noop.options(key=f"k{i}").enqueue() for i in range(20)]
    await read_as(redis, keys, "w")
    deliveries = [Delivery(keys, i, f, keys.stream) for i, f in await entries(redis, keys.stream)]
    commands = ("hget", "hmget", "hincrby")
    before = {command: await _calls_of(redis, command) for command in commands}
    await _begin(app, redis, deliveries)
    assert {command: await _calls_of(redis, command) - before[command] for command in commands} == {
        "hget": 0,
        "hmget": 20,
        "hincrby": 0,
    }
    for job in jobs:
        assert (await job.info()).attempts == 1


def _job_of(member: bytes) -> str:
    """The job id a member of the delayed set names."""
    job_id = named_value(member, ENTRY.job_id)
    assert job_id is not None
    return job_id.decode()


async def _delayed_jobs(app: aqueue.App, count: int) -> list[aqueue.Job[None]]:
    """``count`` jobs of a no-op task, due 10 ms from now (not moved: no worker runs)."""

    @app.task
    async def noop() -> None:
        pass

    return await noop.options(delay=0.01).enqueue_many([()] * count)


async def test_due_jobs_moved_together_cost_one_look_and_one_removal(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    jobs = await _delayed_jobs(app, 20)
    await asyncio.sleep(0.05)
    commands = ("zscore", "zmscore", "zrangebyscore", "zrem", "zremrangebyrank")
    before = {command: await _calls_of(redis, command) for command in commands}
    due, wait, *_, told, refused, followed = (await look(app, keys))[:11]
    # 20 read, none waits any more (-1), and the workers were told so (1).
    assert (due, wait, told, refused, followed) == (20, -1, 1, b"", [])
    # Every member it read moved: removed by rank, no member taken in again.
    assert {command: await _calls_of(redis, command) - before[command] for command in commands} == {
        "zscore": 0,
        "zmscore": 0,
        "zrangebyscore": 2,  # the due members, and the jobs cancelled lately
        "zrem": 0,
        "zremrangebyrank": 1,
    }
    assert await redis.zcard(keys.delayed) == 0
    assert await redis.xlen(keys.stream) == 20
    for job in jobs:
        assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_due_job_whose_move_the_server_refuses_stays_delayed_and_the_others_move(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")

    @app.task
    async def noop() -> None:
        pass

    refused = await noop.options(delay=0.01, priority=7).enqueue()
    moved = await noop.options(delay=0.01).enqueue_many([()] * 4)
    # Another program's key of the wrong type where the job's level's stream is.
    await redis.set(keys.stream_at(7), "clobbered")
    await asyncio.sleep(0.05)
    reply = await look(app, keys)
    assert b"WRONGTYPE" in reply[9]
    [member] = cast("list[bytes]", await redis.zrange(keys.delayed, 0, -1))
    assert _job_of(member) == refused.id
    assert await refused.status() is aqueue.JobStatus.SCHEDULED
    for job in moved:
        assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_move_leaves_the_records_alone_and_the_jobs_read_queued(
    app: aqueue.App, redis: Redis
) -> None:
    """A moved job's record still says scheduled, with its due time: its member has left the
    delayed set, so it reads queued, with no due time."""
    keys = Keys(app.namespace, "default")
    jobs = await _delayed_jobs(app, 20)
    await asyncio.sleep(0.05)
    before = {command: await _calls_of(redis, command) for command in ("hget", "hdel", "hset")}
    await look(app, keys)
    assert {command: await _calls_of(redis, command) - before[command] for command in before} == {
        "hget": 0,
        "hdel": 0,
        "hset": 0,
    }
    for job in jobs:
        info = await job.info()
        assert (info.status, info.due_at) == (aqueue.JobStatus.QUEUED, None)


async def test_a_due_job_reads_scheduled_until_a_look_moves_it(
    app: aqueue.App, redis: Redis
) -> None:
    """Its status follows its member, not a clock: due is not yet queued."""
    keys = Keys(app.namespace, "default")
    [job] = await _delayed_jobs(app, 1)
    await asyncio.sleep(0.05)
    assert await job.status() is aqueue.JobStatus.SCHEDULED
    await look(app, keys)
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_status_read_overtaken_by_a_cancel_tells_cancelled_not_queued(
    app: aqueue.App,
) -> None:
    """A read finds the record scheduled, then looks whether the job left the delayed set. A
    cancel in between also takes its member out: the look reads the status again with it, so
    the reader is never told queued, a status the job never had."""
    [job] = await _delayed_jobs(app, 1)
    await asyncio.sleep(0.05)
    assert await job.cancel()
    assert await job._scheduled_status() == b"cancelled"  # the look, after the record's read


async def test_the_status_of_a_job_not_due_yet_reads_nothing_of_the_delayed_set(
    app: aqueue.App, redis: Redis
) -> None:
    """Jobs of one enqueue_many share a due time: a look among their members for each job's
    status would take them all in, for each."""

    @app.task
    async def later() -> None: ...

    jobs = await later.options(delay=60).enqueue_many([()] * 50)
    before = await _calls_of(redis, "zrangebyscore")
    for job in jobs:
        assert await job.status() is aqueue.JobStatus.SCHEDULED
    assert await _calls_of(redis, "zrangebyscore") == before


async def test_a_look_names_the_moved_jobs_that_someone_follows(
    app: aqueue.App, redis: Redis
) -> None:
    """Its worker tells them "queued" (job.events()); a result waiter wakes only at the end."""
    keys = Keys(app.namespace, "default")
    jobs = await _delayed_jobs(app, 20)
    await redis.zincrby(keys.followed, 1, jobs[0].id)
    await asyncio.sleep(0.05)
    assert (await look(app, keys))[10] == [jobs[0].id.encode()]


async def test_a_follower_of_a_retried_job_sees_it_queued_once_moved(app: aqueue.App) -> None:
    """The look's worker tells it: the move leaves the record as it was."""
    failed = asyncio.Event()

    # Due late enough for the pause and the follower to come first.
    @app.task(retries=1, backoff=aqueue.backoff.fixed(0.5))
    async def flaky() -> None:
        failed.set()
        raise ValueError("fails")

    job = await flaky.enqueue()
    seen = []
    async with aqueue.Worker(app):
        await failed.wait()
        await app.queue().pause()  # moved, never started again
        async with asyncio.timeout(5):
            async for info in job.events():
                seen.append(info.status)
                if info.status is aqueue.JobStatus.QUEUED:
                    break
    assert seen[-2:] == [aqueue.JobStatus.SCHEDULED, aqueue.JobStatus.QUEUED]


async def test_a_look_moves_at_most_its_batch_and_leaves_the_rest_due(
    app: aqueue.App, redis: Redis
) -> None:
    keys = Keys(app.namespace, "default")
    jobs = await _delayed_jobs(app, 3)
    await asyncio.sleep(0.05)
    first, second, third = cast("list[bytes]", await redis.zrange(keys.delayed, 0, -1))
    assert (await look(app, keys, batch=2))[0] == 2
    assert await redis.zrange(keys.delayed, 0, -1) == [third]
    assert {job.id: await job.status() for job in jobs} == {
        _job_of(first): aqueue.JobStatus.QUEUED,
        _job_of(second): aqueue.JobStatus.QUEUED,
        _job_of(third): aqueue.JobStatus.SCHEDULED,
    }
