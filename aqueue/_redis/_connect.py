"""How aqueue connects to Redis: every client it makes is made here, from the app's URL.

One home, so that a new kind of deployment (Sentinel, Cluster) changes how connections are
made in one place and every client follows: the app's pool, a worker's reader, its control
subscription and its lease thread.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from ..exceptions import ConfigurationError
from . import _sentinel
from ._cluster import SCHEMES as CLUSTER_SCHEMES
from ._cluster import (
    ClusterCalls,
    as_cluster,
    check_cluster_url,
    cluster_client,
    sync_cluster_client,
)
from ._direct import Batches, DirectCalls
from ._errors import redact
from ._pools import SharedPool

# Bounded waits: a server that went silent (a partition, a blackholed host) surfaces as
# ConnectionFailed instead of a call that hangs: connecting times out after 5 s, and TCP
# keepalive probes notice a dead peer after about 11 s. No socket_timeout (redis-py's default
# is 5 s): with one, redis-py wraps every send in asyncio.wait_for, a task per command.
_KEEPALIVE = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3}
_SOCKET_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": None}
_TCP_KEEPALIVE: dict[str, Any] = {
    "socket_keepalive": True,
    "socket_keepalive_options": {
        getattr(socket, name): value for name, value in _KEEPALIVE.items() if hasattr(socket, name)
    },
}
_URL_SCHEMES = ("redis", "rediss", "unix")


def check_url(url: str, variable: str | None) -> str:
    """``url`` if it is a Redis URL; the error names ``variable`` when it came from there."""
    what = "the Redis URL" if variable is None else f"the Redis URL in {variable}"
    schemes = (*_URL_SCHEMES, *_sentinel.SCHEMES, *CLUSTER_SCHEMES)
    if not isinstance(url, str) or urlsplit(url).scheme not in schemes:
        shown = redact(url) if isinstance(url, str) else repr(url)
        raise ConfigurationError(
            f"{what} must start with redis://, rediss:// (TLS), unix://, "
            f"redis+sentinel:// (rediss+sentinel:// with TLS) or, for a Redis Cluster, "
            f"redis+cluster:// (rediss+cluster:// with TLS), not {shown!r}"
        )
    parts = urlsplit(url)
    if parts.scheme in _sentinel.SCHEMES:
        _sentinel.parse(url, what)
        return url
    if parts.scheme in CLUSTER_SCHEMES:
        check_cluster_url(url, what)
        return url
    # redis-py reads a path that is no number as database 0: the jobs would go elsewhere.
    database = "" if parts.scheme == "unix" else parts.path.strip("/")
    if database and not database.isdigit():
        raise ConfigurationError(
            f"{what}: its path is the database number, as in redis://localhost:6379/0, "
            f"not {database!r} in {redact(url)!r}"
        )
    return url


def _socket_options(url: str) -> dict[str, Any]:
    """The connection options of every asyncio client aqueue makes for ``url``.

    A ``unix://`` socket has no network between client and server, so nothing for keepalive
    probes to notice; redis-py's unix connections refuse the keepalive options outright.
    """
    if urlsplit(url).scheme == "unix":
        return dict(_SOCKET_TIMEOUTS)
    return {**_SOCKET_TIMEOUTS, **_TCP_KEEPALIVE}


def shared_client(url: str, *, max_connections: int) -> Redis:
    """The app's client: commands, script calls and subscriptions share its pool."""
    if _is_sentinel(url):
        return _sentinel.client(url, _socket_options(url), max_connections=max_connections)
    if _is_cluster(url):
        return cluster_client(url, max_connections=max_connections, **_socket_options(url))
    # A blocking pool: a burst of callers waits for a free connection instead of failing
    # with "Too many connections" or opening thousands of sockets.
    pool = SharedPool.from_url(
        url, max_connections=max_connections, timeout=None, **_socket_options(url)
    )
    return Redis.from_pool(pool)


def own_client(url: str, *, single_connection: bool = False) -> Redis:
    """A client of its own, for a long blocking read or a subscription outside the pool.

    On a cluster, for the remote-control listener: its subscription and its answers need a
    connection or two on a node. (A worker's blocking reads are made per slot, each on a
    connection to the slot's master: see ``_worker/_reads.py``.)"""
    if _is_sentinel(url):
        return _sentinel.client(url, _socket_options(url), single_connection=single_connection)
    if _is_cluster(url):
        return cluster_client(url, max_connections=4, **_socket_options(url))
    return Redis.from_url(url, single_connection_client=single_connection, **_socket_options(url))


def thread_client(url: str, *, timeout: float) -> SyncRedis:
    """A blocking client for a thread (the lease renewer), every wait bounded by ``timeout``."""
    timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if _is_sentinel(url):
        return _sentinel.thread_client(url, timeouts)
    if _is_cluster(url):
        return sync_cluster_client(url, timeout=timeout)
    return SyncRedis.from_url(url, **timeouts)


def fast_path(client: Redis, *, limit: int) -> Batches:
    """The script calls and plain commands of ``client``'s server (or cluster) on connections
    of aqueue's own (see ``_direct.py``), at most ``limit`` round trips at once (per node)."""
    cluster = as_cluster(client)
    if cluster is not None:
        return ClusterCalls(cluster, limit)
    return DirectCalls(client.connection_pool, limit)


def _is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in _sentinel.SCHEMES


def _is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES
