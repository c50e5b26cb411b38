"""An app whose tasks, routes and schedules name several queues, for the CLI tests."""

from __future__ import annotations

import os

import aqueue

app = aqueue.App(
    namespace=os.environ.get("AQUEUE_TEST_NAMESPACE", "cli"),
    routes={"reports.*": "reports", "billing.*": "billing"},
)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="emails", name="emails.send")
async def send(to: str) -> str:
    return f"sent to {to}"


@app.task(name="reports.weekly")
async def weekly() -> str:
    return "reported"


@app.cron("0 0 1 1 *", queue="yearly", name="yearly.cleanup")
async def cleanup() -> None: ...
