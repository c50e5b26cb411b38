"""arq: jobs in a sorted set that workers poll; worker: ``arq peers.arq.WorkerSettings``."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import func

from ._common import CONCURRENCY, RESULTS, SLEEP, URL, record, tool, use_uvloop

DISTRIBUTIONS = ("arq", "redis", "hiredis", "uvloop")
HAS_BATCH = False
# BENCH_QUEUE names the queue (benchmarks/idle.py: one per worker process, as arq serves one).
QUEUE = os.environ.get("BENCH_QUEUE", "arq:queue")

# arq polls: the worker looks for new jobs, and job.result() for a result, every poll delay
# (0.5 s by default). A short delay is the documented way to make arq fast. BENCH_ARQ_POLL
# sets another (benchmarks/idle.py measures the default too).
POLL = float(os.environ.get("BENCH_ARQ_POLL", "0.005"))

use_uvloop()


async def noop(ctx: dict[str, Any], i: int) -> None:
    record(i)


async def sleep(ctx: dict[str, Any], i: int) -> None:
    started = time.time()
    await asyncio.sleep(SLEEP)
    record(i, started)


async def echo(ctx: dict[str, Any], i: int) -> int:
    return i + 1


class WorkerSettings:
    functions = (noop, sleep, func(echo, keep_result=3600))
    redis_settings = RedisSettings.from_dsn(URL)
    max_jobs = CONCURRENCY
    queue_name = QUEUE
    poll_delay = POLL
    keep_result = 3600 if RESULTS else 0


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["console"], "level": "WARNING"}},
}


def worker_argv(kind: str, concurrency: int) -> list[str]:
    return [tool("arq"), "peers.arq.WorkerSettings", "--custom-log-dict", "peers.arq.LOG_CONFIG"]


def settings(kind: str, concurrency: int) -> str:
    keep = "keep_result=3600" if RESULTS else "keep_result=0"
    return f"max_jobs={concurrency}, poll_delay={POLL}, {keep}, result poll {POLL} s (uvloop)"


class Client:
    async def open(self) -> None:
        self._redis = await create_pool(RedisSettings.from_dsn(URL))

    async def close(self) -> None:
        await self._redis.aclose()

    async def enqueue(self, kind: str, i: int) -> Any:
        return await self._redis.enqueue_job(kind, i)

    async def result(self, handle: Any, timeout: float) -> Any:
        return await handle.result(timeout=timeout, poll_delay=POLL)

    async def queued(self) -> int:
        return int(await self._redis.zcard(QUEUE))
