"""Starlette (and FastAPI) helpers: a lifespan that connects the app and can embed a worker,
the app for handlers, and a server-sent-events endpoint that follows a job.

```python
from starlette.applications import Starlette
from starlette.routing import Route
from aqueue.contrib.starlette import job_events, lifespan

web = Starlette(
    lifespan=lifespan(app, worker=True),
    routes=[Route("/jobs/{job_id}/events", job_events)],
)
```

Needs Starlette: ``pip install 'aqueue-redis[starlette]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from .._version import pip_install

try:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
except ImportError as exc:
    raise ImportError(
        f"aqueue.contrib.starlette needs Starlette: {pip_install('starlette')}"
    ) from exc

from .._app import App
from ..exceptions import ConfigurationError
from ._embed import WorkerFactory, serving
from ._sse import SSE_HEADERS, frames, job_to_follow

__all__ = ["STATE_KEY", "WorkerFactory", "get_app", "job_events", "lifespan", "stream_job"]

STATE_KEY = "aqueue_app"
"""The name of the app in the lifespan state (``request.state.aqueue_app``)."""


def lifespan(
    app: App, *, worker: bool | WorkerFactory = False
) -> Callable[[object], AbstractAsyncContextManager[Mapping[str, Any]]]:
    """A lifespan for ``Starlette(lifespan=...)`` or ``FastAPI(lifespan=...)``.

    The web app starts serving only once ``app`` is ready, and on shutdown the embedded worker
    stops gracefully before the connections close. The app is put in the lifespan state, where
    :func:`get_app` finds it (in mounted sub-apps too).

    Args:
        app: The aqueue app the handlers enqueue to.
        worker: Run a worker on the web server's event loop: ``True`` for
            ``aqueue.Worker(app)``, or a function that makes one, e.g.
            ``lambda app: aqueue.Worker(app, concurrency=50)``. ``False`` (the default)
            only produces; workers of their own run the jobs.

    To add state of your own, enter it from your lifespan::

        @asynccontextmanager
        async def my_lifespan(web):
            async with lifespan(app)(web) as state, open_db() as db:
                yield {**state, "db": db}
    """

    @asynccontextmanager
    async def run(_: object) -> AsyncIterator[Mapping[str, Any]]:
        async with serving(app, worker):
            yield {STATE_KEY: app}

    return run


def get_app(request: Request) -> App:
    """The app that :func:`lifespan` put in the state: ``Depends(get_app)`` in FastAPI.

    Raises:
        ConfigurationError: The web app's lifespan is not :func:`lifespan` (or does not pass
            on its state).
    """
    app = getattr(request.state, STATE_KEY, None)
    if not isinstance(app, App):
        raise ConfigurationError(
            "no aqueue app in the request's state: create the web app with "
            "lifespan=aqueue.contrib.starlette.lifespan(app), or yield its state from yours"
        )
    return app


async def stream_job(app: App, job_id: str) -> Response:
    """Server-sent events that follow the job: a ``progress`` event at each change of its
    status or progress, then an ``end`` event with its result or error, and the stream closes.

    Each event's data is JSON: ``id``, ``status``, ``attempts``, ``progress``, ``message``,
    and at the end ``result`` (succeeded) or ``error`` (``type``, ``message``). A job with no
    record (never enqueued, expired) answers ``404`` at once.
    """
    job = await job_to_follow(app, job_id)
    if job is None:
        return JSONResponse({"id": job_id, "status": "unknown"}, status_code=404)
    return StreamingResponse(frames(job, app), media_type="text/event-stream", headers=SSE_HEADERS)


async def job_events(request: Request) -> Response:
    """An endpoint for a route with a ``{job_id}`` parameter: :func:`stream_job` of that job,
    with the app from :func:`get_app`."""
    return await stream_job(get_app(request), request.path_params["job_id"])
