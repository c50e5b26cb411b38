"""Retries: failed attempts wait in the delayed set and run again, following the policy."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue._redis._keys import Keys
from tests.helpers import entries, eventually, has_status


async def test_a_failing_task_is_retried_until_it_succeeds(app: aqueue.App) -> None:
    attempts: list[int] = []

    @app.task(retries=3, backoff=aqueue.backoff.fixed(0))
    async def flaky() -> int:
        attempts.append(aqueue.current_job().attempt)
        if len(attempts) < 3:
            raise ConnectionError("partner down")
        return len(attempts)

    async with aqueue.Worker(app):
        job = await flaky.enqueue()
        assert await job.result(timeout=10) == 3
    assert attempts == [1, 2, 3]
    assert (await job.info()).attempts == 3


async def test_a_job_that_succeeded_on_a_retry_reports_no_error(app: aqueue.App) -> None:
    @app.task(retries=1, backoff=aqueue.backoff.fixed(0))
    async def flaky() -> str:
        if aqueue.current_job().attempt == 1:
            raise ConnectionError("partner down")
        return "sent"

    async with aqueue.Worker(app):
        job = await flaky.enqueue()
        assert await job.result(timeout=10) == "sent"
    info = await job.info()
    assert (info.status, info.attempts, info.error) == (aqueue.JobStatus.SUCCEEDED, 2, None)


async def test_after_its_retries_a_task_fails_with_the_last_error(app: aqueue.App) -> None:
    @app.task(retries=2, backoff=aqueue.backoff.fixed(0))
    async def broken() -> None:
        raise ValueError(f"attempt {aqueue.current_job().attempt}")

    async with aqueue.Worker(app):
        job = await broken.enqueue()
        with pytest.raises(aqueue.TaskFailed, match="attempt 3"):
            await job.result(timeout=10)
    assert (await job.info()).attempts == 3


async def test_only_the_listed_exceptions_are_retried(app: aqueue.App) -> None:
    @app.task(retries=5, retry_on=(ConnectionError,), backoff=aqueue.backoff.fixed(0))
    async def picky() -> None:
        raise KeyError("not retried")

    async with aqueue.Worker(app):
        job = await picky.enqueue()
        with pytest.raises(aqueue.TaskFailed):
            await job.result(timeout=10)
    assert (await job.info()).attempts == 1


async def test_a_retry_waits_scheduled_in_the_delayed_set(app: aqueue.App, redis: Redis) -> None:
    @app.task(retries=1, backoff=aqueue.backoff.fixed(30))
    async def later() -> None:
        raise ConnectionError("try again later")

    async with aqueue.Worker(app):
        job = await later.enqueue()
        await eventually(lambda: has_status(job, aqueue.JobStatus.SCHEDULED))
        stats = await app.queue().stats()
    assert (stats.scheduled, stats.queued, stats.running) == (1, 0, 0)
    assert await redis.zcard(Keys(app.namespace, "default").delayed) == 1
    info = await job.info()
    assert info.attempts == 1
    assert info.error is not None
    assert info.error.message == "try again later"


async def test_raising_retry_runs_the_task_again_after_its_delay(app: aqueue.App) -> None:
    @app.task(retries=1)
    async def poll() -> str:
        if aqueue.current_job().attempt == 1:
            raise aqueue.Retry(delay=0.3)
        return "ready"

    async with aqueue.Worker(app):
        loop = asyncio.get_running_loop()
        started = loop.time()
        job = await poll.enqueue()
        assert await job.result(timeout=10) == "ready"
        assert loop.time() - started >= 0.3


async def test_a_timed_out_task_is_retried_when_retry_on_allows(app: aqueue.App) -> None:
    @app.task(timeout=0.1, retries=1, backoff=aqueue.backoff.fixed(0))
    async def slow_once() -> str:
        if aqueue.current_job().attempt == 1:
            await asyncio.sleep(5)
        return "fast enough"

    async with aqueue.Worker(app):
        assert await (await slow_once.enqueue()).result(timeout=10) == "fast enough"


async def test_failures_can_also_go_to_the_dead_letter_stream(
    app: aqueue.App, redis: Redis
) -> None:
    @app.task(dead_letter_failures=True)
    async def doomed() -> None:
        raise RuntimeError("no way")

    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await (await doomed.enqueue()).result(timeout=10)
    [(_, dead)] = await entries(redis, Keys(app.namespace, "default").dead)
    assert dead[b"reason"] == b"failed after 1 attempt(s): builtins.RuntimeError: no way"


def test_exponential_backoff_grows_and_is_capped() -> None:
    policy = aqueue.backoff.exponential(base=1, factor=2, max=10, jitter=False)
    assert [policy.delay(attempt) for attempt in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_full_jitter_stays_within_zero_and_the_ceiling() -> None:
    policy = aqueue.backoff.exponential(base=1, factor=2, max=10)
    delays = [policy.delay(4) for _ in range(200)]
    assert all(0 <= delay <= 8 for delay in delays)
    assert len(set(delays)) > 100


async def test_a_fire_and_forget_job_is_retried_only_its_retries(app: aqueue.App) -> None:
    attempts: list[int] = []

    @app.task(result_ttl=0, retries=2, backoff=aqueue.backoff.fixed(0))
    async def no_record() -> None:
        attempts.append(aqueue.current_job().attempt)
        raise ConnectionError("down")

    async with aqueue.Worker(app):
        await no_record.enqueue()
        await eventually(lambda: _length_is(attempts, 3))
        await asyncio.sleep(0.3)  # time for a fourth attempt, which must not come
    assert attempts == [1, 2, 3]


async def _length_is(items: list[int], length: int) -> bool:
    return len(items) == length
