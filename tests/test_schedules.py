"""Periodic tasks: each tick fires exactly once however many workers run, on the server's clock."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

import aqueue
from tests.helpers import tick_of
from tests.internals import cron_schedule


def test_a_five_field_cron_ticks_on_minutes_in_its_timezone() -> None:
    schedule = cron_schedule("t", "30 9 * * *", "Europe/Paris", "skip")
    start = datetime(2026, 7, 1, 0, 0, tzinfo=UTC).timestamp()
    tick = datetime.fromtimestamp(schedule.next_after(start), UTC)
    assert tick == datetime(2026, 7, 1, 7, 30, tzinfo=UTC)  # 09:30 in Paris, summer time


def test_a_six_field_cron_has_seconds_first() -> None:
    schedule = cron_schedule("t", "*/10 * * * * *", "UTC", "skip")
    start = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC).timestamp()
    assert schedule.next_after(start) == start + 7


@pytest.mark.parametrize("expression", ["* * *", "61 * * * *", "every minute"])
def test_an_invalid_cron_expression_is_refused(expression: str) -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="invalid cron expression"):
        app.cron(expression)


def test_an_unknown_timezone_is_refused() -> None:
    with pytest.raises(aqueue.ConfigurationError, match="unknown timezone"):
        aqueue.App().cron("* * * * *", timezone="Mars/Olympus")


def test_a_periodic_task_is_refused_without_the_arguments_it_needs() -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match="that fit its signature"):

        @app.periodic(every=1)
        async def needs(x: int) -> None: ...


async def test_three_workers_fire_each_tick_exactly_once(app: aqueue.App) -> None:
    runs: list[float] = []

    @app.periodic(every=timedelta(seconds=0.3))
    async def heartbeat() -> None:
        runs.append(aqueue.current_job().enqueued_at.timestamp())

    async with aqueue.Worker(app), aqueue.Worker(app), aqueue.Worker(app):
        started = time.time()
        await asyncio.sleep(2.0)
        ended = time.time()
    ticks = {tick_of(at, 0.3) for at in runs}
    assert len(runs) == len(ticks)  # no tick ran twice
    # Counted while all three ran: the first fires ticks while the others start, which takes
    # a while on a busy machine (on a Cluster most: each worker connects to every master).
    expected = int(ended / 0.3) - int(started / 0.3)
    assert expected - 1 <= len([at for at in runs if at >= started]) <= expected + 1


async def test_a_cron_tick_runs_close_to_its_time(app: aqueue.App) -> None:
    lateness: list[float] = []

    @app.cron("* * * * * *")  # every second
    async def every_second() -> None:
        lateness.append(time.time() % 1.0)

    async with aqueue.Worker(app):
        await asyncio.sleep(2.5)
    assert len(lateness) >= 2
    assert max(lateness) < 0.2  # ~100 ms under no load, plus slack for a busy CI machine


async def test_a_missed_tick_runs_once_when_a_worker_starts_with_run_once(
    app: aqueue.App, redis: Redis
) -> None:
    runs = 0

    @app.periodic(every=3600, misfire="run_once", name="hourly")
    async def hourly() -> None:
        nonlocal runs
        runs += 1

    # The last tick fired two hours ago: the ticks since were missed with no worker running.
    two_hours_ago = (time.time() // 3600 - 2) * 3600
    await redis.set(f"{app.namespace}:cron:hourly:last", repr(two_hours_ago))
    async with aqueue.Worker(app), aqueue.Worker(app):
        await asyncio.sleep(0.5)
    assert runs == 1


async def test_missed_ticks_are_skipped_by_default(app: aqueue.App, redis: Redis) -> None:
    runs = 0

    @app.periodic(every=3600, name="hourly-skip")
    async def hourly() -> None:
        nonlocal runs
        runs += 1

    two_hours_ago = (time.time() // 3600 - 2) * 3600
    await redis.set(f"{app.namespace}:cron:hourly-skip:last", repr(two_hours_ago))
    async with aqueue.Worker(app):
        await asyncio.sleep(0.5)
    assert runs == 0


def test_a_cron_expression_that_never_matches_is_refused() -> None:
    with pytest.raises(aqueue.ConfigurationError, match="never matches"):
        aqueue.App().cron("0 0 30 2 *")


def test_the_hour_repeated_when_daylight_saving_ends_is_one_tick() -> None:
    schedule = cron_schedule("t", "30 2 * * *", "Europe/Paris", "skip")
    first = schedule.next_after(datetime(2024, 10, 27, 0, 0, tzinfo=UTC).timestamp())
    second = schedule.next_after(first)
    assert second - first == 3600  # 02:30 happens twice that night...
    assert schedule.tick_id(first) == schedule.tick_id(second)  # ...and fires once


def test_the_latest_tick_is_found_without_walking_every_missed_tick() -> None:
    schedule = cron_schedule("t", "* * * * * *", "UTC", "skip")
    now = datetime(2026, 1, 1, 12, 0, 0, 400_000, tzinfo=UTC).timestamp()
    assert schedule.latest_until(now) == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
