"""The part every framework's helper shares: the app connected, a worker embedded if asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from .._app import App
from .._redis._errors import translate_errors
from .._worker import Worker

WorkerFactory = Callable[[App], Worker]
"""Makes the embedded worker, e.g. ``lambda app: aqueue.Worker(app, concurrency=50)``."""


@asynccontextmanager
async def serving(app: App, worker: bool | WorkerFactory) -> AsyncIterator[None]:
    """``app`` for the block, with a worker running in it when ``worker`` asks for one.

    The app connects before the block: a web app that cannot reach Redis fails as it starts,
    with :class:`aqueue.ConnectionFailed`, rather than on its first request. A worker is made
    anew each time: a stopped one cannot start again, and a test client may start the same
    web app several times. On exit the worker stops gracefully first (running jobs get its
    grace period), then the app's connections close.
    """
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(app)
        with translate_errors(app.url):
            await app.redis.ping()
        if worker is not False:
            make = Worker if worker is True else worker
            await stack.enter_async_context(make(app))
        yield
