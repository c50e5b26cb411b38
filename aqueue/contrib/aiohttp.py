"""aiohttp helpers: the app under a typed ``AppKey``, connected (and a worker embedded if
asked) by a ``cleanup_ctx``, and a server-sent-events handler that follows a job.

```python
from aiohttp import web
from aqueue.contrib.aiohttp import APP_KEY, job_events, setup

web_app = web.Application()
setup(web_app, app, worker=True)
web_app.router.add_get("/jobs/{job_id}/events", job_events)

async def enqueue_sum(request: web.Request) -> web.Response:
    job = await request.app[APP_KEY].enqueue("tasks.add", 2, 3)   # typed: an aqueue.App
    return web.json_response({"id": job.id}, status=202)
```

Needs aiohttp: ``pip install 'aqueue-redis[aiohttp]'``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from .._version import pip_install

try:
    from aiohttp import web
except ImportError as exc:
    raise ImportError(f"aqueue.contrib.aiohttp needs aiohttp: {pip_install('aiohttp')}") from exc

from .._app import App
from ._embed import WorkerFactory, serving
from ._sse import SSE_HEADERS, frames, job_to_follow

__all__ = ["APP_KEY", "WorkerFactory", "cleanup_ctx", "job_events", "setup"]

APP_KEY = web.AppKey("aqueue_app", App)
"""Where :func:`setup` puts the app: ``request.app[APP_KEY]`` is typed ``aqueue.App``."""


def cleanup_ctx(
    app: App, *, worker: bool | WorkerFactory = False
) -> Callable[[web.Application], AsyncIterator[None]]:
    """For ``web_app.cleanup_ctx.append(...)``: the server starts once ``app`` is ready, and on
    shutdown the embedded worker stops gracefully before the connections close.

    Args:
        app: The aqueue app the handlers enqueue to.
        worker: Run a worker on the server's event loop: ``True`` for ``aqueue.Worker(app)``,
            or a function that makes one, e.g. ``lambda app: aqueue.Worker(app, concurrency=50)``.
            ``False`` (the default) only produces.
    """

    async def context(_: web.Application) -> AsyncIterator[None]:
        async with serving(app, worker):
            yield

    return context


def setup(web_app: web.Application, app: App, *, worker: bool | WorkerFactory = False) -> None:
    """Put ``app`` under :data:`APP_KEY` and add its :func:`cleanup_ctx`.

    Call it while building the web app: aiohttp deprecates changing an app once it started.
    """
    web_app[APP_KEY] = app
    web_app.cleanup_ctx.append(cleanup_ctx(app, worker=worker))


async def job_events(request: web.Request) -> web.StreamResponse:
    """A handler for a route with a ``{job_id}`` parameter: server-sent events that follow
    the job, as :func:`aqueue.contrib.starlette.stream_job` describes (``404`` for a job with
    no record). The app is looked up in sub-apps' parents too."""
    job_id = request.match_info["job_id"]
    app = request.config_dict[APP_KEY]
    job = await job_to_follow(app, job_id)
    if job is None:
        return web.json_response({"id": job_id, "status": "unknown"}, status=404)
    response = web.StreamResponse(headers={**SSE_HEADERS, "Content-Type": "text/event-stream"})
    await response.prepare(request)
    async for event in frames(job, app):  # a client that left makes write() raise: the stream ends
        await response.write(event)
    await response.write_eof()
    return response
