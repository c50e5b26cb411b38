"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

import aqueue


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true, failing the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls state in Redis, no event to wait on
            await asyncio.sleep(0.01)


async def keys_of(redis: Redis, namespace: str) -> set[bytes]:
    """Every key under ``namespace``."""
    return {key async for key in redis.scan_iter(match=f"{namespace}:*")}


async def has_status(job: aqueue.Job[Any], status: aqueue.JobStatus) -> bool:
    """Whether ``job`` is in ``status`` now (for :func:`eventually`)."""
    return await job.status() is status
