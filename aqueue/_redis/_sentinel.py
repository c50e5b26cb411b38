"""Redis behind Sentinel: ``redis+sentinel://`` URLs, and clients that follow a failover.

Every client made here asks the sentinels for the master each time it opens a connection
(redis-py's ``SentinelConnectionPool``), so a connection opened after a failover reaches the
new master. A connection still open to the old one learns of the switch from its replies:
``READONLY`` (the old master demoted) and ``NOREPLICAS`` (an old master cut off from the
replica that was promoted, when the servers set ``min-replicas-to-write``) drop it, and the
next one asks the sentinels again. The caller sees the refusal (nothing was written) and
retries as after any outage: the worker keeps its outcomes and starts until a server takes
them.

URL form: ``redis+sentinel://[user:password@]host1:26379,host2:26379/SERVICE[/db]``, with
``rediss+sentinel://`` for TLS to the data nodes. The user and password are the data
nodes'; sentinels that need their own give them as query parameters, ``sentinel_username``
and ``sentinel_password``. Other query parameters are redis-py's connection options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis import Redis as SyncRedis
from redis import sentinel as sync_sentinel
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio import sentinel as async_sentinel
from redis.asyncio.connection import SSLConnection
from redis.connection import SSLConnection as SyncSSLConnection
from redis.connection import parse_url

from ..exceptions import ConfigurationError
from ._errors import not_master, redact
from ._pools import ClosedForGood

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
"""A sentinel's port when the URL names none (Sentinel's own default)."""
_SENTINEL_QUERY = {"sentinel_username": "username", "sentinel_password": "password"}
"""Query parameters meant for the sentinels, and the connection options they become."""
_SENTINEL_TIMEOUT = 5.0
"""Seconds a sentinel may take to answer: a silent one is skipped for the next."""
_HOST = re.compile(r"^(?:\[(?P<ipv6>[^\]]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL says: where the sentinels are, which service's
    master to ask them for, and how to connect to the sentinels and to the data nodes."""

    sentinels: list[tuple[str, int]]
    service: str
    node_options: dict[str, Any]
    """The data nodes' connection options: user, password, database, TLS."""
    sentinel_options: dict[str, Any]
    tls: bool


def parse(url: str, what: str) -> SentinelURL:
    """The parts of ``url``; a :class:`ConfigurationError` naming ``what`` when malformed."""
    parts = urlsplit(url)
    shown = redact(url)
    form = f"{parts.scheme}://[user:password@]host1:26379,host2:26379/SERVICE[/db]"
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = [_sentinel(host, what, shown) for host in hosts.split(",") if host]
    if not sentinels:
        raise ConfigurationError(f"{what} names no sentinel: write {form}, not {shown!r}")
    path = [unquote(segment) for segment in parts.path.strip("/").split("/")] if parts.path else []
    if not path or not path[0]:
        raise ConfigurationError(
            f"{what} names no service: its path is the name the sentinels monitor the master "
            f"under (`sentinel monitor NAME ...`), as in {form}, not {shown!r}"
        )
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigurationError(
            f"{what}: after the service name comes only the database number, as in {form}, "
            f"not {shown!r}"
        )
    sentinel_options: dict[str, Any] = {}
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in _SENTINEL_QUERY:
            sentinel_options[_SENTINEL_QUERY[name]] = value
        else:
            query.append((name, value))
    tls = parts.scheme == "rediss+sentinel"
    userinfo = parts.netloc.rpartition("@")[0]
    # redis-py reads the data nodes' options (credentials, database, TLS and the rest of the
    # query) from a URL of one node: the same rules as for redis:// URLs, read in one place.
    node = f"{'rediss' if tls else 'redis'}://{userinfo}{'@' if userinfo else ''}sentinel-node"
    node += f"/{path[1] if len(path) == 2 else 0}?{urlencode(query)}"
    try:
        node_options = parse_url(node)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigurationError(
            f"{what}: {exc} (in {shown!r}). Its query holds redis-py's connection options "
            "with valid values (e.g. ssl_ca_certs=/path), and sentinel_username and "
            f"sentinel_password for the sentinels: {form}?name=value"
        ) from exc
    for given_by_the_sentinels in ("host", "port", "connection_class"):
        node_options.pop(given_by_the_sentinels, None)
    return SentinelURL(sentinels, path[0], node_options, sentinel_options, tls)


