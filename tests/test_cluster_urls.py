"""Redis Cluster URLs: ``redis+cluster://h1:p1,h2:p2`` (``rediss+cluster://`` with TLS), checked
where the App is made, before anything reaches a server; and how a call finds its master."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

import aqueue
from tests.internals import command_key


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:7000",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7001/0",
        "rediss+cluster://user:secret@node-a:7000,node-b:7000",
    ],
)
def test_cluster_urls_are_taken(url: str) -> None:
    assert aqueue.App(url).url == url


@pytest.mark.parametrize(
    "url",
    ["redis+cluster://node-a", "redis+cluster://node-a:7000,node-b", "redis+cluster://:7000"],
)
def test_a_cluster_node_without_host_and_port_is_refused(url: str) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="each node of a cluster URL is host:port"):
        aqueue.App(url)


def test_a_cluster_url_with_a_database_is_refused() -> None:
    with pytest.raises(aqueue.ConfigurationError, match="database 0 only"):
        aqueue.App("redis+cluster://node-a:7000/3")


def test_a_refused_cluster_url_shows_no_password() -> None:
    with pytest.raises(aqueue.ConfigurationError) as refused:
        aqueue.App("redis+cluster://user:hunter2@node-a")
    assert "hunter2" not in str(refused.value)


async def test_a_cluster_url_gives_a_cluster_client_starting_from_every_node_named() -> None:
    async with aqueue.App("redis+cluster://user:pw@node-a:7000,node-b:7001") as app:
        client = app.redis
        assert isinstance(client, RedisCluster)
        startup = client.nodes_manager.startup_nodes.values()
        assert {(n.host, n.port) for n in startup} == {("node-a", 7000), ("node-b", 7001)}
        assert {n.connection_kwargs["password"] for n in startup} == {"pw"}


async def test_a_tls_cluster_url_connects_to_every_node_with_tls() -> None:
    async with aqueue.App("rediss+cluster://node-a:7000,node-b:7001") as app:
        client = app.redis
        assert isinstance(client, RedisCluster)
        startup = client.nodes_manager.startup_nodes.values()
        assert {n.connection_class for n in startup} == {SSLConnection}


async def test_a_cluster_no_node_of_which_answers_is_a_connection_failure() -> None:
    async with aqueue.App("redis+cluster://127.0.0.1:1") as app:

        @app.task
        async def nothing() -> None: ...

        with pytest.raises(aqueue.ConnectionFailed, match="cannot reach Redis"):
            await nothing.enqueue()


@pytest.mark.parametrize(
    ("command", "key"),
    [
        ((b"HGET", b"ns:{q}:job:1", b"status"), b"ns:{q}:job:1"),
        (("XINFO", "GROUPS", "ns:{q}:stream"), b"ns:{q}:stream"),
        ((b"XREADGROUP", b"GROUP", b"g", b"c", b"COUNT", 5, b"STREAMS", b"s", b">"), b"s"),
    ],
)
def test_a_fast_path_command_is_routed_by_its_first_key(
    command: tuple[bytes | str | int, ...], key: bytes
) -> None:
    assert command_key(command) == key


def test_a_worker_on_a_cluster_with_a_redis_py_too_old_for_its_pub_sub_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # redis-py before 8.0 has no asyncio cluster pub/sub, which the worker's remote control
    # listens with: the worker is refused where it is made, not left without control.
    monkeypatch.delattr(RedisCluster, "pubsub")
    app = aqueue.App("redis+cluster://node-a:7000")

    with pytest.raises(aqueue.ConfigurationError, match=r"pip install -U 'redis>=8'"):
        aqueue.Worker(app)
