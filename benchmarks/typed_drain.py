"""Drain rate of tasks with typed arguments against tasks with JSON ones.

    .venv/bin/python benchmarks/typed_drain.py [--n 20000] [--reps 5] [--only untyped]

Each repetition prefills one queue with ``n`` jobs of a task, then times an in-process
worker (concurrency 100) draining it, for each kind in turn, on a fresh server of its own
(Debian's redis-server when on the PATH, else the embedded Valkey). The typed task takes a
datetime, a UUID and a dataclass, which are converted at enqueue and back on the worker; the
untyped one takes the same values as JSON (a str, a str and a dict), so both send the same
bytes and only the conversion differs. Prints each kind's median rate and CPU time per job,
and the medians of the per-repetition ratios (the machine's speed drifts over a run; a pair
runs seconds apart).
``--only untyped`` measures the untyped kind alone, to compare two checkouts of aqueue
(run it with ``PYTHONPATH`` pointing at each).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aqueue
from aqueue.testing import RedisServer


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def drain(url: str, kind: str, n: int) -> tuple[float, float]:
    """Jobs per second an in-process worker drains from a queue prefilled with ``n``, and
    the microseconds of this process's CPU time each job took (steadier than the rate on a
    shared machine: it leaves out the time other processes had the CPU)."""
    app = aqueue.App(url, namespace=f"bench{uuid.uuid4().hex[:8]}", result_ttl=0)
    done = asyncio.Event()
    count = 0

    def ran() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    @app.task(name="untyped")
    async def untyped(when: str, job: str, point: dict[str, int]) -> None:
        ran()

    @app.task(name="typed")
    async def typed(when: datetime, job: uuid.UUID, point: Point) -> None:
        ran()

    now, job = datetime.now(UTC), uuid.uuid4()
    if kind == "typed":
        await typed.enqueue_many([(now, job, Point(i, i)) for i in range(n)])
    else:
        calls = [(now.isoformat(), str(job), {"x": i, "y": i}) for i in range(n)]
        await untyped.enqueue_many(calls)
    started, cpu = time.perf_counter(), time.process_time()
    async with aqueue.Worker(app, concurrency=100):
        await done.wait()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await app.close()
    return n / elapsed, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--only", choices=["untyped", "typed"])
    options = parser.parse_args()
    kinds = [options.only] if options.only else ["untyped", "typed"]
    launch = RedisServer.redis if shutil.which("redis-server") else RedisServer.valkey
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(options.reps):
        for kind in kinds:
            with launch() as server:
                # A short drain first: the first run in a process pays for imports and for
                # loading the scripts into the server.
                asyncio.run(drain(server.url, kind, 500))
                rate, cpu_per_job = asyncio.run(drain(server.url, kind, options.n))
                rates[kind].append(rate)
                cpu[kind].append(cpu_per_job)
    summary: dict[str, Any] = {}
    for kind in kinds:
        summary[f"{kind} jobs/s"] = round(statistics.median(rates[kind]))
        summary[f"{kind} cpu us/job"] = round(statistics.median(cpu[kind]), 1)
    if len(kinds) == 2:
        for name, values in (("rate", rates), ("cpu", cpu)):
            ratios = [t / u for u, t in zip(values["untyped"], values["typed"], strict=True)]
            summary[f"typed / untyped {name}"] = round(statistics.median(ratios), 3)
    print(summary)


if __name__ == "__main__":
    main()
