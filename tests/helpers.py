"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode

import aqueue
from aqueue.testing import LocalCluster, RedisServer
from tests.internals import GROUP, Keys, connections_of, scripts
from tests.sentinels import SERVICE, SentinelSet

Deployment = RedisServer | LocalCluster | SentinelSet
"""What the ``server`` fixture is: a single server, or the ``--topology`` under test."""
AdminClient = Redis | RedisCluster
"""A client for looking at what aqueue left in a :data:`Deployment`."""

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as a bytes client reads it: its id and its fields."""


@asynccontextmanager
async def admin_client(deployment: Deployment) -> AsyncIterator[AdminClient]:
    """A client of ``deployment`` made apart from aqueue's own: a cluster client that routes
    by key on a Cluster, the master's (asked of the sentinels) on a Sentinel set."""
    if isinstance(deployment, LocalCluster):
        nodes = [ClusterNode("127.0.0.1", node.port) for node in deployment.nodes]
        async with RedisCluster(startup_nodes=nodes) as cluster:
            yield cluster
    elif isinstance(deployment, SentinelSet):
        sentinel = Sentinel([("127.0.0.1", port) for port in deployment.sentinel_ports])
        try:
            async with sentinel.master_for(SERVICE) as master:
                yield master
        finally:  # the clients of the sentinels themselves, which the master's does not close
            for client in sentinel.sentinels:
                await client.aclose()
    else:
        async with Redis.from_url(deployment.url) as single:
            yield single


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true, failing the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls state in Redis, no event to wait on
            await asyncio.sleep(0.01)


async def keys_of(redis: AdminClient, namespace: str) -> set[bytes]:
    """Every key under ``namespace``."""
    return {key async for key in redis.scan_iter(match=f"{namespace}:*")}


async def has_status(job: aqueue.Job[Any], status: aqueue.JobStatus) -> bool:
    """Whether ``job`` is in ``status`` now (for :func:`eventually`)."""
    return await job.status() is status


async def entries(redis: AdminClient, stream: bytes | str) -> list[Entry]:
    """Every entry of ``stream``, oldest first (XRANGE, typed for a bytes client)."""
    return cast("list[Entry]", await redis.xrange(stream))


async def read_as(
    redis: AdminClient, keys: Keys, consumer: str, count: int | None = None
) -> list[bytes]:
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


async def look(
    app: aqueue.App, keys: Keys, *, cursor: int = 0, batch: int = 500, quiet_ms: int = 0
) -> list[Any]:
    """poll.lua's reply to a worker "looker" that would lead the queue: it moves up to
    ``batch`` due jobs into their streams as a worker's look does."""
    call = scripts.poll(
        delayed=keys.delayed,
        levels=keys.levels,
        cancelled=keys.cancelled,
        paused=keys.paused,
        leader=keys.leader,
        dead=keys.dead,
        followed=keys.followed,
        streams=keys.streams,
        batch=batch,
        cursor=cursor,
        worker="looker",
        lead_ms=1000,
        dead_limit=100,
        quiet_ms=quiet_ms,
    )
    [reply] = await connections_of(app).direct.run([call])
    return cast("list[Any]", reply)


async def pending_count(redis: AdminClient, stream: bytes) -> int:
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
