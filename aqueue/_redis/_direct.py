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


class _Lane:
    """A connection, and the scripts it loaded: loaded before their first call on it."""

    __slots__ = ("connection", "loaded")

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.loaded: set[str] = set()


class DirectCalls:
    """Runs batches of script calls, each batch in one round trip, errors in place.

    Each connection loads (SCRIPT LOAD) a script in the same buffer, just before its first
    call there. Answering NOSCRIPT and retrying would run the refused call after the calls
    that followed it, and order matters: a requeue must come before the release of its slot.
    """

    def __init__(self, pool: ConnectionPool, limit: int) -> None:
        self._pool = pool
        self._idle: list[_Lane] = []
        self._room = asyncio.Semaphore(limit)

    async def run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run each call, in order; each reply, or the server's error as an exception."""
        async with self._room:
            reused = bool(self._idle)
            lane = self._idle.pop() if reused else await self._open()
            try:
                replies = await _exchange(lane, calls)
            except REDIS_ERRORS:
                await lane.connection.disconnect()
                if not reused:
                    raise
                # An idle connection may have died with a server restart: one more try on a
                # fresh one, as redis-py's own retry would do.
                lane = await self._open()
                try:
                    replies = await _exchange(lane, calls)
                except BaseException:
                    await lane.connection.disconnect()
                    raise
            except BaseException:
                # Cancelled or failed mid-exchange: replies may still be on the wire, so the
                # connection can never serve another call.
                await lane.connection.disconnect()
                raise
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # Only after SCRIPT FLUSH on a live connection (the lane forgot what it
                # loaded): the refused calls run once more, now after the ones behind them.
                again = await _exchange(lane, [calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
            self._idle.append(lane)
            return replies

    async def close(self) -> None:
        """Close the idle connections (calls in flight close theirs when they end)."""
        idle, self._idle = self._idle, []
        for lane in idle:
            await lane.connection.disconnect()

    async def _open(self) -> _Lane:
        connection = self._pool.connection_class(**self._pool.connection_kwargs)
        await connection.connect()  # type: ignore[no-untyped-call]
        return _Lane(connection)


def _pack(call: ScriptCall) -> bytes:
    script, keys, args = call
    return _command(b"EVALSHA", script.sha, len(keys), *keys, *args)


def _command(*parts: Any) -> bytes:
    packed: bytes = hiredis.pack_command(parts)
    return packed


async def _exchange(lane: _Lane, calls: Sequence[ScriptCall]) -> list[Any]:
    loads = {script.sha: script for script, _, _ in calls if script.sha not in lane.loaded}
    commands = [_command(b"SCRIPT", b"LOAD", script.source) for script in loads.values()]
    commands += [_pack(call) for call in calls]
    connection = lane.connection
    await connection.send_packed_command(commands, check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)  # an error reply: read in full, the next ones follow
    for sha, reply in zip(loads, replies, strict=False):
        if not isinstance(reply, Exception):
            lane.loaded.add(sha)
    if any(isinstance(reply, NoScriptError) for reply in replies):
        # Only after SCRIPT FLUSH on a live connection: load everything again next time.
        lane.loaded.clear()
    return replies[len(loads) :]
