"""Waiting for job outcomes without polling: one shared pub/sub connection per app.

The finish script publishes on a job's record key when the job ends. A waiter subscribes
first and reads the record after the subscription is confirmed, so an outcome published in
between cannot be missed; each message (or a reconnect) only wakes the waiter to read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ._redis._backoff import Backoff
from ._redis._direct import ConnectionSource
from ._redis._errors import REDIS_ERRORS

logger = logging.getLogger("aqueue.results")


class _Channel:
    """The waiters of one channel (each with the messages that wake it, None for all) and
    whether the server confirmed the subscription."""

    __slots__ = ("confirmed", "events")

    def __init__(self) -> None:
        self.events: dict[asyncio.Event, frozenset[bytes] | None] = {}
        self.confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class ResultWaiter:
    """Multiplexes every ``job.result()`` of an app over one subscribed connection."""

    def __init__(self, source: Callable[[], ConnectionSource]) -> None:
        # Asked at each connect: on a cluster, a node that went away is not asked again.
        self._source = source
        self._channels: dict[bytes, _Channel] = {}
        self._connection: AbstractConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()

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

        Read the state you wait for *inside* the block, after entering it. Raises
        TimeoutError when the subscription is not confirmed within ``timeout`` seconds, and
        the server's error when it refuses the subscription (e.g. ACL channel permissions).
        """
        await self._ensure_reader()
        entry = self._channels.get(channel)
        if entry is None:
            entry = self._channels[channel] = _Channel()
            await self._send(b"SUBSCRIBE", channel)
        event = asyncio.Event()
        entry.events[event] = only
        try:
            # Only this wait is bounded, never the command in flight (it is not cancelled).
            async with asyncio.timeout(timeout):
                await asyncio.shield(entry.confirmed)
            yield event
        finally:
            entry.events.pop(event, None)
            if not entry.events and self._channels.get(channel) is entry:
                del self._channels[channel]
                with suppress(RedisConnectionError, OSError):
                    await self._send(b"UNSUBSCRIBE", channel)

    async def close(self) -> None:
        """Stop the reader and drop the connection."""
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._connection is not None:
            # Discarded, never reused: a cancelled read cannot leave a reply for someone else.
            await self._connection.disconnect()
            self._connection = None

    async def _ensure_reader(self) -> None:
        # Under the lock: concurrent first waiters must share one connection and one reader.
        async with self._send_lock:
            if self._reader is not None and self._reader.done():
                # It ended on something unexpected (it logged what): start over cleanly.
                self._reader = None
                if self._connection is not None:
                    await self._connection.disconnect()
                self._channels.clear()
            if self._reader is None:
                self._connection = await self._connect()
                self._reader = asyncio.create_task(self._read_forever(), name="aqueue-results")

    async def _connect(self) -> AbstractConnection:
        source = self._source()
        kwargs = {**source.connection_kwargs, "socket_timeout": None}
        connection = source.connection_class(**kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        return connection

    async def _send(self, *args: bytes) -> None:
        async with self._send_lock:
            if self._connection is None:
                raise RedisConnectionError("the app was closed while a result was awaited")
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
        entry = self._channels.get(channel)
        if entry is None:
            return
        if kind == b"message":
            message = reply[2] if len(reply) > 2 else b""
            for event, only in entry.events.items():
                if only is None or message in only:
                    event.set()
        elif kind == b"subscribe":
            if entry.confirmed.done():
                # Subscribed again after a reconnect: an outcome may have been published while
                # we were away, so every waiter reads once more.
                for event in entry.events:
                    event.set()
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
                for channel in self._channels:
                    await self._connection.send_command(b"SUBSCRIBE", channel)
            except REDIS_ERRORS as exc:
                await backoff.failed(exc)
                continue
            backoff.succeeded()
            return
