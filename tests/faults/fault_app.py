"""The app fault tests run in real worker processes; configured through the environment."""

from __future__ import annotations

import asyncio
import os
import signal

from redis.exceptions import RedisError

import aqueue

app = aqueue.App(
    namespace=os.environ.get("FAULT_NAMESPACE", "faults"),
    lease=float(os.environ.get("FAULT_LEASE", "2")),
    max_deliveries=int(os.environ.get("FAULT_MAX_DELIVERIES", "5")),
)


# Retried when its own Redis call fails (a server restart): as a real task would be.
@app.task(retries=10, retry_on=(RedisError, OSError), backoff=aqueue.backoff.fixed(0.2))
async def work(n: int, seconds: float) -> int:
    """Counts every run of job ``n`` (to find duplicates), sleeps, returns ``2 * n``."""
    await app.redis.hincrby(f"{app.namespace}:runs", str(n), 1)
    await asyncio.sleep(seconds)
    return 2 * n


@app.task
async def held(n: int) -> int:
    """Counts every run of job ``n`` and ends once the test sets ``release:<attempt>``: a run
    that lasts until the test is done with it, however slow the machine. Returns ``2 * n``."""
    await app.redis.hincrby(f"{app.namespace}:runs", str(n), 1)
    release = f"{app.namespace}:release:{aqueue.current_job().attempt}"
    while not await app.redis.exists(release):  # noqa: ASYNC110 - a key the test sets
        await asyncio.sleep(0.05)
    return 2 * n


@app.task
async def suicide() -> None:
    """Kills the worker running it, every time: a poison message."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
async def header(n: int) -> int:
    """A chord's header job: counts its runs; jobs 5 and up hang on their first attempt (to
    be killed mid-run), the others and every later attempt end at once. Returns ``2 * n``."""
    await app.redis.hincrby(f"{app.namespace}:runs", str(n), 1)
    if n >= 5 and aqueue.current_job().attempt == 1:
        await asyncio.sleep(60)
    return 2 * n


@app.task
async def collect(values: list[int]) -> int:
    """A chord's callback: counts its runs (to find duplicates), returns the sum."""
    await app.redis.incr(f"{app.namespace}:callback_runs")
    return sum(values)
