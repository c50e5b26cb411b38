"""Checked by mypy (not run): the typed API accepts what it should and rejects what it should."""

from __future__ import annotations

from typing import Any, assert_type

import aqueue

app = aqueue.App()


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="emails", retries=3)
async def send(to: str, *, subject: str = "") -> None: ...


@app.task
def checksum(data: bytes) -> str:
    return data.hex()


async def producer() -> None:
    assert_type(await checksum.enqueue(b"x"), aqueue.Job[str])
    job = await add.enqueue(2, 3)
    assert_type(job, aqueue.Job[int])
    assert_type(await job.result(timeout=1), int)
    assert_type(await job.status(), aqueue.JobStatus)
    assert_type(await send.enqueue("a@b.c", subject="hi"), aqueue.Job[None])
    assert_type(await add.options(queue="high").enqueue(1, 2), aqueue.Job[int])
    assert_type(await add.options(delay=30).enqueue(1, 2), aqueue.Job[int])
    await add.options(delay=30).enqueue(1, "2")  # type: ignore[arg-type]
    assert_type(await add.enqueue_many([(1, 2), (3, 4)]), list[aqueue.Job[int]])
    assert_type(app.job("default:0"), aqueue.Job[Any])
    assert_type(await app.enqueue("emails.send", "a@b.c"), aqueue.Job[Any])

    await add.enqueue("2", 3)  # type: ignore[arg-type]
    await add.enqueue(2)  # type: ignore[call-arg]
    await add.enqueue(2, 3, 4)  # type: ignore[call-arg]
    await send.enqueue("a@b.c", subject=1)  # type: ignore[arg-type]
    await send.enqueue("a@b.c", cc="x")  # type: ignore[call-arg]
    await checksum.enqueue("text")  # type: ignore[arg-type]


@app.cron("*/5 * * * *", timezone="Europe/Paris")
async def report() -> None: ...


@app.periodic(every=60)
def sweep() -> int:
    return 0


async def periodic_tasks_are_tasks() -> None:
    assert_type(await report.enqueue(), aqueue.Job[None])
    assert_type(await sweep.options(key="once").enqueue(), aqueue.Job[int])
    await report.enqueue(1)  # type: ignore[call-arg]


@app.task(rate_limit="100/s", max_concurrency=5)
async def limited(n: int) -> int:
    return n


@app.task(rate_limit=2.5)
async def per_second() -> None: ...


async def limited_tasks_are_tasks() -> None:
    assert_type(await limited.enqueue(1), aqueue.Job[int])
    await limited.enqueue("1")  # type: ignore[arg-type]


app.task(max_concurrency="5")  # type: ignore[call-overload]
app.task(rate_limit=["100/s"])  # type: ignore[call-overload]
