"""What a worker says and does as it starts."""

from __future__ import annotations

import asyncio
import logging

import pytest

import aqueue
from tests.helpers import eventually


async def test_the_banner_names_tasks_queues_schedules_and_the_url_without_its_password(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = aqueue.App("redis://user:secret@127.0.0.1:1/0", namespace=namespace)

    @app.task(queue="emails", name="emails.send")
    async def send(to: str) -> None: ...

    @app.cron("*/5 * * * *", name="report")
    async def report() -> None: ...

    with caplog.at_level(logging.INFO, logger="aqueue"), pytest.raises(aqueue.ConnectionFailed):
        async with app, aqueue.Worker(app, queues=["default", "emails"]):
            pass
    banner = caplog.records[0].getMessage()
    assert "redis://user:***@127.0.0.1:1/0, namespace " + namespace in banner
    assert "queues:     default, emails" in banner
    assert "tasks:      emails.send (emails), report (default)" in banner
    assert "schedules:  report: cron */5 * * * * (UTC)" in banner
    assert "secret" not in caplog.text


async def test_a_wait_for_redis_cancelled_leaves_no_task_of_the_worker_behind(
    namespace: str,
) -> None:
    """Its backoff and its watch for a stop end with it."""
    app = aqueue.App("redis://127.0.0.1:1/0", namespace=namespace)
    before = asyncio.all_tasks()
    waiting = asyncio.create_task(aqueue.Worker(app)._reach_redis(wait=True))

    async def backing_off() -> bool:  # it failed to connect, and waits to try again
        return len(asyncio.all_tasks() - before) > 1

    await eventually(backing_off)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert asyncio.all_tasks() - before == set()
    await app.close()
