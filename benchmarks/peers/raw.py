"""The floor, not a peer: bare redis-py LPUSH / BRPOP with no acks, no retries, no records.

The worker (``python -m peers.raw``) blocks on BRPOP and, when it gets an entry, takes up to its
free slots more with one non-blocking RPOP COUNT, so it pays about one round trip per batch as
the queues that read in batches do. A result goes back with LPUSH onto a per-task list that the
client BRPOPs. Whatever a queue library does beyond this costs something; this is how much.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis

from ._common import SLEEP, URL, record, use_uvloop

DISTRIBUTIONS = ("redis", "hiredis", "orjson", "uvloop")
HAS_BATCH = True
QUEUE = "raw:queue"


def _result_key(task_id: str) -> str:
    return f"raw:result:{task_id}"


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [sys.executable, "-m", "peers.raw", "--concurrency", str(concurrency)]


def settings(kind: str, concurrency: int) -> str:
    return f"BRPOP + RPOP COUNT, {concurrency} asyncio tasks at most (uvloop)"


def _payload(kind: str, i: int) -> bytes:
    return orjson.dumps({"id": uuid.uuid4().hex, "task": kind, "args": [i]})


class Client:
    def __init__(self) -> None:
        self._redis = aioredis.Redis.from_url(URL)

    async def open(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    async def enqueue(self, kind: str, i: int) -> Any:
        payload = _payload(kind, i)
        await self._redis.lpush(QUEUE, payload)
        return orjson.loads(payload)["id"]

    async def enqueue_batch(self, kind: str, indices: list[int]) -> None:
        await self._redis.lpush(QUEUE, *(_payload(kind, i) for i in indices))

    async def result(self, handle: Any, timeout: float) -> Any:
        reply = await self._redis.brpop([_result_key(handle)], timeout=timeout)
        if reply is None:
            raise TimeoutError(f"no result for {handle} within {timeout} s")
        return orjson.loads(reply[1])

    async def queued(self) -> int:
        return int(await self._redis.llen(QUEUE))


# -- the worker ------------------------------------------------------------------------------


async def _run(redis: aioredis.Redis, payload: bytes) -> None:
    message = orjson.loads(payload)
    task, (i,) = message["task"], message["args"]
    if task == "noop":
        record(i)
    elif task == "sleep":
        started = time.time()
        await asyncio.sleep(SLEEP)
        record(i, started)
    elif task == "echo":
        await redis.lpush(_result_key(message["id"]), orjson.dumps(i + 1))


async def _work(concurrency: int) -> None:
    redis = aioredis.Redis.from_url(URL, max_connections=concurrency + 8)
    reader = aioredis.Redis.from_url(URL, single_connection_client=True)
    free = concurrency
    slot = asyncio.Event()
    slot.set()
    running: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        nonlocal free
        running.discard(task)
        free += 1
        slot.set()

    while True:
        await slot.wait()
        reply = await reader.brpop([QUEUE], timeout=1)
        if reply is None:
            continue
        batch = [reply[1]]
        if free > 1:
            batch += await reader.rpop(QUEUE, free - 1) or []
        free -= len(batch)
        if free <= 0:
            slot.clear()
        for payload in batch:
            task = asyncio.create_task(_run(redis, payload))
            running.add(task)
            task.add_done_callback(done)


def main() -> None:
    parser = argparse.ArgumentParser(description="the raw LPUSH/BRPOP floor's worker")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    use_uvloop()
    asyncio.run(_work(args.concurrency))


if __name__ == "__main__":
    main()
