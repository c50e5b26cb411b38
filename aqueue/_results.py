"""Waiting for job outcomes without polling: one shared pub/sub connection per app (per
master on a Redis Cluster). A worker hears its queues' notices on it too (see
``_worker/_reclaim.py``).

The finish script publishes on a job's record key when the job ends. A waiter subscribes
first and reads the record after the subscription is confirmed, so an outcome published in
between cannot be missed; each message (or a reconnect) only wakes the waiter to read again.

Subscriptions are sharded (SSUBSCRIBE; the scripts SPUBLISH): on a cluster, a record's channel
lives in the record's slot, so it is subscribed to on the master serving that slot, and a
message crosses no other node. When the slot moves (a resharding), the server ends the
subscription; it is made again on the slot's new master, and its waiters read once more.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ._redis._backoff import Backoff
from ._redis._cluster import as_cluster, topology_of
from ._redis._direct import ConnectionSource
from ._redis._errors import REDIS_ERRORS

logger = logging.getLogger("aqueue.results")


CLOSED = "the app was closed while a result was awaited"
"""What a wait meets on a waiter that was closed (the app's next wait makes another)."""

Hear = Callable[[bytes | None], None]
"""Takes each message of a channel, and None when messages may have been missed (the channel
was subscribed again, after a reconnect or on its slot's new master): read again."""


def _wake(event: asyncio.Event, only: frozenset[bytes] | None, message: bytes | None) -> None:
    if message is None or only is None or message in only:
        event.set()


class _Channel:
    """The listeners of one channel, whether the server confirmed the subscription, and the
    connection's waiter that holds it now."""

    __slots__ = ("confirmed", "listeners", "owner")

    def __init__(self, owner: ResultWaiter) -> None:
        self.listeners: list[Hear] = []
        self.confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.owner = owner

    def tell(self, message: bytes | None) -> None:
        for listener in list(self.listeners):
            listener(message)


Source = Callable[[], Awaitable[ConnectionSource]]
"""Where a waiter's connection is made, asked at each connect (see ``_connect.py``)."""

Moved = Callable[[bytes, _Channel], None]
"""Called with a channel whose subscription the server ended (its slot moved away)."""


class ResultWaiter:
    """Multiplexes every ``job.result()`` of an app (or of one master) over one subscribed
    connection."""

    def __init__(self, source: Source, moved: Moved | None = None) -> None:
        self._source = source
        self._moved = moved
        self._channels: dict[bytes, _Channel] = {}
        self._leaving: collections.Counter[bytes] = collections.Counter()
        """SUNSUBSCRIBEs sent and not answered yet, by channel: an answer to one of those
        is ours, any other the server's (the channel's slot moved away)."""
        self._connection: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._closed = False

    @asynccontextmanager
    async def watch(
        self,
        channel: bytes,
        timeout: float | None = None,
        *,
        only: frozenset[bytes] | None = None,
    ) -> AsyncIterator[asyncio.Event]:
        """Subscribe to ``channel``; the event is set on every message (with ``only``: on
        the messages in it) and on reconnects.

        Read the state you wait for *inside* the block, after entering it. Raises as
        :meth:`hear` does.
        """
        event = asyncio.Event()
        async with self.hear(channel, functools.partial(_wake, event, only), timeout):
            yield event

    @asynccontextmanager
    async def hear(
        self, channel: bytes, listener: Hear, timeout: float | None = None
    ) -> AsyncIterator[None]:
        """Subscribe to ``channel``: ``listener`` takes its messages until the block ends.

        Raises TimeoutError when the subscription is not confirmed within ``timeout`` seconds,
        and the server's error when it refuses the subscription (e.g. ACL channel permissions).
        """
        await self._ensure_reader()
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel(self)
            await self._send(b"SSUBSCRIBE", channel)
        entry.listeners.append(listener)
        try:
            # Only this wait is bounded, never the command in flight (it is not cancelled).
            async with asyncio.timeout(timeout):
                await asyncio.shield(entry.confirmed)
            yield
        finally:
            entry.listeners.remove(listener)
            if not entry.listeners:
                # The owner now: a moved subscription went to another master's waiter.
                await entry.owner._drop(channel, entry)

    async def _drop(self, channel: bytes, entry: _Channel) -> None:
        if self._channels.get(channel) is entry:
            del self._channels[channel]
            self._leaving[channel] += 1
            with suppress(RedisConnectionError, OSError):
                await self._send(b"SUNSUBSCRIBE", channel)

    async def adopt(self, channel: bytes, entry: _Channel) -> None:
        """Subscribe here to a channel (and its waiters) whose slot moved to this master; the
        waiters read once more when the server confirms."""
        await self._ensure_reader()
        entry.owner = self
        self._channels[channel] = entry
        await self._send(b"SSUBSCRIBE", channel)

    async def close(self) -> None:
        """Stop the reader and drop the connection, for good: a waiter that was connecting
        meanwhile closes what it opened (the app drops this waiter, so nobody else would)."""
        self._closed = True
        try:
            if self._reader is not None:
                self._reader.cancel()
                await asyncio.wait([self._reader])  # our own cancellation still propagates
        finally:
            # Even when the close is cancelled: nothing would close the connection later.
            self._reader = None
            connection, self._connection = self._connection, None
            if connection is not None:
                # Discarded, never reused: a cancelled read cannot leave a reply for
                # someone else.
                await connection.disconnect()

    async def _ensure_reader(self) -> None:
        # Under the lock: concurrent first waiters must share one connection and one reader.
        async with self._send_lock:
            if self._reader is not None and self._reader.done():
                # It ended on something unexpected (it logged what): start over cleanly.
                self._reader = None
                if self._connection is not None:
                    await self._connection.disconnect()
                self._channels.clear()
                self._leaving.clear()
            if self._reader is None:
                self._check_open()
                connection = await self._connect()
                if self._closed:
                    # The app closed while this connected: its close found nothing to close.
                    await connection.disconnect()
                    self._check_open()
                self._connection = connection
                self._reader = asyncio.create_task(self._read_forever(), name="aqueue-results")

    def _check_open(self) -> None:
        if self._closed:
            raise RedisConnectionError(CLOSED)

    async def _connect(self) -> AbstractConnection:
        source = await self._source()
        kwargs = {**source.connection_kwargs, "socket_timeout": None}
        connection = source.connection_class(**kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        return connection

    async def _send(self, *args: bytes) -> None:
        async with self._send_lock:
            self._check_open()
            assert self._connection is not None  # open: connected by _ensure_reader
            await self._connection.send_command(*args)

    async def _read_forever(self) -> None:
        while True:
            assert self._connection is not None
            try:
                # RESP3 (redis-py's default) delivers pub/sub replies as push messages.
                reply = await self._connection.read_response(push_request=True)
            except REDIS_ERRORS as exc:
                await self._reconnect(exc)
                continue
            except RedisError as exc:
                # An error reply answers the oldest unconfirmed SUBSCRIBE (e.g. NOPERM when
                # the ACL user may not use channels): its waiters get the error.
                self._refuse_oldest(exc)
                continue
            if isinstance(reply, list) and len(reply) >= 2:
                self._dispatch(reply)

    def _refuse_oldest(self, error: RedisError) -> None:
        for channel, entry in self._channels.items():
            if not entry.confirmed.done():
                entry.confirmed.set_exception(error)
                del self._channels[channel]
                return
        logger.error("unexpected error on the result connection: %s", error)

    def _dispatch(self, reply: list[bytes]) -> None:
        kind, channel = reply[0], reply[1]
        if kind == b"sunsubscribe" and self._leaving[channel]:
            # The answer to our own: a new waiter of the channel may have subscribed again
            # since, and keeps its subscription.
            self._leaving[channel] -= 1
            if not self._leaving[channel]:
                del self._leaving[channel]
            return
        entry = self._channels.get(channel)
        if entry is None:
            return
        if kind == b"sunsubscribe":
            # Not asked for: the channel's slot moved to another master.
            del self._channels[channel]
            if self._moved is not None:
                self._moved(channel, entry)
            else:
                entry.tell(None)  # nowhere else to go: the listeners read again
        elif kind == b"smessage":
            entry.tell(reply[2] if len(reply) > 2 else b"")
        elif kind == b"ssubscribe":
            if entry.confirmed.done():
                # Subscribed again after a reconnect: an outcome may have been published while
                # we were away, so every listener reads once more.
                entry.tell(None)
            else:
                entry.confirmed.set_result(None)

    async def _reconnect(self, lost: BaseException) -> None:
        backoff = Backoff(logger, "keep the result connection")
        await backoff.failed(lost)
        while True:
            try:
                if self._connection is not None:
                    await self._connection.disconnect()
                self._connection = await self._connect()
                self._leaving.clear()  # sent on the lost connection: no answer will come
                for channel in self._channels:
                    await self._connection.send_command(b"SSUBSCRIBE", channel)
            except REDIS_ERRORS as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            return


class ClusterWaiters:
    """A :class:`ResultWaiter` per master of a Redis Cluster: each channel is watched on the
    master of its slot."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._topology = topology_of(cluster)
        self._waiters: dict[str, ResultWaiter] = {}
        self._moves: set[asyncio.Task[None]] = set()
        self._closed = False

    @asynccontextmanager
    async def watch(
        self,
        channel: bytes,
        timeout: float | None = None,
        *,
        only: frozenset[bytes] | None = None,
    ) -> AsyncIterator[asyncio.Event]:
        """As :meth:`ResultWaiter.watch`, on the master of ``channel``'s slot."""
        await self._topology.ready()
        waiter = self._waiter(self._topology.master(channel))
        async with waiter.watch(channel, timeout, only=only) as event:
            yield event

    @asynccontextmanager
    async def hear(
        self, channel: bytes, listener: Hear, timeout: float | None = None
    ) -> AsyncIterator[None]:
        """As :meth:`ResultWaiter.hear`, on the master of ``channel``'s slot."""
        await self._topology.ready()
        async with self._waiter(self._topology.master(channel)).hear(channel, listener, timeout):
            yield

    async def close(self) -> None:
        """Close every master's waiter, for good (as :meth:`ResultWaiter.close`)."""
        self._closed = True
        for move in list(self._moves):
            move.cancel()
        waiters, self._waiters = self._waiters, {}
        # Together: a close cancelled half-way cancels each, and each still closes its own.
        await asyncio.gather(*(waiter.close() for waiter in waiters.values()))

    def _waiter(self, node: ClusterNode) -> ResultWaiter:
        if self._closed:
            raise RedisConnectionError(CLOSED)
        waiter = self._waiters.get(node.name)
        if waiter is None:
            waiter = ResultWaiter(functools.partial(self._source, node), self._moved)
            self._waiters[node.name] = waiter
        return waiter

    async def _source(self, node: ClusterNode) -> ConnectionSource:
        # Asked at each (re)connect: after a failover, the master that took over the slots of
        # the waiter's channels (the one it had is gone).
        channels = self._waiters.get(node.name)
        held = next(iter(channels._channels), None) if channels is not None else None
        if held is None:
            return node
        await self._topology.refresh(self._topology.seen())
        successor: ConnectionSource = self._topology.master(held)
        return successor

    def _moved(self, channel: bytes, entry: _Channel) -> None:
        seen = self._topology.seen()

        async def move() -> None:
            try:
                await self._topology.refresh(seen)
                await self._waiter(self._topology.master(channel)).adopt(channel, entry)
            except Exception:
                logger.exception("cannot follow the subscription of %r to its new master", channel)
                entry.tell(None)  # they read again, at least

        task = asyncio.create_task(move())
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)


def result_waiter(client: Redis) -> ResultWaiter | ClusterWaiters:
    """The waiter for ``client``'s server (or cluster)."""
    cluster = as_cluster(client)
    if cluster is not None:
        return ClusterWaiters(cluster)

    async def source() -> ConnectionSource:
        return client.connection_pool

    return ResultWaiter(source)
