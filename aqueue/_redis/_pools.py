"""The app's connection pool, closed for good once closed.

redis-py's pools reconnect on next use once closed (``aclose()`` means "release the
connections", see redis/redis-py#3846): a call made on the client while it closes, or after,
connects anew, and the pool keeps that connection open when the call hands it back. aqueue
drops a closed app's client (the app's next use makes another), so nobody would close that
connection: it stayed open on the server until garbage collection found it ("unclosed
Connection"), a socket for each call that raced ``app.close()``.
"""

from __future__ import annotations

from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool, ConnectionPool


class ClosedForGood(ConnectionPool):
    """Once closed, closes each connection handed back to it: a call that was in flight, or
    made later on the closed client, still ends normally, and leaves nothing open."""

    _closed = False

    async def disconnect(self, inuse_connections: bool = True) -> None:
        # Only a full disconnect is the pool's end (redis-py's close, whichever its version
        # calls): a Sentinel pool that learns of a new master disconnects its idle ones alone.
        if inuse_connections:
            self._closed = True
        await super().disconnect(inuse_connections)

    async def release(self, connection: AbstractConnection) -> None:
        if self._closed:
            await connection.disconnect(nowait=True)
        await super().release(connection)


class SharedPool(ClosedForGood, BlockingConnectionPool):
    """The blocking pool of an app's client on one server."""
