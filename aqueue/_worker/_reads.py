"""The fetcher's blocking read: one XREADGROUP on a connection of its own, or on a cluster
one per slot.

One XREADGROUP may only name streams of one slot on a Redis Cluster (CROSSSLOT otherwise),
and each queue has a slot of its own (its hash tag). So on a cluster the streams are grouped
by slot, each group read on its own connection to the slot's master, all at once. A read
returns as soon as one of them does; the others stay in flight and are collected by a later
read (so nothing waits for another slot's BLOCK, and no CLIENT UNBLOCK is needed, which a
minimal ACL user may not send). What they take while the worker has no free slot goes back to
its queue as it comes (:meth:`BlockingReads.taken`; see _fetcher.py), and what they take as
the worker stops is handed back too (:meth:`BlockingReads.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, RedisError, ResponseError, TryAgainError

from .._app import App
from .._redis._cluster import TRY_AGAIN_PAUSE, as_cluster, slot_groups, topology_of
from .._redis._connect import own_client
from .._redis._errors import REDIS_ERRORS
from .._redis._keys import GROUP

Pairs = list[tuple[bytes, Any]]
"""A read's streams, each with its entries (as redis-py parses XREADGROUP's reply)."""


class _Connection:
    """A client on one connection, and its id there (for CLIENT UNBLOCK)."""

    def __init__(self, client: Redis, node: str | None = None) -> None:
        self.client = client
        self.node = node
        """The cluster node it is connected to (its name), None on a single server."""
        self.id: int | None = None
        self.reading = False

    async def read(
        self,
        consumer: str,
        streams: dict[Any, Any],
        count: int,
        block: int,
        interrupted: Callable[[], bool],
    ) -> Pairs:
        if self.id is None:
            # Its first read: an unblock while the id is asked could not reach it.
            self.id = await self.client.client_id()
            if interrupted():
                return []
        self.reading = True
        try:
            reply: Any = await self.client.xreadgroup(
                GROUP, consumer, streams, count=count, block=block
            )
        finally:
            self.reading = False
        # RESP3 replies with a map of streams, RESP2 with a list of pairs.
        return list(reply.items()) if isinstance(reply, dict) else list(reply or ())


class BlockingReads:
    """Blocks until any of the worker's streams has entries, or :meth:`unblock`."""

    def __init__(self, app: App) -> None:
        self._redis = app.redis
        self._url = app.url
        cluster = as_cluster(app.redis)
        self._topology = None if cluster is None else topology_of(cluster)
        self._connections: dict[int | None, _Connection] = {}
        """By slot on a cluster; the one connection under None on a single server."""
        self._in_flight: dict[int, asyncio.Task[Pairs]] = {}
        """A cluster's reads not collected yet, by slot."""
        self._interrupted = False
        """Set by :meth:`unblock`: the next read returns at once, read or not."""

    async def read(
        self, consumer: str, streams: dict[bytes, bytes], *, count: int, block: int
    ) -> Pairs:
        """Up to ``count`` new entries of each of ``streams``, waiting up to ``block`` ms;
        none at once after an :meth:`unblock` that came since the last read."""
        if self._interrupted:
            # An unblock that found no read in flight (the fetcher was between reads): its
            # caller changed what to read (a pause, a stop), and ``streams`` may predate it.
            self._interrupted = False
            return []
        if self._topology is None:
            connection = self._connection(None)
            return await connection.read(consumer, streams, count, block, self._was_interrupted)
        await self._topology.ready()
        groups = {
            slot: {stream: streams[stream] for stream in group}
            for slot, group in slot_groups(self._redis, streams).items()
        }
        for slot, group in groups.items():
            if slot not in self._in_flight:
                read = self._read_slot(slot, consumer, group, count, block)
                self._in_flight[slot] = asyncio.create_task(read)
        await asyncio.wait(self._in_flight.values(), return_when=asyncio.FIRST_COMPLETED)
        return self._collect()

    @property
    def in_flight(self) -> bool:
        """Whether reads of a cluster's slots are out, not collected yet (a single server's
        one read is never out between calls of :meth:`read`)."""
        return bool(self._in_flight)

    async def taken(self) -> Pairs:
        """Wait until a read still in flight ends; what the reads that ended took. Cancelled
        meanwhile, it leaves the reads in flight."""
        await asyncio.wait(self._in_flight.values(), return_when=asyncio.FIRST_COMPLETED)
        return self._collect()

    def _collect(self) -> Pairs:
        """What the reads that ended took; the first error when none took anything (entries
        read come first: the failed slot is read again, and fails again, next time)."""
        pairs: Pairs = []
        failed: BaseException | None = None
        for slot, read in list(self._in_flight.items()):
            if read.done():
                del self._in_flight[slot]
                if read.cancelled():
                    continue
                error = read.exception()
                if error is None:
                    pairs.extend(read.result())
                else:
                    failed = failed or error
        if failed is not None and not pairs:
            raise failed
        return pairs

    async def drain(self) -> Pairs:
        """End the reads still in flight (the worker stops) and return what they took, to be
        handed back."""
        if not self._in_flight:
            return []
        await self.unblock()
        # Each ends by itself (unblocked, or at its BLOCK): never cancelled mid-reply.
        await asyncio.wait(self._in_flight.values())
        try:
            return self._collect()
        except (RedisError, OSError):  # every error a read can meet
            return []  # what a failed read took stays pending: reclaimed after its lease

    async def _read_slot(
        self, slot: int, consumer: str, streams: dict[bytes, bytes], count: int, block: int
    ) -> Pairs:
        assert self._topology is not None
        seen = self._topology.seen()
        connection = await self._slot_connection(slot, next(iter(streams)))
        try:
            return await connection.read(consumer, streams, count, block, self._was_interrupted)
        except MovedError:
            # The slot moved (a resharding): read it where it went from the next read on.
            await self._drop(slot)
            await self._topology.refresh(seen)
            return []
        except (AskError, TryAgainError):
            # The slot is moving, some of its streams went already: read it again once the
            # move is over (the fast path starts what waits meanwhile, following ASK).
            await asyncio.sleep(TRY_AGAIN_PAUSE)
            return []
        except REDIS_ERRORS:
            # Its master went away (a failover): the next read finds its successor.
            await self._drop(slot)
            await self._topology.refresh(seen)
            raise

    async def _slot_connection(self, slot: int, key: bytes) -> _Connection:
        assert self._topology is not None
        node = self._topology.master(key)
        connection = self._connections.get(slot)
        if connection is not None and connection.node != node.name:
            await self._drop(slot)
            connection = None
        if connection is None:
            pool = ConnectionPool(
                connection_class=node.connection_class, max_connections=1, **node.connection_kwargs
            )
            client = Redis.from_pool(pool)
            connection = self._connections[slot] = _Connection(client, node.name)
        return connection

    def _connection(self, slot: int | None) -> _Connection:
        connection = self._connections.get(slot)
        if connection is None:
            client = own_client(self._url, single_connection=True)
            connection = self._connections[slot] = _Connection(client)
        return connection

    def _was_interrupted(self) -> bool:
        return self._interrupted

    async def unblock(self) -> None:
        """End the reads in flight now, where the server allows it (else they end within
        their BLOCK), and the next read at once."""
        self._interrupted = True
        for connection in list(self._connections.values()):
            if not connection.reading or connection.id is None:
                continue
            try:
                if connection.node is None:
                    await self._redis.client_unblock(connection.id)
                else:
                    cluster = as_cluster(self._redis)
                    assert isinstance(cluster, RedisCluster)
                    target = cluster.get_node(node_name=connection.node)
                    if target is not None:
                        await cluster.client_unblock(connection.id, target_nodes=target)
            except ResponseError:
                pass  # e.g. no permission under a minimal ACL: the read ends within BLOCK_MS.
            except REDIS_ERRORS:
                pass

    async def _drop(self, slot: int | None) -> None:
        connection = self._connections.pop(slot, None)
        if connection is not None:
            await connection.client.aclose()

    async def close(self) -> None:
        """Close every connection.

        They are dropped at once and closed in a task of their own, to the end, each even if
        another fails: a close cancelled half-way (a worker cancelled again as it stops) must
        not leave one open, as nothing would close it later.
        """
        for read in self._in_flight.values():
            read.cancel()  # left by a worker stopped at once: its connection is dropped too
        self._in_flight.clear()
        clients = [connection.client for connection in self._connections.values()]
        self._connections.clear()
        await asyncio.shield(_close(clients))


async def _close(clients: list[Redis]) -> None:
    async with contextlib.AsyncExitStack() as closing:
        for client in clients:
            closing.push_async_callback(client.aclose)
