"""Periodic tasks with arguments, and the cron nicknames (@hourly, @daily, ...)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

import aqueue
from tests.internals import cron_schedule

NOON = datetime(2026, 3, 18, 12, 34, 56, tzinfo=UTC)  # a Wednesday


async def test_a_cron_task_receives_its_arguments_on_each_tick(app: aqueue.App) -> None:
    received: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    @app.cron("* * * * * *", args=("weekly",), kwargs={"to": "ops@example.com"})
    async def report(kind: str, *, to: str) -> None:
        received.put_nowait((kind, to))

    async with aqueue.Worker(app):
        first = await asyncio.wait_for(received.get(), 5)
    assert first == ("weekly", "ops@example.com")


async def test_an_interval_task_receives_its_arguments_on_each_tick(app: aqueue.App) -> None:
    received: asyncio.Queue[int] = asyncio.Queue()

    @app.periodic(every=0.2, kwargs={"size": 50})
    async def sweep(size: int) -> None:
        received.put_nowait(size)

    async with aqueue.Worker(app):
        first = await asyncio.wait_for(received.get(), 5)
    assert first == 50


def test_a_periodic_task_is_refused_when_its_arguments_do_not_bind() -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match=r"cannot be called with args=\('a', 'b'\)"):

        @app.cron("@daily", args=("a", "b"))
        async def report(kind: str) -> None: ...

    assert not app.tasks  # nothing half-registered


def test_a_periodic_argument_that_cannot_be_encoded_is_refused_when_decorated() -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.SerializationError, match="argument 'since'"):

        @app.cron("@daily", kwargs={"since": object()})
        async def report(since: object) -> None: ...


@pytest.mark.parametrize(
    ("nickname", "next_tick"),
    [
        ("@hourly", datetime(2026, 3, 18, 13, tzinfo=UTC)),
        ("@daily", datetime(2026, 3, 19, tzinfo=UTC)),
        ("@midnight", datetime(2026, 3, 19, tzinfo=UTC)),
        ("@weekly", datetime(2026, 3, 22, tzinfo=UTC)),  # Sunday
        ("@monthly", datetime(2026, 4, 1, tzinfo=UTC)),
        ("@yearly", datetime(2027, 1, 1, tzinfo=UTC)),
        ("@annually", datetime(2027, 1, 1, tzinfo=UTC)),
        ("@HOURLY", datetime(2026, 3, 18, 13, tzinfo=UTC)),
    ],
)
def test_a_cron_nickname_ticks_when_crontab_says(nickname: str, next_tick: datetime) -> None:
    schedule = cron_schedule("t", nickname, "UTC", "skip")
    assert schedule.next_after(NOON.timestamp()) == next_tick.timestamp()


def test_a_cron_nickname_is_read_in_the_schedules_timezone() -> None:
    schedule = cron_schedule("t", "@daily", "Europe/Paris", "skip")
    tick = datetime.fromtimestamp(schedule.next_after(NOON.timestamp()), UTC)
    assert tick == datetime(2026, 3, 18, 23, tzinfo=UTC)  # midnight in Paris, winter time


@pytest.mark.parametrize("nickname", ["@minutely", "@reboot", "@ hourly"])
def test_an_unknown_cron_nickname_is_refused_with_the_known_ones(nickname: str) -> None:
    with pytest.raises(aqueue.ConfigurationError, match=r"unknown cron nickname.*@hourly"):
        aqueue.App().cron(nickname)


async def test_an_hourly_task_fires_its_missed_tick_on_the_server(
    app: aqueue.App, redis: Redis
) -> None:
    runs: asyncio.Queue[str] = asyncio.Queue()

    @app.cron("@hourly", misfire="run_once", args=("hourly",), name="rollup")
    async def rollup(period: str) -> None:
        runs.put_nowait(period)

    # The last tick fired two hours ago: the ticks since were missed with no worker running.
    two_hours_ago = (time.time() // 3600 - 2) * 3600
    await redis.set(f"{app.namespace}:cron:rollup:last", repr(two_hours_ago))
    async with aqueue.Worker(app):
        assert await asyncio.wait_for(runs.get(), 5) == "hourly"


def test_a_bare_cron_decorator_says_it_needs_its_schedule() -> None:
    app = aqueue.App()
    with pytest.raises(aqueue.ConfigurationError, match=r"needs its schedule"):

        @app.cron  # type: ignore[arg-type]
        async def report() -> None: ...
