"""aqueue: Redis Streams, consumer group, fenced ack-late; worker: ``aqueue worker``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aqueue

from ._common import RESULTS, SLEEP, URL, record, tool

DISTRIBUTIONS = ("aqueue", "redis", "hiredis", "orjson", "uvloop")
HAS_BATCH = True

# BENCH_RESULTS=0 is aqueue's fire-and-forget mode: result_ttl=0 keeps no job record at all.
# BENCH_EVENTS=1 keeps the event stream; BENCH_METRICS=1 adds the Prometheus middleware: what
# monitoring costs, measured beside the plain run.
app = aqueue.App(
    URL,
    namespace="bench",
    result_ttl=3600 if RESULTS else 0,
    # Passed only when asked: scaling.py runs this adapter on older checkouts too.
    **({"events": True} if os.environ.get("BENCH_EVENTS") == "1" else {}),
)
if os.environ.get("BENCH_METRICS") == "1":
    from aqueue.contrib.prometheus import Metrics

    app.add_middleware(Metrics())


@app.task(name="noop")
async def noop(i: int) -> None:
    record(i)


@app.task(name="sleep")
async def sleep(i: int) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    record(i, started)


@app.task(name="echo", result_ttl=3600)
async def echo(i: int) -> int:
    return i + 1


TASKS = {"noop": noop, "sleep": sleep, "echo": echo}


# BENCH_QUEUES=Q spreads the tasks over Q queues (q0 .. q{Q-1}) that every worker serves:
# benchmarks/scaling.py measures one queue and several side by side.
def queue_names(count: int) -> list[str]:
    return [f"q{k}" for k in range(count)] if count > 1 else [app.default_queue]


QUEUE_NAMES = queue_names(int(os.environ.get("BENCH_QUEUES", "1")))

# BENCH_AQUEUE_PROCESSES=N runs each worker as `aqueue worker -p N`: N processes under one
# supervisor (compare with the scale2/scale4 rows, which start N separate workers).
PROCESSES = int(os.environ.get("BENCH_AQUEUE_PROCESSES", "1"))


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [
        tool("aqueue"),
        "worker",
        "peers.aqueue:app",
        "-c",
        str(concurrency),
        *(["-p", str(PROCESSES)] if PROCESSES > 1 else []),
        "--log-level",
        "WARNING",
        *(arg for queue in QUEUE_NAMES for arg in ("-q", queue)),
    ]


def settings(kind: str, concurrency: int) -> str:
    ttl = "result_ttl=3600" if RESULTS else "result_ttl=0"
    processes = f" -p {PROCESSES}" if PROCESSES > 1 else ""
    return f"`aqueue worker -c {concurrency}{processes}` (uvloop), {ttl}"


class Client:
    async def open(self) -> None:
        await app.queue().stats()  # connects

    async def close(self) -> None:
        await app.close()

    async def enqueue(self, kind: str, i: int) -> Any:
        return await TASKS[kind].enqueue(i)

    async def enqueue_batch(self, kind: str, indices: list[int]) -> None:
        task = TASKS[kind]
        for k, queue in enumerate(QUEUE_NAMES):
            share = indices[k :: len(QUEUE_NAMES)]
            if share:
                await task.options(queue=queue).enqueue_many([(i,) for i in share])

    async def result(self, handle: Any, timeout: float) -> Any:
        return await handle.result(timeout=timeout)

    async def queued(self) -> int:
        return sum([(await app.queue(queue).stats()).queued for queue in QUEUE_NAMES])

    async def unfinished(self) -> int:
        """Tasks whose outcome is not written yet: queued, or read and not acked."""
        counts = [await app.queue(queue).stats() for queue in QUEUE_NAMES]
        return sum(stats.queued + stats.running for stats in counts)
