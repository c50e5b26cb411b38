"""Delayed jobs: scheduled until due on the server's clock, then run by any worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue._redis._msgpack import named_value
from tests.helpers import entries, eventually, has_status
from tests.internals import ENTRY, Keys


async def test_a_delayed_job_is_scheduled_until_due_then_runs(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task
    async def ping() -> str:
        return "pong"

    async with aqueue.Worker(app):
        started = time.monotonic()
        job = await ping.options(delay=0.5).enqueue()
        assert await job.status() is aqueue.JobStatus.SCHEDULED
        assert (await app.queue().stats()).scheduled == 1
        assert await redis.xlen(Keys(app.namespace, "default").stream) == 0
        assert await job.result(timeout=5) == "pong"
        waited = time.monotonic() - started
    assert 0.5 <= waited < 0.5 + 0.3


async def test_a_job_at_a_time_runs_no_sooner(app: aqueue.App) -> None:
    @app.task
    async def ping() -> str:
        return "pong"

    async with aqueue.Worker(app):
        due = datetime.now(UTC) + timedelta(seconds=0.4)
        job = await ping.options(at=due).enqueue()
        assert await job.result(timeout=5) == "pong"
        assert datetime.now(UTC) >= due
        info = await job.info()
    assert info.started_at is not None
    assert info.started_at >= due - timedelta(milliseconds=5)  # server and client clocks


async def test_a_time_in_the_past_runs_at_once(app: aqueue.App) -> None:
    @app.task
    async def ping() -> str:
        return "pong"

    job = await ping.options(at=datetime.now(UTC) - timedelta(hours=1)).enqueue()
    assert await job.status() is aqueue.JobStatus.QUEUED


def test_a_naive_datetime_is_refused() -> None:
    app = aqueue.App()

    @app.task
    async def ping() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="aware datetime"):
        ping.options(at=datetime(2030, 1, 1))


def test_delay_and_at_together_are_refused() -> None:
    app = aqueue.App()

    @app.task
    async def ping() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="either delay or at"):
        ping.options(delay=1, at=datetime.now(UTC))


def test_a_later_delay_or_at_replaces_the_earlier_one() -> None:
    app = aqueue.App()

    @app.task
    async def ping() -> None: ...

    when = datetime.now(UTC) + timedelta(hours=1)
    at_later = ping.options(delay=5).options(at=when)._config
    assert (at_later.delay, at_later.at) == (0.0, when)
    delayed_later = ping.options(at=when).options(delay=5)._config
    assert (delayed_later.delay, delayed_later.at) == (5.0, None)


async def test_many_workers_move_each_due_job_exactly_once(app: aqueue.App) -> None:
    runs: dict[int, int] = {}

    @app.task
    async def count(n: int) -> None:
        runs[n] = runs.get(n, 0) + 1

    jobs = [await count.options(delay=0.2).enqueue(n) for n in range(30)]
    async with aqueue.Worker(app), aqueue.Worker(app), aqueue.Worker(app):
        await asyncio.gather(*(job.result(timeout=10) for job in jobs))
    assert runs == dict.fromkeys(range(30), 1)


async def test_info_says_when_a_scheduled_job_is_due(app: aqueue.App) -> None:
    @app.task
    async def ping() -> str:
        return "pong"

    before = datetime.now(UTC)
    job = await ping.options(delay=60).enqueue()
    info = await job.info()
    assert info.status is aqueue.JobStatus.SCHEDULED
    assert info.due_at is not None
    assert before + timedelta(seconds=59) < info.due_at < before + timedelta(seconds=62)


async def test_a_retried_job_that_ran_again_shows_no_due_time(app: aqueue.App) -> None:
    """Its record keeps the retry's due time (the move leaves it, see poll.lua), which says
    nothing once the job left the delayed set."""

    @app.task(retries=1, backoff=aqueue.backoff.fixed(0.05))
    async def flaky() -> str:
        if aqueue.current_job().attempt == 1:
            raise ValueError("fails once")
        return "ran"

    job = await flaky.enqueue()
    async with aqueue.Worker(app):
        assert await job.result(timeout=5) == "ran"
    info = await job.info()
    assert (info.status, info.attempts, info.due_at) == (aqueue.JobStatus.SUCCEEDED, 2, None)


@pytest.mark.parametrize(
    "member", [b"not msgpack \xc1", b"\x93\x01\x02\x03", b"\x92\x91\x01\x80", b"\x92\xc3\xa1x"]
)
async def test_a_delayed_set_member_that_is_no_job_is_dead_lettered_and_others_move_on(
    app: aqueue.App, redis: Redis, member: bytes
) -> None:
    @app.task
    async def later() -> str:
        return "ran"

    keys = Keys(app.namespace, "default")
    await redis.zadd(keys.delayed, {member: 0})  # due first, in front of every job
    async with aqueue.Worker(app):
        job = await later.options(delay=0.05).enqueue()
        assert await job.result(timeout=5) == "ran"
    [(_, dead)] = await entries(redis, keys.dead)
    assert dead[b"reason"].startswith(b"a member of the delayed set is no job")
    assert dead[b"member"] == member
    assert await redis.zcard(keys.delayed) == 0


async def test_a_due_job_with_an_expiry_is_marked_queued_when_it_is_moved(
    app: aqueue.App, redis: Redis
) -> None:
    """Its delayed set member holds the expiry as a number, before or after its job id."""

    @app.task
    async def ping() -> str:
        return "pong"

    await app.queue().pause()  # moved, never started
    async with aqueue.Worker(app):
        job = await ping.options(delay=0.05, expires=60).enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.QUEUED))
    assert await redis.xlen(Keys(app.namespace, "default").stream) == 1


async def test_the_job_a_delayed_set_member_names_is_read_past_its_numbers(redis: Redis) -> None:
    """As cmsgpack packs them: fixint, uint, negative int, double."""
    member = await redis.eval(
        "return cmsgpack.pack({'v', 1, 'x', 1796452406574, 'n', -70000, 'f', 1.5, 'j', 'd:ab'})", 0
    )
    assert named_value(member, ENTRY.job_id) == b"d:ab"
    assert named_value(member, ENTRY.task) is None
