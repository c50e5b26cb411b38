"""Redis Cluster: ``redis+cluster://`` URLs, their clients, and the fast path per node.

Commands go through redis-py's cluster client, which routes each by its key's slot and
follows MOVED and ASK itself. Script calls and the hot path's plain commands go through
:class:`ClusterCalls`: a :class:`~._direct.DirectCalls` per master, each call sent to the
master of its first key's slot (every key of a call shares that slot: see ``_keys.py``). A
call a master refuses with MOVED (the slot moved: a resharding, a failover) is sent again to
the new owner once the slot map is read again; one refused with ASK (the slot is moving, its
key already went) goes to the importing master behind an ASKING.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from redis import Redis as SyncRedis
from redis import __version__ as redis_version
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from ..exceptions import ConfigurationError
from ._direct import Batches, DirectCalls
from ._errors import REDIS_ERRORS, redact
from ._scripts import Call

logger = logging.getLogger("aqueue.cluster")

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""Each cluster scheme and the scheme of its nodes' connections."""

REDIRECTS = 5
"""How many times one call follows MOVED, ASK or TRYAGAIN before its error is the caller's.
A slot moves once per resharding step; more redirects than this mean a slot map in flux."""

TRY_AGAIN_PAUSE = 0.05
"""Seconds before a call refused with TRYAGAIN (its keys are split by a migration in
progress) is first sent again: the migration moves the rest of them meanwhile. The pause
doubles at each try, so the last of :data:`REDIRECTS` comes about 1.5 s after the first."""


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def check_workers_supported(url: str) -> None:
    """Refuse a worker on a cluster when redis-py cannot subscribe through its asyncio cluster
    client (before 8.0), which the worker's remote control listens with."""
    if is_cluster(url) and not hasattr(RedisCluster, "pubsub"):
        raise ConfigurationError(
            f"a worker on a Redis Cluster needs redis-py 8.0 or newer (redis-py {redis_version} "
            "has no asyncio cluster pub/sub): pip install -U 'redis>=8' (producers work with "
            "the redis-py you have)"
        )


