"""The app the worker-process tests run: counts every run of a job, to find a lost or a
repeated one; logs from inside a job; grows on demand."""

from __future__ import annotations

import asyncio
import logging
import os

import aqueue

app = aqueue.App(namespace=os.environ.get("AQUEUE_TEST_NAMESPACE", "procs"), lease=1.5)

logger = logging.getLogger("procs_app")


@app.task
async def work(n: int, seconds: float) -> int:
    """Counts this run of job ``n`` under ``<namespace>:runs``, sleeps, returns ``n``."""
    await app.redis.hincrby(f"{app.namespace}:runs", str(n), 1)
    await asyncio.sleep(seconds)
    return n


@app.task
async def chatty(n: int) -> None:
    logger.info("working on %d", n)
