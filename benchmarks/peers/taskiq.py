"""taskiq with taskiq-redis's stream broker (consumer groups, XACK); worker: ``taskiq worker``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from ._common import RESULTS, SLEEP, URL, record, tool

DISTRIBUTIONS = ("taskiq", "taskiq-redis", "redis", "hiredis", "uvloop")
HAS_BATCH = False
STREAM = "taskiq"

# Results are a property of the broker: with BENCH_RESULTS=0 it has no result backend.
broker: Any = RedisStreamBroker(URL, queue_name=STREAM)
if RESULTS:
    broker = broker.with_result_backend(RedisAsyncResultBackend(URL, result_ex_time=3600))

# wait_result() polls the result backend; 5 ms instead of the default 0.2 s.
RESULT_POLL = 0.005


@broker.task(task_name="noop")
async def noop(i: int) -> None:
    record(i)


@broker.task(task_name="sleep")
async def sleep(i: int) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    record(i, started)


@broker.task(task_name="echo")
async def echo(i: int) -> int:
    return i + 1


TASKS = {"noop": noop, "sleep": sleep, "echo": echo}


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [
        tool("taskiq"),
        "worker",
        "peers.taskiq:broker",
        "--workers",
        "1",
        "--max-async-tasks",
        str(concurrency),
        "--max-prefetch",
        str(concurrency),
        "--log-level",
        "WARNING",
    ]


def settings(kind: str, concurrency: int) -> str:
    backend = "RedisAsyncResultBackend" if RESULTS else "no result backend"
    return (
        f"RedisStreamBroker, `--workers 1 --max-async-tasks {concurrency} --max-prefetch "
        f"{concurrency}` (uvloop), {backend}, result poll {RESULT_POLL} s"
    )


class Client:
    async def open(self) -> None:
        await broker.startup()  # creates the consumer group, so queued tasks are read later

    async def close(self) -> None:
        await broker.shutdown()

    async def enqueue(self, kind: str, i: int) -> Any:
        return await TASKS[kind].kiq(i)

    async def result(self, handle: Any, timeout: float) -> Any:
        result = await handle.wait_result(timeout=timeout, check_interval=RESULT_POLL)
        if result.is_err:
            raise RuntimeError(f"task failed: {result.error!r}")
        return result.return_value

    async def queued(self) -> int:
        from redis.asyncio import Redis

        async with Redis.from_url(URL) as redis:
            return int(await redis.xlen(STREAM))
