"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis

import aqueue
from tests.internals import GROUP, Keys

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as a bytes client reads it: its id and its fields."""


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


async def entries(redis: Redis, stream: bytes | str) -> list[Entry]:
    """Every entry of ``stream``, oldest first (XRANGE, typed for a bytes client)."""
    return cast("list[Entry]", await redis.xrange(stream))


async def read_as(redis: Redis, keys: Keys, consumer: str, count: int | None = None) -> list[bytes]:
    """Read the queue's new entries as ``consumer`` of the workers' group (created if need be),
    as a worker's fetcher does; their ids. The entries stay pending for that consumer."""
    await redis.xgroup_create(keys.stream, GROUP, id="0", mkstream=True)
    reply = await redis.xreadgroup(GROUP, consumer, {keys.stream: ">"}, count=count)
    pairs = reply.items() if isinstance(reply, dict) else reply
    return [
        entry_id
        for _, read in cast("list[tuple[bytes, list[Entry]]]", pairs)
        for entry_id, _ in read
    ]


async def pending_count(redis: Redis, stream: bytes) -> int:
    """How many entries of ``stream`` the workers' group has delivered and not acked."""
    summary: dict[str, Any] = await redis.xpending(stream, GROUP)
    return int(summary["pending"])


def hiding(directory: Path, package: str) -> Path:
    """``directory``, made to hide ``package``: first on ``PYTHONPATH``, it makes a process
    import ``package`` as if it were not installed (to run the CLI without an extra)."""
    (directory / package).mkdir()
    (directory / package / "__init__.py").write_text(
        f"raise ModuleNotFoundError({f'No module named {package!r}'!r}, name={package!r})\n"
    )
    return directory


def tick_of(enqueued_at: float, every: float) -> int:
    """The tick of a periodic task's schedule (every ``every`` seconds) that a job enqueued at
    ``enqueued_at`` (epoch seconds) was fired for: ticks are fired at or after their time,
    on the server's clock, as is a job's enqueue time. (A task's own run time would do only
    while it runs within half a tick of it, which a loaded machine does not promise.)"""
    return math.floor(enqueued_at / every + 1e-6)
