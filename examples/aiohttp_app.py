"""An aiohttp app that hands work to aqueue, with a worker in the same process.

Run it against the Redis or Valkey server at AQUEUE_URL (default redis://localhost:6379/0):

    python examples/aiohttp_app.py

    curl -X POST 'localhost:8080/resize?width=640'      # 202 {"id": "default:5d1c..."}
    curl 'localhost:8080/jobs/default:5d1c...'           # {"status": "succeeded", ...}
    curl -N 'localhost:8080/jobs/default:5d1c.../events' # server-sent events until it ends

aqueue.contrib.aiohttp's cleanup_ctx connects the app before the server accepts requests,
runs the embedded worker on the server's event loop, and stops it gracefully on shutdown.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

import aqueue
from aqueue.contrib.aiohttp import APP_KEY, job_events, setup


async def resize(width: int) -> dict[str, int]:
    """The task: "resizes" an image in steps that stand in for real work."""
    for step in range(1, 5):
        await asyncio.sleep(0.02)
        await aqueue.current_job().progress(step / 4, f"step {step} of 4")
    return {"width": width, "height": width * 3 // 4}


def create_web_app(aqueue_app: aqueue.App) -> web.Application:
    """The web app: enqueues to ``aqueue_app``, and runs a worker for it in the same loop."""
    resize_task = aqueue_app.task(resize)  # registered as "examples.aiohttp_app.resize"

    async def enqueue_resize(request: web.Request) -> web.Response:
        """Enqueue a resize and answer at once with the job's id."""
        try:
            width = int(request.query["width"])
        except (KeyError, ValueError):
            raise web.HTTPBadRequest(text="give the width as ?width=<pixels>") from None
        job = await resize_task.enqueue(width)  # checked against resize's signature
        return web.json_response({"id": job.id}, status=202)

    async def get_job(request: web.Request) -> web.Response:
        """The job's status, and its result once it succeeded."""
        aqueue_app = request.app[APP_KEY]  # typed: an aqueue.App
        try:
            info = await aqueue_app.job(request.match_info["job_id"]).info()
        except aqueue.JobNotFound:  # not even shaped like an aqueue job id
            info = None
        if info is None or info.status is aqueue.JobStatus.UNKNOWN:
            return web.json_response({"status": "unknown"}, status=404)
        return web.json_response({"status": info.status, "result": info.result})

    web_app = web.Application()
    setup(web_app, aqueue_app, worker=lambda app: aqueue.Worker(app, concurrency=50))
    web_app.router.add_post("/resize", enqueue_resize)
    web_app.router.add_get("/jobs/{job_id}", get_job)
    web_app.router.add_get("/jobs/{job_id}/events", job_events)
    return web_app


if __name__ == "__main__":
    web.run_app(create_web_app(aqueue.App(namespace="aiohttp-example")))
