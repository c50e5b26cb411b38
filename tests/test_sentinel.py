"""Redis behind Sentinel: ``redis+sentinel://`` URLs, and every client reaching the master
through a real Sentinel set (the failover under load: tests/faults/test_sentinel.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from redis.exceptions import ResponseError

import aqueue
from aqueue._redis._errors import redact
from aqueue.testing import RedisServer
from aqueue.testing import _free_port as free_port
from tests.internals import connections_of
from tests.sentinels import SentinelSet

URL = "redis+sentinel://h1:26379,h2:26380/mymaster/2"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "names no service"),
        ("redis+sentinel://h1:26379/", "names no service"),
        ("redis+sentinel:///mymaster", "names no sentinel"),
        ("redis+sentinel://h1:26379/mymaster/zero", "only the database number"),
        ("redis+sentinel://h1:26379/mymaster/0/more", "only the database number"),
        ("redis+sentinel://h1:port/mymaster", r"no host\[:port\] of a sentinel"),
        ("redis+sentinel://h1:70000/mymaster", "70000 is no port number"),
        # redis-py's own words, quoted differently by its versions.
        ("redis+sentinel://h1/mymaster?socket_timeout=soon", "Invalid value for .socket_timeout."),
    ],
)
def test_a_malformed_sentinel_url_is_refused_with_the_form_to_write(url: str, says: str) -> None:
    with pytest.raises(aqueue.ConfigurationError, match=says) as refused:
        aqueue.App(url)
    assert "SERVICE" in str(refused.value) or "h1:26379,h2:26379" in str(refused.value)


def test_a_sentinel_url_with_a_service_and_a_database_is_taken() -> None:
    assert aqueue.App(URL).url == URL
    assert aqueue.App("redis+sentinel://[::1]:26379,h2/mymaster").url.endswith("/mymaster")
    assert aqueue.App(URL.replace("redis+", "rediss+")).url.startswith("rediss+sentinel://")


def test_a_sentinel_url_logs_without_its_passwords() -> None:
    url = "redis+sentinel://app:secret1@h1:26379/mymaster/0?sentinel_password=secret2"
    shown = redact(url)
    assert "secret" not in shown
    assert shown.startswith("redis+sentinel://app:***@h1:26379/mymaster/0")


@pytest.mark.slow
async def test_a_job_is_enqueued_run_and_its_result_read_through_the_sentinels(
    sentinel_set: SentinelSet, namespace: str
) -> None:
    app = aqueue.App(sentinel_set.url, namespace=namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, aqueue.Worker(app):
        job = await add.enqueue(2, 3)
        assert await job.result(timeout=10) == 5
    async with Redis(port=sentinel_set.master_port()) as master:
        assert await master.exists(f"{namespace}:{{default}}:stream")


@pytest.mark.slow
@pytest.mark.one_loop
async def test_a_job_enqueued_once_a_failover_ends_runs_within_a_second(
    sentinel_set: SentinelSet, namespace: str
) -> None:
    """Both masters refuse writes until the old one is demoted, some 10 s after the switch:
    the worker's reads, refused all along, are tried again often enough to start the first
    job at once (a backoff grown to 5 s made it wait 2.5 to 3 s)."""
    async with aqueue.App(sentinel_set.url, namespace=namespace) as app:

        @app.task
        async def echo(n: int) -> int:
            return n

        async with aqueue.Worker(app):
            assert await (await echo.enqueue(1)).result(timeout=10) == 1
            await asyncio.to_thread(sentinel_set.failover)
            job = await enqueued_once_writes_are_taken(echo, 2, within=30)
            taken = time.monotonic()
            assert await job.result(timeout=10) == 2
            assert time.monotonic() - taken < 1.0


async def enqueued_once_writes_are_taken(
    task: aqueue.Task[[int], int], n: int, *, within: float
) -> aqueue.Job[int]:
    """``task`` enqueued with ``n`` as soon as the master takes the enqueue."""
    async with asyncio.timeout(within):
        while True:
            try:
                return await task.enqueue(n)
            except aqueue.ConnectionFailed:  # refused: nothing was written
                await asyncio.sleep(0.01)


async def test_the_sentinels_get_the_query_s_credentials_and_the_data_nodes_the_url_s() -> None:
    url = "redis+sentinel://app:pw1@h1:26379/mymaster/3?sentinel_username=s&sentinel_password=pw2"
    async with aqueue.App(url) as app:
        pool: Any = app.redis.connection_pool
        [sentinel] = pool.sentinel_manager.sentinels
        told = sentinel.connection_pool.connection_kwargs
        assert (told["username"], told["password"]) == ("s", "pw2")
        node = pool.connection_kwargs
        assert (node["username"], node["password"], node["db"]) == ("app", "pw1", 3)


async def test_a_tls_sentinel_url_makes_tls_connections_to_the_data_nodes() -> None:
    url = "rediss+sentinel://h1:26379/mymaster?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
    async with aqueue.App(url) as app:
        pool: Any = app.redis.connection_pool
        assert issubclass(pool.connection_class, SSLConnection)
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        [sentinel] = pool.sentinel_manager.sentinels
        assert not issubclass(sentinel.connection_pool.connection_class, SSLConnection)


@pytest.mark.slow
async def test_an_acl_user_of_the_data_nodes_works_through_the_sentinels(
    sentinel_set: SentinelSet, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The data nodes get the URL's user and password (the sentinels, none: they have no
    ``requirepass``, and some servers refuse a password they do not need)."""
    user = f"u{namespace}"
    for node in sentinel_set.nodes:
        async with Redis(port=node.port) as admin:
            await admin.acl_setuser(
                user,
                enabled=True,
                passwords=["+pw1"],
                commands=["+@all"],
                keys=["*"],
                channels=["*"],
            )
    app = aqueue.App(
        sentinel_set.url.replace("://", f"://{user}:pw1@"),
        namespace=namespace,
    )

    @app.task
    async def ping() -> str:
        return "pong"

    with caplog.at_level(logging.INFO, logger="aqueue"):
        async with app, aqueue.Worker(app):
            assert await (await ping.enqueue()).result(timeout=10) == "pong"
    assert "pw1" not in caplog.text


