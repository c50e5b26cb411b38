"""streaq: Redis Streams with consumer groups and Lua; worker: ``streaq run``."""

from __future__ import annotations

import time
from typing import Any

import anyio
from streaq import Worker

from ._common import CONCURRENCY, RESULTS, SLEEP, URL, record, tool

DISTRIBUTIONS = ("streaq", "coredis", "anyio", "uvloop")
HAS_BATCH = True  # Worker.enqueue_many: one pipeline

worker = Worker(
    redis_url=URL,
    concurrency=CONCURRENCY,
    anyio_kwargs={"use_uvloop": True},
)
# ttl is how long a result is kept; 0 keeps none. silent: no log line per task.
TTL = 300 if RESULTS else 0


@worker.task(name="noop", ttl=TTL, silent=True)
async def noop(i: int) -> None:
    record(i)


@worker.task(name="sleep", ttl=TTL, silent=True)
async def sleep(i: int) -> None:
    started = time.time()
    await anyio.sleep(SLEEP)
    record(i, started)


@worker.task(name="echo", ttl=300, silent=True)
async def echo(i: int) -> int:
    return i + 1


TASKS = {"noop": noop, "sleep": sleep, "echo": echo}


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [tool("streaq"), "run", "peers.streaq:worker"]


def settings(kind: str, concurrency: int) -> str:
    return f"concurrency={concurrency} (prefetch as default), ttl={TTL}, silent tasks (uvloop)"


class Client:
    async def open(self) -> None:
        self._context = worker.__asynccontextmanager__()
        await self._context.__aenter__()

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)

    async def enqueue(self, kind: str, i: int) -> Any:
        return await TASKS[kind].enqueue(i)

    async def enqueue_batch(self, kind: str, indices: list[int]) -> None:
        await worker.enqueue_many([TASKS[kind].enqueue(i) for i in indices])

    async def result(self, handle: Any, timeout: float) -> Any:
        return (await handle.result(timeout=timeout)).result

    async def queued(self) -> int:
        return int(await worker.queue_size())
