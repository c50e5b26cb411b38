"""Retry timing: the observed waits between attempts follow the backoff policy."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

import aqueue
from tests.internals import Keys

pytestmark = pytest.mark.slow

# Promotion runs every 50 ms and a worker takes a few ms more to pick the job up; the rest
# is room for a loaded CI machine. Waiting less than the policy says is never allowed.
SLACK = 0.3


async def attempt_gaps(
    app: aqueue.App, policy: aqueue.backoff.Backoff, attempts: int
) -> list[float]:
    started: list[float] = []

    @app.task(retries=attempts - 1, backoff=policy)
    async def failing() -> None:
        started.append(time.monotonic())
        raise ConnectionError("still down")

    async with aqueue.Worker(app):
        with pytest.raises(aqueue.TaskFailed):
            await (await failing.enqueue()).result(timeout=30)
    return [later - earlier for earlier, later in itertools.pairwise(started)]


async def test_fixed_backoff_waits_the_same_each_time(
    app: aqueue.App, report: Callable[..., None]
) -> None:
    gaps = await attempt_gaps(app, aqueue.backoff.fixed(0.3), attempts=4)
    assert all(0.3 <= gap <= 0.3 + SLACK for gap in gaps), gaps
    report(policy="fixed(0.3)", gaps_s=[round(gap, 3) for gap in gaps])


async def test_exponential_backoff_doubles_up_to_its_cap(
    app: aqueue.App, report: Callable[..., None]
) -> None:
    policy = aqueue.backoff.exponential(base=0.1, factor=2, max=0.5, jitter=False)
    gaps = await attempt_gaps(app, policy, attempts=5)
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4, 0.5], strict=True):
        assert expected <= gap <= expected + SLACK, gaps
    report(policy="exponential(0.1, 2, max 0.5)", gaps_s=[round(gap, 3) for gap in gaps])


async def test_full_jitter_waits_stay_under_the_exponential_ceiling(
    app: aqueue.App, report: Callable[..., None]
) -> None:
    policy = aqueue.backoff.exponential(base=0.2, factor=2, max=1.0)
    gaps = await attempt_gaps(app, policy, attempts=4)
    for gap, ceiling in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert 0 <= gap <= ceiling + SLACK, gaps
    report(policy="exponential(0.2, 2, jitter)", gaps_s=[round(gap, 3) for gap in gaps])


async def test_a_hundred_worker_restarts_leave_no_consumer_and_lose_nothing(
    app: aqueue.App, report: Callable[..., None]
) -> None:
    @app.task
    async def echo(n: int) -> int:
        return n

    jobs = []
    for n in range(100):
        async with aqueue.Worker(app):
            jobs.append(await echo.enqueue(n))
    async with aqueue.Worker(app):
        results = [await job.result(timeout=10) for job in jobs]
    consumers = await app.redis.xinfo_consumers(Keys(app.namespace, "default").stream, "aqueue")
    assert results == list(range(100))
    assert consumers == []
    report(restarts=100, enqueued=100, completed=len(results), lost=0, consumers_left=0)
