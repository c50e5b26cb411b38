"""Script calls packed in C, on connections of our own: the one way async code runs a script.

Built for the hot paths (enqueue, start, ack), and used by every other script call too, so
each connection loads each script once, just before its first call there (never a SCRIPT LOAD
per pipeline), and a batch keeps its order whatever the server's script cache holds.

A redis-py command pays for machinery the enqueue path does not need: a Python encoder that
packs the many arguments of an EVALSHA one by one, a health check of every connection taken
from the pool, a retry wrapper, observability hooks, and a stream reader under a parser under
the connection for every reply. Profiled on single enqueues, those were most of the time, and
the same machinery dominated the worker's acks. Here a batch of script calls is packed by
hiredis into one buffer and written at once; the replies are parsed by hiredis as the bytes
arrive (an asyncio protocol of our own on the socket) and handed over together. A connection
is set up by redis-py from the app's own connection settings (so TLS, ACL user, database and
RESP version match) before its socket is taken over.
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError

from ._errors import REDIS_ERRORS, not_master
from ._scripts import Call

_NO_REPLY_YET = object()
"""What the reader's gets() returns while a reply is incomplete (False is a reply in RESP3)."""

WRITE_SIZE = 4096
"""Bytes of commands gathered into one write. About 15 starts or acks; an enqueue script call
of many jobs is larger, so it still goes out on its own as soon as it is packed."""


class _Lane(asyncio.Protocol):
    """A connection, the scripts it loaded (before their first call on it), and its replies
    as they arrive: one exchange at a time waits for all of its replies at once."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.loaded: set[str] = set()
        # Held: a collected StreamWriter closes its transport.
        self._writer = writer
        # Kept: on Python 3.11 asyncio.get_running_loop() makes a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._transport = transport = cast("asyncio.Transport", writer.transport)
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=BaseParser.parse_error,
            notEnoughData=_NO_REPLY_YET,
        )
        self._replies: list[Any] = []
        self._expected = 0
        self._waiter: asyncio.Future[list[Any]] | None = None
        self._lost: Exception | None = None
        self.sent = False
        """Whether the last exchange wrote its commands: a failure after that may come after
        the server ran them, so they must not be sent again elsewhere."""
        transport.set_protocol(self)

    async def exchange(self, commands: Iterable[bytes]) -> list[Any]:
        """Send ``commands``; their replies (error replies as exceptions), in order.

        Commands are written as they are made, as soon as ``WRITE_SIZE`` bytes are at hand:
        the server runs the first ones of a batch while the rest are still being packed, and
        a batch of small commands (a fetch's starts, a flush's acks) costs a system call per
        few kilobytes, not one per command. (Replies cannot be read in between: nothing here
        awaits, so the count is complete before the first one is looked at.)
        """
        self.sent = False
        if self._lost is not None:
            raise self._lost
        self._replies, count = [], 0
        write = self._transport.write
        made: list[bytes] = []
        size = 0
        for command in commands:
            made.append(command)
            size += len(command)
            count += 1
            if size >= WRITE_SIZE:
                self.sent = True
                write(b"".join(made))
                made, size = [], 0
        if made:
            self.sent = True
            write(b"".join(made))
        if not count:
            return []
        self._expected = count
        self._waiter = waiter = self._loop.create_future()
        replies: list[Any] = await waiter
        return replies

    def close(self) -> None:
        self._transport.close()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not _NO_REPLY_YET:
                # A RESP3 push (e.g. a managed server's maintenance notice) answers nothing.
                if not isinstance(reply, hiredis.PushNotification):
                    self._replies.append(reply)
        except InvalidResponse as exc:
            self._fail(RedisConnectionError(f"unreadable reply from the server: {exc}"))
            self._transport.close()
            return
        waiter = self._waiter
        if len(self._replies) >= self._expected and waiter is not None and not waiter.done():
            # Handed over whole: nothing arriving later can change the caller's list.
            waiter.set_result(self._replies)
            self._replies = []

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to the server lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self._lost = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)


class _Room:
    """At most ``limit`` exchanges at once. A semaphore whose free place costs a counter:
    ``async with asyncio.Semaphore`` cost more than the rest of an enqueue's bookkeeping."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled():
                self.give()  # handed a place just as it was cancelled: pass it on
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter left its future behind
                waiter.set_result(None)
                return
        self._free += 1


class ConnectionSource(Protocol):
    """Where connections to one server are made from: a redis-py pool, or a cluster's node."""

    @property
    def connection_class(self) -> type[AbstractConnection]: ...

    @property
    def connection_kwargs(self) -> dict[str, Any]: ...


class Batches(abc.ABC):
    """Batches of script calls and plain commands, each batch in one round trip (per server):
    :class:`DirectCalls` on one server, ``_cluster.ClusterCalls`` over a cluster's masters."""

    @abc.abstractmethod
    async def run(self, calls: Iterable[Call]) -> list[Any]:
        """Run each call, in order; each reply, or the server's error as an exception."""

    @abc.abstractmethod
    async def commands(
        self, commands: Sequence[Sequence[Any]], *, errors_in_place: bool = False
    ) -> list[Any]:
        """Run plain commands in one round trip; their replies, the server's errors raised
        (or, ``errors_in_place``, each in its reply's place, as :meth:`run` gives them)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the idle connections; calls in flight close theirs when they end."""

    async def call(self, call: Call) -> Any:
        """Run one script call; its reply, or the server's error raised."""
        [reply] = await self.run([call])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def command(self, *parts: Any) -> Any:
        """Run one plain command (e.g. the HMGET of a result); its reply, or its error raised."""
        [reply] = await self.commands([parts])
        return reply


