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


@app.task
async def total(values: list[int], *, bonus: int = 0) -> int:
    return sum(values) + bonus


@app.task
async def show(value: int, prefix: str) -> str:
    return f"{prefix}{value}"


async def workflows() -> None:
    assert_type(add.s(1, 2), aqueue.Signature[int])
    assert_type(add.s(1), aqueue.Step[int])
    assert_type(add.s(1, 2).options(queue="high", after=["default:0"]), aqueue.Signature[int])
    assert_type(add.s(1).options(timeout=5), aqueue.Step[int])
    add.s(1, 2).options(queue=1)  # type: ignore[arg-type]
    assert_type(await add.s(1, 2).enqueue(), aqueue.Job[int])
    add.s("1", 2)  # type: ignore[call-overload]
    add.s(1, 2, 3)  # type: ignore[call-overload]
    add.s(1).enqueue()  # type: ignore[attr-defined]

    # A chain's job has the last step's result type.
    chain = add.s(1, 2) | add.s(10) | show.s(prefix="n=")
    assert_type(chain, aqueue.Chain[str])
    assert_type(await chain.enqueue(), aqueue.Job[str])
    assert_type(add.s(1, 2) | total.s(), aqueue.Chain[int])  # not caught: int is no list[int]

    assert_type(aqueue.group([add.s(i, i) for i in range(3)]), aqueue.Group[list[int]])
    assert_type(await aqueue.group([add.s(1, 1)]).enqueue(), aqueue.Job[list[int]])
    with_errors = aqueue.group([add.s(1, 1)], return_exceptions=True)
    assert_type(await with_errors.enqueue(), aqueue.Job[list[int | aqueue.TaskFailed]])
    assert_type(aqueue.group([add.s(1, 1) | show.s("x")]), aqueue.Group[list[str]])

    assert_type(aqueue.chord([add.s(1, 1)], total.s(bonus=1)), aqueue.Chord[int])
    assert_type(await aqueue.chord([add.s(1, 1)], show.s("x")).enqueue(), aqueue.Job[str])
    aqueue.chord([add.s(1, 1)], total.s(bonus="1"))  # type: ignore[call-overload]
    aqueue.group([add.s(1, 1), 3])  # type: ignore[arg-type]
    assert_type(await add.options(after=[await add.enqueue(1, 2)]).enqueue(1, 2), aqueue.Job[int])
