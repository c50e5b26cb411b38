"""Enqueueing: what is written, and what is refused before anything is written."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import entries, eventually, has_status, keys_of
from tests.internals import Keys


async def test_enqueue_writes_one_stream_entry_and_the_job_reads_queued(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    before = dt.datetime.now(dt.UTC)
    job = await add.enqueue(2, y=3)

    keys = Keys(app.namespace, "default")
    [(_, fields)] = await entries(redis, keys.stream)
    assert fields[b"j"] == job.id.encode()
    assert fields[b"t"] == add.name.encode()
    assert fields[b"p"] == b'[[2],{"y":3}]'
    info = await job.info()
    assert (info.status, info.task, info.attempts) == (aqueue.JobStatus.QUEUED, add.name, 0)
    assert info.enqueued_at is not None
    assert before - dt.timedelta(seconds=1) <= info.enqueued_at <= dt.datetime.now(dt.UTC)


async def test_a_job_is_enqueued_to_the_url_set_after_the_app_was_made(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    """As ``aqueue.testing.configured_or_embedded`` points an app made at import at its server."""
    app = aqueue.App("redis://127.0.0.1:1/0", namespace=namespace)

    @app.task
    async def ping() -> None: ...

    app.url = server.url
    async with app:
        job = await ping.enqueue()
    [(_, fields)] = await entries(redis, Keys(namespace, "default").stream)
    assert fields[b"j"] == job.id.encode()


async def test_a_queued_job_takes_a_field_of_a_shared_hash_not_a_key_of_its_own(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    job = await add.enqueue(2, y=3)

    keys = Keys(app.namespace, "default")
    assert await keys_of(redis, app.namespace) == {keys.stream, keys.queued(job.id)}
    assert await redis.ttl(keys.queued(job.id)) > 3600  # bounded like a record
    [(entry_id, _)] = await entries(redis, keys.stream)
    assert await redis.hget(keys.queued(job.id), job.id.partition(":")[2]) == entry_id


async def test_a_backlog_keeps_its_queued_hashes_in_the_compact_encoding(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def noop() -> None: ...

    await noop.enqueue_many([() for _ in range(3000)])

    hashes = {key for key in await keys_of(redis, app.namespace) if b":queued:" in key}
    assert 0 < len(hashes) <= 4096
    assert {await redis.object("encoding", key) for key in hashes} == {b"listpack"}
    assert sum([await redis.hlen(key) for key in hashes]) == 3000


async def test_a_job_gets_its_record_with_a_ttl_when_it_starts(
    app: aqueue.App, redis: Redis
) -> None:
    gate = asyncio.Event()

    @app.task
    async def wait() -> None:
        await gate.wait()

    job = await wait.enqueue()
    keys = Keys(app.namespace, "default")
    async with aqueue.Worker(app):
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        assert await redis.ttl(keys.job(job.id)) > 3600
        assert await redis.exists(keys.queued(job.id)) == 0
        info = await job.info()
        assert (info.task, info.attempts) == (wait.name, 1)
        assert info.enqueued_at is not None
        assert info.started_at is not None
        gate.set()
        await job.result(timeout=5)


async def test_arguments_that_do_not_bind_are_refused_and_nothing_is_written(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(aqueue.InvalidArguments, match="missing a required argument: 'y'"):
        await add.enqueue(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):  # InvalidArguments is a TypeError too
        await add.enqueue(1, 2, z=3)  # type: ignore[call-arg]
    assert await keys_of(redis, app.namespace) == set()


async def test_an_unencodable_argument_is_named_and_nothing_is_written(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def store(name: str, blob: object) -> None: ...

    with pytest.raises(aqueue.SerializationError, match="argument 'blob' \\(set\\)"):
        await store.enqueue("x", blob={1, 2})
    assert await keys_of(redis, app.namespace) == set()


async def test_a_payload_over_the_limit_is_refused_and_nothing_is_written(
    server: RedisServer, redis: Redis, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace, max_payload_size=1000)

    @app.task
    async def upload(data: str) -> None: ...

    async with app:
        with pytest.raises(aqueue.PayloadTooLarge, match="over the limit of 1000"):
            await upload.enqueue("x" * 1000)
        await upload.enqueue("x" * 900)
    assert len(await keys_of(redis, namespace)) == 2  # the stream and the job's queued hash


async def test_enqueue_many_writes_every_job_in_order(app: aqueue.App, redis: Redis) -> None:
    @app.task
    async def square(x: int) -> int:
        return x * x

    jobs = await square.enqueue_many([(i,) for i in range(50)] + [{"x": 50}])

    written = await entries(redis, Keys(app.namespace, "default").stream)
    assert [fields[b"j"].decode() for _, fields in written] == [job.id for job in jobs]
    assert written[-1][1][b"p"] == b'[[],{"x":50}]'


async def test_enqueue_many_checks_every_item_before_writing_any(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def square(x: int) -> int:
        return x * x

    with pytest.raises(aqueue.InvalidArguments):
        await square.enqueue_many([(1,), (2,), (3, 4)])
    assert await keys_of(redis, app.namespace) == set()


async def test_enqueue_many_says_what_an_item_must_be(app: aqueue.App, redis: Redis) -> None:
    @app.task
    async def square(x: int) -> int:
        return x * x

    with pytest.raises(aqueue.InvalidArguments, match=r"one tuple of positional arguments.*Sig"):
        await square.enqueue_many([(1,), square.s(2)])  # type: ignore[list-item]
    assert await keys_of(redis, app.namespace) == set()


async def test_enqueue_many_takes_lists_and_mappings_as_items(app: aqueue.App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    jobs = await add.enqueue_many([[1, 2], {"x": 3, "y": 4}])  # type: ignore[list-item]
    assert [await job.status() for job in jobs] == [aqueue.JobStatus.QUEUED] * 2


async def test_options_queue_sends_the_job_to_that_queue(app: aqueue.App, redis: Redis) -> None:
    @app.task
    async def work() -> None: ...

    job = await work.options(queue="high").enqueue()

    assert job.queue == "high"
    assert job.id.startswith("high:")
    assert await redis.xlen(Keys(app.namespace, "high").stream) == 1


async def test_a_fire_and_forget_job_writes_no_record(app: aqueue.App, redis: Redis) -> None:
    @app.task(result_ttl=0)
    async def log_event(name: str) -> None: ...

    job = await log_event.enqueue("signup")

    assert await keys_of(redis, app.namespace) == {Keys(app.namespace, "default").stream}
    with pytest.raises(aqueue.JobNotFound, match="result_ttl=0"):
        await job.result()


async def test_enqueue_by_name_checks_arguments_of_a_task_registered_here(
    app: aqueue.App,
) -> None:
    @app.task(name="math.add")
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(aqueue.InvalidArguments):
        await app.enqueue("math.add", 1)


async def test_enqueue_by_name_writes_a_job_for_a_task_known_only_to_workers(
    app: aqueue.App, redis: Redis
) -> None:
    job = await app.enqueue("emails.send", "a@b.c", when=dt.date(2026, 1, 2))

    [(_, fields)] = await entries(redis, Keys(app.namespace, "default").stream)
    assert fields[b"t"] == b"emails.send"
    assert fields[b"p"] == b'[["a@b.c"],{"when":"2026-01-02"}]'
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_task_name_with_spaces_is_written_and_read_intact(
    app: aqueue.App, redis: Redis
) -> None:
    job = await app.enqueue("reports: daily summary", 1)

    [(_, fields)] = await entries(redis, Keys(app.namespace, "default").stream)
    assert fields[b"t"] == b"reports: daily summary"
    assert (await job.info()).task == "reports: daily summary"


async def test_enqueue_fails_with_a_clear_error_when_redis_is_unreachable() -> None:
    app = aqueue.App("redis://127.0.0.1:1/0")

    @app.task
    async def work() -> None: ...

    async with app:
        with pytest.raises(
            aqueue.ConnectionFailed, match=r"cannot reach Redis at redis://127\.0\.0\.1:1"
        ):
            await work.enqueue()


# The first loop's connections were never closed: their sockets are left to the garbage
# collector, which warns, as it would of any client not closed before its loop ended.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_app_used_again_in_a_new_event_loop_connects_again(
    server: RedisServer, namespace: str
) -> None:
    app = aqueue.App(server.url, namespace=namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async def round_trip(*, close: bool) -> int:
        async with aqueue.Worker(app):
            result = await (await add.enqueue(2, 3)).result(timeout=5)
        if close:
            await app.close()
        return result

    # No app.close() in the first loop, as with a module-level app under asyncio.run() or
    # a test's event loop of its own.
    assert asyncio.run(round_trip(close=False)) == 5
    assert asyncio.run(round_trip(close=True)) == 5
    gc.collect()  # the first loop's leftovers warn here, not in a later test
