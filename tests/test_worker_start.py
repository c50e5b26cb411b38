"""What a worker says and does as it starts."""

from __future__ import annotations

import logging

import pytest

import aqueue


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
