"""Checked by mypy (not run): the typed API accepts what it should and rejects what it should."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
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
    assert_type(await add.options(priority=9).enqueue(1, 2), aqueue.Job[int])
    add.options(priority="high")  # type: ignore[arg-type]
    assert_type(await add.enqueue_many([(1, 2), (3, 4)]), list[aqueue.Job[int]])
    assert_type(app.job("default:0"), aqueue.Job[Any])
    assert_type(await app.enqueue("emails.send", "a@b.c"), aqueue.Job[Any])
    assert_type(await job.cancel(), bool)
    async for info in job.events():
        assert_type(info, aqueue.JobInfo)
    assert_type(await add.options(expires=timedelta(minutes=5)).enqueue(1, 2), aqueue.Job[int])
    add.options(expires="soon")  # type: ignore[arg-type]

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


@app.task(priority=2)
async def backfill(day: str) -> int:
    return 0


async def priorities() -> None:
    assert_type(await backfill.enqueue("2024-01-01"), aqueue.Job[int])
    assert_type(await backfill.options(priority=0).enqueue("2024-01-01"), aqueue.Job[int])
    assert_type((await app.queue().stats()).queued_by_priority[9], int)
    aqueue.Worker(app, starvation_guard=10)
    aqueue.Worker(app, starvation_guard="often")  # type: ignore[arg-type]
    app.task(priority="low")  # type: ignore[call-overload]


class Pool:
    async def close(self) -> None: ...


DB = aqueue.ResourceKey[Pool]("db")


@app.on_worker_start
async def open_db(worker: aqueue.Worker) -> None:
    worker.provide(DB, Pool())
    worker.provide(DB, "not a pool")  # type: ignore[misc]


@app.on_worker_stop
def close_db(worker: aqueue.Worker) -> None:
    assert_type(worker.resource(DB), Pool)


@app.on_worker_start  # type: ignore[type-var]
async def takes_no_worker() -> None: ...


async def hooks_keep_their_type() -> None:
    assert_type(await open_db(aqueue.Worker(app)), None)
    hook: aqueue.WorkerHook = close_db
    assert_type(hook, Callable[[aqueue.Worker], Awaitable[None] | None])


async def task_context() -> None:
    job = aqueue.current_job()
    assert_type(job.resource(DB), Pool)
    assert_type(job.metadata, Mapping[str, str])
    job.resource("db")  # type: ignore[arg-type]


class Tenancy(aqueue.Middleware):
    def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
        job.metadata["tenant"] = "acme"
        job.metadata["attempts"] = 1  # type: ignore[assignment]

    async def around_run(self, job: aqueue.JobContext, call_next: aqueue.CallNext) -> Any:
        assert_type(job.metadata["tenant"], str)
        return await call_next()

    async def on_retried(self, job: aqueue.JobContext, error: Exception, delay: float) -> None: ...


class WrongSignal(aqueue.Middleware):
    async def on_failed(self, job: aqueue.JobContext) -> None: ...  # type: ignore[override]


app.add_middleware(Tenancy())
app.add_middleware(Tenancy)  # type: ignore[arg-type]


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
