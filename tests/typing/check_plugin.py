"""Checked by mypy (not run): the pytest plugin's assertions check arguments against the task."""

from __future__ import annotations

from typing import assert_type

import aqueue
from aqueue.pytest_plugin import EnqueuedJobs

app = aqueue.App()


@app.task
async def send(to: str, *, subject: str = "") -> None: ...


def check(jobs: EnqueuedJobs) -> None:
    jobs.assert_enqueued(send, "a@b.c", subject="hi")
    jobs.assert_enqueued(send, 1)  # type: ignore[arg-type]
    jobs.assert_enqueued(send, "a@b.c", title="hi")  # type: ignore[call-arg]
    assert_type(jobs.of(send), list[aqueue.OutgoingJob])
    assert_type(jobs.of("emails.send"), list[aqueue.OutgoingJob])
    assert_type(jobs.enqueued, list[aqueue.OutgoingJob])
