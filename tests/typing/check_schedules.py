"""Checked by mypy (not run): periodic tasks with arguments, as a type checker sees them."""

from __future__ import annotations

from typing import assert_type

import aqueue

app = aqueue.App()


@app.cron("@daily", args=("weekly",), kwargs={"to": "ops@example.com"})
async def digest(kind: str, *, to: str) -> None: ...


async def scheduled_tasks_with_arguments_are_tasks() -> None:
    assert_type(await digest.enqueue("daily", to="me@example.com"), aqueue.Job[None])


app.cron("@daily", args=("weekly"))  # type: ignore[arg-type]  # a string: the comma is missing
app.periodic(every=60, kwargs=[("size", 5)])  # type: ignore[arg-type]
