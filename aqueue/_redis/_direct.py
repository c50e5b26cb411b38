"""The hot paths (enqueue, start, ack): script calls packed in C, on connections of our own.

A redis-py command pays for machinery the enqueue path does not need: a Python encoder that
packs the many arguments of an EVALSHA one by one, a health check of every connection taken
from the pool, a retry wrapper and observability hooks. Profiled on single enqueues, those were
over a third of the time, and the same machinery dominated the worker's acks. Here a batch of
script calls is packed by hiredis into one buffer, written at once, and its replies read back
in order, on a small stack of connections made from the app's own connection settings (so TLS,
ACL user, database and RESP version match).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import NoScriptError, ResponseError

from ._errors import REDIS_ERRORS
from ._scripts import Script

ScriptCall = tuple[Script, list[bytes], list[Any]]
"""One script call: the script, its KEYS and its ARGV."""


class DirectCalls:
    """Runs batches of script calls, each batch in one round trip, errors in place."""

    def __init__(self, pool: ConnectionPool, limit: int) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []
        self._room = asyncio.Semaphore(limit)

    async def run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run each call; each reply, or the server's error as an exception, in order.

        A NOSCRIPT reply (the server's script cache was flushed or the server restarted)
        loads the scripts and runs the calls that got it once more.
        """
        replies = await self._round_trip([_pack(call) for call in calls])
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            scripts = {calls[i][0].sha: calls[i][0] for i in missing}.values()
            loads = [_command(b"SCRIPT", b"LOAD", script.source) for script in scripts]
            again = await self._round_trip([*loads, *(_pack(calls[i]) for i in missing)])
            for i, reply in zip(missing, again[len(loads) :], strict=True):
                replies[i] = reply
        return replies

    async def close(self) -> None:
        """Close the idle connections (calls in flight close theirs when they end)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()

    async def _round_trip(self, commands: list[bytes]) -> list[Any]:
        async with self._room:
            reused = bool(self._idle)
            connection = self._idle.pop() if reused else await self._connect()
            try:
                replies = await _exchange(connection, commands)
            except REDIS_ERRORS:
                await connection.disconnect()
                if not reused:
                    raise
                # An idle connection may have died with a server restart: one more try on a
                # fresh one, as redis-py's own retry would do.
                connection = await self._connect()
                try:
                    replies = await _exchange(connection, commands)
                except BaseException:
                    await connection.disconnect()
                    raise
            except BaseException:
                # Cancelled or failed mid-exchange: replies may still be on the wire, so the
                # connection can never serve another call.
                await connection.disconnect()
                raise
            self._idle.append(connection)
            return replies

    async def _connect(self) -> AbstractConnection:
        connection = self._pool.connection_class(**self._pool.connection_kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        return connection


def _pack(call: ScriptCall) -> bytes:
    script, keys, args = call
    return _command(b"EVALSHA", script.sha, len(keys), *keys, *args)


def _command(*parts: Any) -> bytes:
    packed: bytes = hiredis.pack_command(parts)
    return packed


async def _exchange(connection: AbstractConnection, commands: list[bytes]) -> list[Any]:
    await connection.send_packed_command(commands, check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)  # an error reply: read in full, the next ones follow
    return replies