def _sentinel(host: str, what: str, shown: str) -> tuple[str, int]:
    found = _HOST.match(host)
    if found is None:
        raise ConfigurationError(
            f"{what}: {host!r} is no host[:port] of a sentinel (in {shown!r}); separate "
            "sentinels with commas, as in h1:26379,h2:26379"
        )
    port = int(found["port"] or DEFAULT_PORT)
    if not 0 < port < 65536:
        raise ConfigurationError(
            f"{what}: {port} is no port number (in {shown!r}); write each sentinel as "
            "host:port, as in h1:26379,h2:26379"
        )
    return found["ipv6"] or found["name"], port


class _FollowingConnection(async_sentinel.SentinelManagedConnection):
    """A master's connection that also leaves on ``NOREPLICAS`` (redis-py leaves on
    ``READONLY`` only): an old master refuses so once its replica was promoted, and the
    next connection must ask the sentinels again rather than wait for it to be demoted."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # A connection kept by its client (a single-connection client: the worker's reader)
        # and closed reconnects here. redis-py 8 reconnects to its last address, skipping
        # the sentinels: after a failover, the old master again and again.
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except Exception as exc:
            if not_master(exc):
                await self.disconnect()
            raise


class _FollowingTLSConnection(_FollowingConnection, SSLConnection):
    pass


class _Pool(ClosedForGood, async_sentinel.SentinelConnectionPool, BlockingConnectionPool):
    """A master's blocking pool that owns its sentinels' clients, closing them with itself
    (and, closed, every connection handed back to it: see ``_pools.py``)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        # Only a full disconnect is the pool's end: a new master's address disconnects the
        # idle connections alone (inuse_connections=False).
        if inuse_connections:
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


class _SyncFollowingConnection(sync_sentinel.SentinelManagedConnection):
    """The same as :class:`_FollowingConnection`, for a thread's blocking client (which takes
    a connection from its pool for each call: connected there, it asks the sentinels)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except Exception as exc:
            if not_master(exc):
                self.disconnect()  # type: ignore[no-untyped-call]
            raise


class _SyncFollowingTLSConnection(_SyncFollowingConnection, SyncSSLConnection):
    pass


class _SyncPool(sync_sentinel.SentinelConnectionPool):
    """The same as :class:`_Pool`, for a thread's blocking client."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections:
            for client in self.sentinel_manager.sentinels:
                client.close()


def client(
    url: str,
    options: dict[str, Any],
    *,
    max_connections: int | None = None,
    single_connection: bool = False,
) -> Redis:
    """An asyncio client of the master of ``url``'s service. Its pool is a blocking one, of
    ``max_connections`` (redis-py's default when None): a burst of callers waits for a free
    connection."""
    target = parse(url, "the Redis URL")
    manager = async_sentinel.Sentinel(
        target.sentinels, sentinel_kwargs=_sentinel_kwargs(target, options), **options
    )
    sizing: dict[str, Any] = {"timeout": None}
    if max_connections is not None:
        sizing["max_connections"] = max_connections
    pool = _Pool(  # type: ignore[no-untyped-call]
        target.service,
        manager,
        connection_class=_FollowingTLSConnection if target.tls else _FollowingConnection,
        **sizing,
        **target.node_options,
        **options,
    )
    made = Redis(connection_pool=pool, single_connection_client=single_connection)
    made.auto_close_connection_pool = True  # as Redis.from_pool: closing it closes the pool
    return made


def thread_client(url: str, options: dict[str, Any]) -> SyncRedis:
    """A blocking client of the master of ``url``'s service, for a thread."""
    target = parse(url, "the Redis URL")
    manager = sync_sentinel.Sentinel(
        target.sentinels, sentinel_kwargs=_sentinel_kwargs(target, options), **options
    )
    connection = _SyncFollowingTLSConnection if target.tls else _SyncFollowingConnection
    pool = _SyncPool(  # type: ignore[no-untyped-call]
        target.service, manager, connection_class=connection, **target.node_options, **options
    )
    return SyncRedis.from_pool(pool)


def _sentinel_kwargs(target: SentinelURL, options: dict[str, Any]) -> dict[str, Any]:
    # Bounded: discovery moves on to the next sentinel when one does not answer in time.
    return {
        **options,
        "socket_timeout": _SENTINEL_TIMEOUT,
        "socket_connect_timeout": _SENTINEL_TIMEOUT,
        **target.sentinel_options,
    }