def check_cluster_url(url: str, what: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` of each startup node in ``url``; ConfigurationError when malformed."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    example = f"{parts.scheme}://[user:password@]host1:7000,host2:7001"
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"{what}: each node of a cluster URL is host:port, as in {example}, "
                f"not {node!r} in {redact(url)!r}"
            )
        nodes.append((host.strip("[]"), int(port)))
    # A cluster has one database, 0: anything else would be refused at the first command.
    if parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            f"{what}: a Redis Cluster has database 0 only; leave the path out, as in {example}"
        )
    return nodes


def _node_url(url: str) -> str:
    """``url`` for its first node alone (``redis://`` or ``rediss://``), query kept: redis-py
    reads the user, password and TLS options from it."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    first = hosts.split(",")[0]
    return urlunsplit((SCHEMES[parts.scheme], f"{userinfo}{at}{first}", "", parts.query, ""))


def cluster_client(url: str, *, max_connections: int, **options: Any) -> Redis:
    """An asyncio cluster client for ``url``, with ``max_connections`` per node.

    Typed as :class:`redis.asyncio.Redis`: the cluster client serves the same command methods,
    routing each by its key's slot. Code that needs the cluster itself (the fast path, the
    blocking reads) checks with :func:`as_cluster`.
    """
    startup = [ClusterNode(host, port) for host, port in check_cluster_url(url, "the URL")]
    client = RedisCluster.from_url(
        _node_url(url), startup_nodes=startup, max_connections=max_connections, **options
    )
    return cast("Redis", client)


def sync_cluster_client(url: str, *, timeout: float) -> SyncRedis:
    """A blocking cluster client for a thread, every wait bounded by ``timeout``."""
    nodes = check_cluster_url(url, "the URL")
    startup = [SyncClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
    client = SyncRedisCluster.from_url(
        _node_url(url),
        startup_nodes=startup,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    return cast("SyncRedis", client)


def as_cluster(client: Redis) -> RedisCluster | None:
    """``client`` as the cluster client it is, or None for a single server."""
    return client if isinstance(client, RedisCluster) else None


def slot_groups(client: Redis, keys: Iterable[bytes]) -> dict[int, list[bytes]]:
    """``keys`` grouped by slot, in order, for commands that may name keys of one slot only
    (a blocking read of many streams); one group on a single server."""
    if as_cluster(client) is None:
        return {0: list(keys)}
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return groups


def topology_of(client: RedisCluster) -> Topology:
    """The one :class:`Topology` of ``client``, shared by the fast path, a worker's reads and
    the result waiters: a change is read once for all of them."""
    # Kept on the client, so that it lives exactly as long (the client's nodes refer back to
    # the client: a table of topologies would keep every client alive).
    topology: Topology | None = getattr(client, _TOPOLOGY, None)
    if topology is None:
        topology = Topology(client)
        setattr(client, _TOPOLOGY, topology)
    return topology


class Topology:
    """The slot map of one cluster client, read again once per change however many callers
    meet the change at once."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._nodes = client.nodes_manager
        self._refreshed = 0
        self._lock = asyncio.Lock()

    async def ready(self) -> None:
        """Read the slot map once, before the first call: by the client's own first
        initialize, which also reads the command table that routes the commands whose keys
        redis-py finds there (XAUTOCLAIM): had it read the slot map alone, the client would
        call itself ready and fail those with an AttributeError."""
        if not self._nodes.slots_cache:
            async with self._lock:
                if not self._nodes.slots_cache:
                    await self._read(self._client.initialize())

    def seen(self) -> int:
        """A mark to pass to :meth:`refresh`: the map callers work from now."""
        return self._refreshed

    async def refresh(self, seen: int) -> None:
        """Read the slot map again, unless another caller did since ``seen``."""
        async with self._lock:
            if self._refreshed == seen:
                await self._read(self._nodes.initialize())

    async def _read(self, reading: Awaitable[object]) -> None:
        try:
            await reading
        except RedisClusterException as exc:
            raise _outage(exc) from exc
        self._refreshed += 1

    def master(self, key: bytes) -> ClusterNode:
        """The master serving ``key``'s slot, as the slot map says."""
        try:
            return self._nodes.get_node_from_slot(key_slot(key))
        except RedisClusterException as exc:
            raise _outage(exc) from exc

    def node(self, host: str, port: int) -> ClusterNode | None:
        return self._nodes.get_node(host, port)


def _outage(error: RedisClusterException) -> RedisConnectionError:
    """A cluster whose slot map is incomplete for now (no node answers, or a slot has no
    master during a failover): an outage to wait out and try again, like a lost server."""
    return RedisConnectionError(f"the Redis Cluster cannot serve every slot now: {error}")


_TOPOLOGY = "_aqueue_topology"


def command_key(parts: Sequence[Any]) -> bytes:
    """The key that routes a plain command of the fast path (its first key)."""
    words = [part if isinstance(part, bytes) else str(part).encode() for part in parts]
    name = words[0].upper()
    if name == b"XINFO":
        return words[2]
    if name in (b"XREAD", b"XREADGROUP"):
        return words[[word.upper() for word in words].index(b"STREAMS") + 1]
    return words[1]


_Send = Callable[[DirectCalls, list[Any]], Awaitable[list[Any]]]


class ClusterCalls(Batches):
    """:class:`~._direct.DirectCalls` over a cluster: each call on its slot's master."""

    def __init__(self, client: RedisCluster, limit: int) -> None:
        self._topology = topology_of(client)
        self._limit = limit
        self._nodes: dict[tuple[str, bool], DirectCalls] = {}
        """Each master's fast path, and (under True) the one that sends ASKING first."""

    async def run(self, calls: Iterable[Call]) -> list[Any]:
        def send(direct: DirectCalls, part: list[Any]) -> Awaitable[list[Any]]:
            return direct.run(part)

        items = list(calls)
        return await self._routed(items, [call.keys[0] for call in items], send)

    async def commands(
        self, commands: Sequence[Sequence[Any]], *, errors_in_place: bool = False
    ) -> list[Any]:
        def send(direct: DirectCalls, part: list[Any]) -> Awaitable[list[Any]]:
            return direct.commands(part, errors_in_place=True)

        replies = await self._routed(list(commands), [command_key(c) for c in commands], send)
        if not errors_in_place:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def close(self) -> None:
        nodes, self._nodes = self._nodes, {}
        for direct in nodes.values():
            await direct.close()

    async def _routed(self, items: list[Any], keys: list[bytes], send: _Send) -> list[Any]:
        """``items`` sent in order, each run of consecutive items of one master in one round
        trip; the redirected ones sent again where the server says."""
        topology = self._topology
        await topology.ready()
        replies: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        asked: dict[int, ClusterNode] = {}  # item -> the master an ASK sent it to
        for attempt in range(REDIRECTS + 1):
            seen = topology.seen()
            redo: list[int] = []
            moved = try_again = False
            for node, asking, run in self._runs(todo, keys, asked):
                try:
                    got = await send(self._direct(node, asking), [items[i] for i in run])
                except REDIS_ERRORS:
                    # A master gone (a failover): the next try must find its successor.
                    await topology.refresh(seen)
                    raise
                for i, reply in zip(run, got, strict=True):
                    replies[i] = reply
                    asked.pop(i, None)
                    if attempt == REDIRECTS:
                        continue
                    if isinstance(reply, MovedError):
                        moved = True
                    elif isinstance(reply, AskError):
                        target = topology.node(reply.host, reply.port)
                        if target is None:
                            moved = True  # a master the map does not know yet
                        else:
                            asked[i] = target
                    elif isinstance(reply, TryAgainError | ClusterDownError):
                        try_again = True
                    else:
                        continue
                    redo.append(i)
            if not redo:
                break
            if moved:
                await topology.refresh(seen)
            if try_again:
                await asyncio.sleep(TRY_AGAIN_PAUSE * 2**attempt)
            todo = redo
        return replies

    def _runs(
        self, todo: list[int], keys: list[bytes], asked: dict[int, ClusterNode]
    ) -> list[tuple[ClusterNode, bool, list[int]]]:
        """``todo`` cut into runs of consecutive items for one master (and one ASKING): a
        batch keeps its order on each master, and across masters too."""
        runs: list[tuple[ClusterNode, bool, list[int]]] = []
        for i in todo:
            node = asked.get(i) or self._topology.master(keys[i])
            asking = i in asked
            if runs and runs[-1][0].name == node.name and runs[-1][1] == asking:
                runs[-1][2].append(i)
            else:
                runs.append((node, asking, [i]))
        return runs

    def _direct(self, node: ClusterNode, asking: bool) -> DirectCalls:
        direct = self._nodes.get((node.name, asking))
        if direct is None:
            direct = DirectCalls(node, self._limit, asking=asking)
            self._nodes[node.name, asking] = direct
        return direct
