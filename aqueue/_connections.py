"""An app's connections: the shared redis-py client, the direct script calls of the hot paths
and the result waiter, all opened lazily and bound to the event loop that opened them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from ._redis._connect import fast_path, shared_client
from ._redis._direct import Batches
from ._results import ClusterWaiters, ResultWaiter, result_waiter

if TYPE_CHECKING:
    from ._app import App


class Connections:
    """What one app connects with. Each part is made on first use; :meth:`close` drops them
    all, and the next use connects again."""

    __slots__ = ("_app", "_direct", "_loop", "_max_connections", "_redis", "_results")

    def __init__(self, app: App, max_connections: int) -> None:
        # The URL is read from the app when the client is made: app.url may be changed until
        # then (aqueue.testing points an app at the server it started).
        self._app = app
        self._max_connections = max_connections
        self._redis: Redis | None = None
        self._results: ResultWaiter | ClusterWaiters | None = None
        self._direct: Batches | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop the connections were opened in."""

    @property
    def client(self) -> Redis:
        """The redis-py client (created on first use)."""
        self._forget_a_closed_loop()
        if self._redis is None:
            self._redis = shared_client(self._app.url, max_connections=self._max_connections)
            with contextlib.suppress(RuntimeError):  # made outside a loop: bound at first use
                self._loop = asyncio.get_running_loop()
        return self._redis

    @property
    def direct(self) -> Batches:
        """Script calls on the hot paths: enqueue, and a worker's starts and acks."""
        self._forget_a_closed_loop()
        if self._direct is None:
            self._direct = fast_path(self.client, limit=self._max_connections)
            self._loop = asyncio.get_running_loop()
        return self._direct

    @property
    def result_waiter(self) -> ResultWaiter | ClusterWaiters:
        """The shared subscription that ``job.result()`` waits on."""
        self._forget_a_closed_loop()
        if self._results is None:
            self._results = result_waiter(self.client)
            self._loop = asyncio.get_running_loop()
        return self._results

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the connections are open in (None: none is open, or it closed)."""
        self._forget_a_closed_loop()
        return self._loop

    def _forget_a_closed_loop(self) -> None:
        # Connections belong to the event loop that opened them. Once that loop closed
        # without app.close() (asyncio.run() called again, a test's loop of its own), they
        # can be neither used nor closed: dropped, so that the app connects again.
        if self._loop is not None and self._loop.is_closed():
            self._redis = None
            self._direct = None
            self._results = None
            self._loop = None

    async def close(self) -> None:
        """Close every connection; the next use connects again.

        Each part is dropped at once and closed in a task of its own, to the end: a close
        cancelled half-way (a shutdown's timeout, a cancelled lifespan) or one part failing
        to close must not leave the others open, as nothing would close them later.
        """
        parts = self._results, self._direct, self._redis
        self._results, self._direct, self._redis, self._loop = None, None, None, None
        await asyncio.shield(_close(*parts))


async def _close(
    results: ResultWaiter | ClusterWaiters | None, direct: Batches | None, redis: Redis | None
) -> None:
    async with contextlib.AsyncExitStack() as closing:  # in reverse order: results first
        if redis is not None:
            closing.push_async_callback(redis.aclose)
        if direct is not None:
            closing.push_async_callback(direct.close)
        if results is not None:
            closing.push_async_callback(results.close)