class DirectCalls(Batches):
    """Runs batches of script calls on one server, each batch in one round trip, errors in
    place.

    Each connection loads (SCRIPT LOAD) a script in the same buffer, just before its first
    call there. Answering NOSCRIPT and retrying would run the refused call after the calls
    that followed it, and order matters: a requeue must come before the release of its slot.

    With ``asking``, each call or command goes behind an ASKING (see ``_cluster.py``): the
    server runs it although its slot is still being imported.
    """

    def __init__(self, source: ConnectionSource, limit: int, *, asking: bool = False) -> None:
        self._source = source
        self._asking = asking
        self._idle: list[_Lane] = []
        self._room = _Room(limit)
        self._closed = False

    async def run(self, calls: Iterable[Call]) -> list[Any]:
        """Run each call, in order; each reply, or the server's error as an exception.

        ``calls`` may be a generator: each call is made just before it is written, while the
        server runs the ones before it. It must not fail once it has yielded a call.
        """
        made: list[Call] = []
        asking = self._asking
        await self._room.take()
        try:
            lane, replies = await self._exchange(
                lambda lane: _scripts(lane, calls, made, asking=asking)
            )
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # Only after SCRIPT FLUSH on a live connection (the lane forgot what it
                # loaded): load everything again, and the refused calls run once more, now
                # after the ones behind them.
                lane.loaded.clear()
                try:
                    again = await _scripts(lane, [made[i] for i in missing], [], asking=asking)
                except BaseException:
                    lane.close()
                    raise
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            self._give_back(lane, replies)
            return replies
        finally:
            self._room.give()

    async def commands(
        self, commands: Sequence[Sequence[Any]], *, errors_in_place: bool = False
    ) -> list[Any]:
        packed = [_command(*parts) for parts in commands]
        asking = self._asking
        if asking:
            packed = [b for command in packed for b in (_ASKING, command)]
        await self._room.take()
        try:
            lane, replies = await self._exchange(lambda lane: lane.exchange(packed))
            self._give_back(lane, replies)
        finally:
            self._room.give()
        if asking:
            replies = replies[1::2]
        if not errors_in_place:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def _exchange(
        self, send: Callable[[_Lane], Awaitable[list[Any]]]
    ) -> tuple[_Lane, list[Any]]:
        """``send`` on an idle lane (or a new one); the lane, to give back, and the replies."""
        reused = bool(self._idle)
        lane = self._idle.pop() if reused else await self._open()
        try:
            return lane, await send(lane)
        except REDIS_ERRORS:
            lane.close()
            if not reused or lane.sent:
                raise
            # The idle connection had died (a server restart) before anything was written
            # on it: one more try on a fresh one. After a write the server may have run the
            # commands (an enqueue would be written twice), so the error is the caller's.
            lane = await self._open()
            try:
                return lane, await send(lane)
            except BaseException:
                lane.close()
                raise
        except BaseException:
            # Cancelled or failed mid-exchange: replies may still be on the wire, so the
            # connection can never serve another call.
            lane.close()
            raise

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for lane in idle:
            lane.close()

    def _give_back(self, lane: _Lane, replies: list[Any]) -> None:
        """Keep ``lane`` for the next call, unless the app closed meanwhile or one of the
        ``replies`` it gave says its server may no longer be the master."""
        if self._closed:
            lane.close()  # closed while the call was on the wire: nobody takes it again
        else:
            for reply in replies:  # a loop, not any(): on every call, mostly of one reply
                if isinstance(reply, Exception) and not_master(reply):
                    # The old master of a failover: a new lane asks the sentinels where the
                    # master is now (with a fixed address, it reaches the same server again).
                    lane.close()
                    return
            self._idle.append(lane)

    async def _open(self) -> _Lane:
        connection = self._source.connection_class(**self._source.connection_kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        # The handshake (AUTH, HELLO, SELECT) is done: from here the socket is the lane's.
        writer = connection._writer
        assert writer is not None  # connected
        # Forgotten by redis-py, which would otherwise warn and close it when collected.
        connection._reader = connection._writer = None
        return _Lane(writer)


def _command(*parts: Any) -> bytes:
    packed: bytes = hiredis.pack_command(parts)
    return packed


_ASKING = _command(b"ASKING")


async def _scripts(
    lane: _Lane, calls: Iterable[Call], made: list[Call], *, asking: bool
) -> list[Any]:
    # One pass over the calls, packed as the lane writes them: this runs for every enqueue
    # and every batch of starts and acks.
    loaded = lane.loaded
    loads: dict[str, int] = {}  # each script loaded in this exchange: its load's reply index
    asked: list[int] = []  # the reply index of each ASKING

    def packed() -> Iterator[bytes]:
        for call in calls:
            script, keys, args = call
            sha = script.sha
            if sha not in loaded and sha not in loads:
                # Just before its first call on this connection.
                loads[sha] = len(made) + len(loads) + len(asked)
                yield _command(b"SCRIPT", b"LOAD", script.source)
            if asking:
                asked.append(len(made) + len(loads) + len(asked))
                yield _ASKING
            made.append(call)
            yield hiredis.pack_command((b"EVALSHA", sha, len(keys), *keys, *args))

    replies = await lane.exchange(packed())
    if not loads and not asked:
        return replies
    for sha, at in loads.items():
        if not isinstance(replies[at], Exception):
            loaded.add(sha)
    skip = {*loads.values(), *asked}
    return [reply for at, reply in enumerate(replies) if at not in skip]
