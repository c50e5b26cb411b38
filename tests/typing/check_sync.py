"""Checked by mypy (not run): the synchronous producer checks arguments as the async one does."""

from __future__ import annotations

from typing import Any, assert_type

import aqueue
from aqueue.sync import SyncApp, SyncJob

app = aqueue.App()
queue = SyncApp(app)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


def producer() -> None:
    job = queue.enqueue(add, 2, 3)
    assert_type(job, SyncJob[int])
    assert_type(job.result(timeout=1), int)
    assert_type(job.status(), aqueue.JobStatus)
    assert_type(job.info(), aqueue.JobInfo)
    assert_type(job.cancel(), bool)
    assert_type(job.job, aqueue.Job[int])
    assert_type(queue.enqueue(add.options(delay=30), 1, 2), SyncJob[int])
    assert_type(queue.enqueue_by_name("emails.send", "a@b.c"), SyncJob[Any])
    assert_type(queue.job("default:0"), SyncJob[Any])
    assert_type(queue.run(app.queue().stats()), aqueue.QueueStats)

    queue.enqueue(add, "2", 3)  # type: ignore[arg-type]
    queue.enqueue(add, 2)  # type: ignore[call-arg]
    queue.enqueue(add, 2, 3, z=4)  # type: ignore[call-arg]
