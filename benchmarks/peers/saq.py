"""saq: job ids in a list, BLMOVE to an active list, job state in a key; worker: ``saq``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from saq import Queue

from ._common import CONCURRENCY, RESULTS, SLEEP, URL, record, tool, use_uvloop

DISTRIBUTIONS = ("saq", "redis", "hiredis", "uvloop")
HAS_BATCH = False  # Queue.map enqueues many but also waits for all their results

use_uvloop()
# BENCH_QUEUE names the queue (benchmarks/idle.py: one per worker process, as saq serves one).
queue = Queue.from_url(URL, name=os.environ.get("BENCH_QUEUE", "default"))

# A job's ttl is how long its state (and result) is kept after it finishes; -1 deletes it.
TTL = 600 if RESULTS else -1


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    record(i)


async def sleep(ctx: dict[str, Any], *, i: int) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    record(i, started)


async def echo(ctx: dict[str, Any], *, i: int) -> int:
    return i + 1


SETTINGS = {"queue": queue, "functions": [noop, sleep, echo], "concurrency": CONCURRENCY}


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [tool("saq"), "peers.saq.SETTINGS", "--quiet"]


def settings(kind: str, concurrency: int) -> str:
    return f"concurrency={concurrency}, job ttl={TTL} (uvloop)"


class Client:
    async def open(self) -> None:
        await queue.connect()

    async def close(self) -> None:
        await queue.disconnect()

    async def enqueue(self, kind: str, i: int) -> Any:
        return await queue.enqueue(kind, i=i, ttl=600 if kind == "echo" else TTL)

    async def result(self, handle: Any, timeout: float) -> Any:
        await handle.refresh(until_complete=timeout)
        return handle.result

    async def queued(self) -> int:
        return int(await queue.redis.llen(queue.namespace("queued")))