@pytest.mark.slow
async def test_a_wrong_password_for_the_data_nodes_names_the_url_without_it(
    sentinel_set: SentinelSet, namespace: str
) -> None:
    app = aqueue.App(sentinel_set.url.replace("://", "://nobody:wrong@"), namespace=namespace)
    async with app:
        with pytest.raises(aqueue.ConnectionFailed, match="refused the credentials") as refused:
            await app.enqueue("anything")
    assert "wrong" not in str(refused.value)


async def test_an_enqueue_refused_by_a_replica_is_a_connection_failure_that_wrote_nothing(
    namespace: str,
) -> None:
    """READONLY: the URL reaches a replica (e.g. the old master, demoted), not a job's fault."""
    with RedisServer.valkey() as replica:
        async with aqueue.App(replica.url, namespace=namespace) as app:
            await app.redis.replicaof("127.0.0.1", free_port())
            with pytest.raises(aqueue.ConnectionFailed, match="Nothing was written: try again"):
                await app.enqueue("anything")


async def test_sentinels_that_cannot_be_reached_fail_the_call_naming_the_service() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/mymaster/0"
    async with aqueue.App(url) as app:
        with pytest.raises(aqueue.ConnectionFailed, match="No master found for 'mymaster'"):
            await app.enqueue("anything")


@pytest.mark.slow
async def test_connections_refused_for_want_of_replicas_ask_the_sentinels_again(
    sentinel_set: SentinelSet, namespace: str
) -> None:
    """NOREPLICAS is what the old master answers once its replica was promoted: the fast
    path's connection and redis-py's are both closed, and the next call opens a new one."""
    async with (
        aqueue.App(sentinel_set.url, namespace=namespace) as app,
        Redis(port=sentinel_set.master_port()) as admin,
    ):
        direct_before = await connections_of(app).direct.command("CLIENT", "ID")
        pooled_before = await app.redis.client_id()
        await admin.config_set("min-replicas-to-write", 2)  # one replica only: refused
        try:
            with pytest.raises(aqueue.ConnectionFailed, match="takes no writes now"):
                await app.enqueue("anything")
            with pytest.raises(ResponseError, match="NOREPLICAS"):
                await app.redis.set(f"{namespace}:x", 1)
        finally:
            await admin.config_set("min-replicas-to-write", 1)
        assert await connections_of(app).direct.command("CLIENT", "ID") != direct_before
        assert await app.redis.client_id() != pooled_before
