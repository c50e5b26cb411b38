"""Cancellation (``job.cancel()``) and expiry (``options(expires=...)``)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, has_status, look
from tests.internals import Keys, members


async def test_a_cancelled_queued_job_never_runs(app: aqueue.App) -> None:
    ran: list[int] = []

    @app.task
    async def record(n: int) -> None:
        ran.append(n)

    job = await record.enqueue(1)
    assert await job.cancel() is True
    assert await job.status() is aqueue.JobStatus.CANCELLED
    async with aqueue.Worker(app) as worker:
        await eventually(lambda: _true(worker.skipped == 1))
    assert ran == []


async def test_result_of_a_cancelled_job_raises_job_cancelled(app: aqueue.App) -> None:
    @app.task
    async def work() -> int:
        return 1

    job = await work.enqueue()
    await job.cancel()
    with pytest.raises(aqueue.JobCancelled, match="cancelled by request"):
        await job.result(timeout=1)


async def test_a_cancelled_scheduled_job_never_runs(app: aqueue.App) -> None:
    ran = asyncio.Event()

    @app.task
    async def later() -> None:
        ran.set()

    job = await later.options(delay=0.2).enqueue()
    await job.cancel()
    async with aqueue.Worker(app):
        await asyncio.sleep(0.6)  # past its due time
    assert not ran.is_set()
    assert await job.status() is aqueue.JobStatus.CANCELLED


async def test_a_cancelled_scheduled_job_leaves_the_delayed_set_and_frees_its_place(
    server: RedisServer, namespace: str, redis: Redis
) -> None:
    app = aqueue.App(server.url, namespace=namespace, max_queue_length=4)

    @app.task
    async def later(n: int) -> None: ...

    async with app:
        jobs = await later.options(delay=3600).enqueue_many([(n,) for n in range(3)])
        other = await later.options(delay=3600).enqueue_many([(3,)])  # due at another time
        assert [await job.cancel() for job in jobs] == [True, True, True]
        stats = await app.queue().stats()
        assert stats.scheduled == 1  # the other job's member stays
        await later.enqueue_many([(n,) for n in range(4, 7)])  # room again: 1 + 3 of 4
        assert await redis.zcard(Keys(namespace, "default").delayed) == 1
        assert await other[0].status() is aqueue.JobStatus.SCHEDULED


async def test_a_job_cancelled_while_waiting_for_a_retry_leaves_the_delayed_set(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(retries=1, retry_on=(ValueError,), backoff=aqueue.backoff.fixed(3600))
    async def flaky() -> None:
        raise ValueError("not yet")

    async with aqueue.Worker(app):
        job = await flaky.enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.SCHEDULED))
    assert await job.cancel()
    assert await redis.zcard(Keys(app.namespace, "default").delayed) == 0


async def test_a_cancelled_job_moved_from_the_delayed_set_never_runs(app: aqueue.App) -> None:
    """Moved into its stream, its record still says scheduled (see poll.lua): queued."""
    ran = asyncio.Event()

    @app.task
    async def later() -> None:
        ran.set()

    job = await later.options(delay=0.01).enqueue()
    await asyncio.sleep(0.05)
    await look(app, Keys(app.namespace, "default"))
    assert await job.status() is aqueue.JobStatus.QUEUED
    assert await job.cancel() is True
    assert await job.status() is aqueue.JobStatus.CANCELLED
    async with aqueue.Worker(app) as worker:
        await eventually(lambda: _true(worker.skipped == 1))
    assert not ran.is_set()


async def test_purging_a_queue_cancels_a_job_moved_from_the_delayed_set(app: aqueue.App) -> None:
    @app.task
    async def later() -> None: ...

    job = await later.options(delay=0.01).enqueue()
    await asyncio.sleep(0.05)
    await look(app, Keys(app.namespace, "default"))
    assert await app.queue().purge_queued() == 1
    assert await job.status() is aqueue.JobStatus.CANCELLED


async def test_a_running_async_task_is_cancelled_within_a_second(app: aqueue.App) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    @app.task
    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    async with aqueue.Worker(app):
        job = await forever.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        cancelled_at = time.monotonic()
        assert await job.cancel() is True
        await asyncio.wait_for(stopped.wait(), 1)
        assert time.monotonic() - cancelled_at < 1
        with pytest.raises(aqueue.JobCancelled):
            await job.result(timeout=1)


async def test_a_running_sync_task_is_cancelled_and_its_slot_freed(app: aqueue.App) -> None:
    release = threading.Event()
    started = threading.Event()

    @app.task
    def blocking() -> str:
        started.set()
        release.wait(10)
        return "late"

    @app.task
    async def quick() -> str:
        return "quick"

    async with aqueue.Worker(app, concurrency=1):
        job = await blocking.enqueue()
        await asyncio.to_thread(started.wait, 5)
        await job.cancel()
        # The thread cannot be interrupted, but the job's slot is: the next job runs.
        assert await (await quick.enqueue()).result(timeout=2) == "quick"
        release.set()
    assert await job.status() is aqueue.JobStatus.CANCELLED


async def test_a_result_after_cancel_does_not_overwrite_cancelled(app: aqueue.App) -> None:
    started = asyncio.Event()

    @app.task
    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            return "swallowed the cancellation"
        return "finished"

    async with aqueue.Worker(app) as worker:
        job = await stubborn.enqueue()
        await asyncio.wait_for(started.wait(), 5)
        await job.cancel()
        await eventually(lambda: _true(not worker._running))
    assert await job.status() is aqueue.JobStatus.CANCELLED


async def test_cancel_of_an_ended_job_returns_false(app: aqueue.App) -> None:
    @app.task
    async def work() -> int:
        return 1

    async with aqueue.Worker(app):
        job = await work.enqueue()
        await job.result(timeout=5)
    assert await job.cancel() is False
    assert await job.result() == 1


async def test_cancel_of_an_unknown_job_raises_job_not_found(app: aqueue.App) -> None:
    with pytest.raises(aqueue.JobNotFound, match="no record of job default:nope"):
        await app.job("default:nope").cancel()


async def test_cancelling_frees_the_uniqueness_key(app: aqueue.App) -> None:
    @app.task
    async def report(day: str) -> None: ...

    first = await report.options(key="report-monday").enqueue("monday")
    await first.cancel()
    second = await report.options(key="report-monday").enqueue("monday")
    assert second.id != first.id


async def test_a_job_not_started_before_it_expires_ends_cancelled(app: aqueue.App) -> None:
    ran = asyncio.Event()

    @app.task
    async def stale() -> None:
        ran.set()

    job = await stale.options(expires=0.05).enqueue()
    await asyncio.sleep(0.1)
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.JobCancelled, match="expired"):
            await job.result(timeout=5)
    assert not ran.is_set()
    info = await job.info()
    assert info.error is not None
    assert info.error.type == "aqueue.Expired"


async def test_ended_jobs_leave_nothing_in_the_queued_hashes(app: aqueue.App, redis: Redis) -> None:
    @app.task
    async def stale() -> None: ...

    expired = await stale.options(expires=0.05).enqueue()
    cancelled = await stale.enqueue()
    await cancelled.cancel()
    ran = await stale.enqueue()
    await asyncio.sleep(0.1)
    async with aqueue.Worker(app):
        await ran.result(timeout=5)
        await eventually(lambda: has_status(expired, aqueue.JobStatus.CANCELLED))
    assert [key async for key in redis.scan_iter(match=f"{app.namespace}:*:queued:*")] == []
    assert (await expired.info()).task == stale.name
    assert (await cancelled.info()).task == stale.name


async def test_a_job_started_in_time_runs_despite_an_expiry(app: aqueue.App) -> None:
    @app.task
    async def fresh() -> str:
        return "ran"

    async with aqueue.Worker(app):
        job = await fresh.options(expires=timedelta(minutes=1)).enqueue()
        assert await job.result(timeout=5) == "ran"


async def test_expires_at_an_aware_datetime(app: aqueue.App) -> None:
    @app.task
    async def stale() -> None: ...

    past = datetime.now(UTC) - timedelta(seconds=1)
    job = await stale.options(expires=past).enqueue()
    async with aqueue.Worker(app):
        with pytest.raises(aqueue.JobCancelled, match="expired"):
            await job.result(timeout=5)


async def test_an_expired_fire_and_forget_job_does_not_run(app: aqueue.App) -> None:
    ran = asyncio.Event()

    @app.task(result_ttl=0)
    async def stale() -> None:
        ran.set()

    @app.task
    async def after() -> None: ...

    await stale.options(expires=0.05).enqueue()
    await asyncio.sleep(0.1)
    async with aqueue.Worker(app, concurrency=1):
        await (await after.enqueue()).result(timeout=5)
    assert not ran.is_set()


def test_a_naive_expiry_datetime_is_refused(app: aqueue.App) -> None:
    @app.task
    async def work() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="expires must be an aware datetime"):
        work.options(expires=datetime(2030, 1, 1))


async def test_a_cancelled_job_record_expires(app: aqueue.App, redis: Redis) -> None:
    @app.task
    async def work() -> None: ...

    job = await work.enqueue()
    await job.cancel()
    assert 0 < await redis.ttl(Keys(app.namespace, "default").job(job.id)) <= app.result_ttl


async def _true(value: bool) -> bool:
    return value


async def test_cancelling_a_dependency_fails_the_job_waiting_for_it(app: aqueue.App) -> None:
    @app.task
    async def first() -> int:
        return 1

    @app.task
    async def second() -> int:
        return 2

    dependency = await first.enqueue()
    waiting = await second.options(after=[dependency]).enqueue()
    await dependency.cancel()
    with pytest.raises(aqueue.TaskFailed, match="dependency failed"):
        await waiting.result(timeout=5)


async def test_cancelling_a_group_cancels_its_members(app: aqueue.App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    group = await aqueue.group([add.s(i, i) for i in range(20)]).enqueue()
    assert await group.cancel() is True
    with pytest.raises(aqueue.JobCancelled):
        await group.result(timeout=1)
    ids = await members(app, group.id)
    statuses = {await app.job(member).status() for member in ids}
    assert statuses == {aqueue.JobStatus.CANCELLED}


async def test_cancelling_a_running_chain_stops_it_and_its_later_steps(app: aqueue.App) -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    @app.task
    async def slow(x: int) -> int:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()
        return x

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async with aqueue.Worker(app):
        chain = await (slow.s(1) | double.s() | double.s()).enqueue()
        await asyncio.wait_for(started.wait(), 5)
        await chain.cancel()
        ids = await members(app, chain.id)
        for member in ids:
            with pytest.raises(aqueue.JobCancelled):
                await app.job(member).result(timeout=2)
        await asyncio.wait_for(stopped.wait(), 1)


async def test_workers_hear_of_a_cancellation_once(app: aqueue.App, redis: Redis) -> None:
    keys = Keys(app.namespace, "default")

    async def cancels_after(cursor: int) -> tuple[int, list[bytes]]:
        """The next cursor, and the cancelled jobs a look from ``cursor`` hears of."""
        reply = await look(app, keys, cursor=cursor)
        return reply[3], reply[11:]

    cursor, _ = await cancels_after(0)
    await redis.zadd(keys.cancelled, {b"default:abc": cursor})
    await asyncio.sleep(0.01)  # the next look is a later ms (one ms may be read twice)
    cursor, heard = await cancels_after(cursor)
    assert heard == [b"default:abc"]
    await asyncio.sleep(0.01)
    _, heard_again = await cancels_after(cursor)
    assert heard_again == []
