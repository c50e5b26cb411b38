"""A FastAPI app that hands work to aqueue and serves the results.

Run it against the Redis or Valkey server at AQUEUE_URL (default redis://localhost:6379/0):

    pip install uvicorn
    uvicorn examples.fastapi_app:api

    curl -X POST 'localhost:8000/sum?x=2&y=3'     # 202 {"id": "default:5d1c..."}
    curl 'localhost:8000/jobs/default:5d1c...'    # {"status": "succeeded", "result": 5, ...}
    curl 'localhost:8000/sum-now?x=2&y=3'         # {"id": "default:9a0e...", "result": 5}
    curl -N 'localhost:8000/jobs/default:5d1c.../events'   # server-sent events until it ends

The worker is embedded: aqueue.contrib.fastapi's lifespan starts it on the web server's own
event loop and stops it gracefully on shutdown. Workers of their own can serve the same jobs
next to it (or instead of it): ``aqueue worker examples.fastapi_app:aqueue_app``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel

import aqueue
from aqueue.contrib.fastapi import AqueueApp, lifespan, stream_job

WAIT_SECONDS = 5.0
"""How long GET /sum-now waits for its job before it answers 504 (the job goes on)."""


async def add(x: int, y: int) -> int:
    """The task: adds two numbers after a pause that stands in for real work."""
    await aqueue.current_job().progress(0.5, "adding")  # seen by GET /jobs/{id}/events
    await asyncio.sleep(0.1)
    return x + y


class Enqueued(BaseModel):
    id: str


class JobView(BaseModel):
    id: str
    status: aqueue.JobStatus
    result: Any = None
    """The task's return value, once the job succeeded."""
    error: str | None = None
    """What the task raised, once the job failed."""


class Sum(BaseModel):
    id: str
    result: int


def create_api(aqueue_app: aqueue.App) -> FastAPI:
    """The web API: enqueues to ``aqueue_app`` and runs a worker for it in the same loop."""
    add_task = aqueue_app.task(add)  # registered as "examples.fastapi_app.add"

    # The worker runs in the background while the server serves. On shutdown it stops
    # gracefully (running jobs get the grace period to finish, the rest go back to the
    # queue), then the app's Redis connections close.
    def worker(app: aqueue.App) -> aqueue.Worker:
        return aqueue.Worker(app, concurrency=50, grace_period=10)

    api = FastAPI(title="aqueue FastAPI example", lifespan=lifespan(aqueue_app, worker=worker))

    @api.post("/sum", status_code=202)
    async def enqueue_sum(x: int, y: int) -> Enqueued:
        """Enqueue x + y and answer at once with the job's id, to poll at /jobs/{id}."""
        job = await add_task.enqueue(x, y)  # checked against add's signature
        return Enqueued(id=job.id)

    @api.get("/jobs/{job_id}", responses={404: {"description": "No such job: status unknown"}})
    async def get_job(job_id: str, response: Response, queue: AqueueApp) -> JobView:
        """The job's status; its result once it succeeded, its error once it failed."""
        try:
            job = queue.job(job_id)
        except aqueue.JobNotFound:  # not even shaped like an aqueue job id
            response.status_code = 404
            return JobView(id=job_id, status=aqueue.JobStatus.UNKNOWN)
        info = await job.info()
        view = JobView(id=job.id, status=info.status)
        if info.status is aqueue.JobStatus.UNKNOWN:  # never enqueued, or its record expired
            response.status_code = 404
        elif info.status is aqueue.JobStatus.SUCCEEDED:
            view.result = info.result  # read in the same step as the status
        elif info.error is not None:
            view.error = f"{info.error.type}: {info.error.message}"
        return view

    @api.get("/sum-now")
    async def sum_now(x: int, y: int) -> Sum:
        """Enqueue x + y and wait for the result, up to WAIT_SECONDS."""
        job = await add_task.enqueue(x, y)
        try:
            result = await job.result(timeout=WAIT_SECONDS)
        except aqueue.ResultTimeout:
            detail = f"job {job.id} is not done after {WAIT_SECONDS} s; poll /jobs/{job.id}"
            raise HTTPException(504, detail) from None
        except aqueue.TaskFailed as exc:
            raise HTTPException(500, f"job {job.id} failed: {exc.type}: {exc.message}") from None
        return Sum(id=job.id, result=result)

    @api.get("/jobs/{job_id}/events", responses={404: {"description": "No such job"}})
    async def job_events(job_id: str, queue: AqueueApp) -> Response:
        """Server-sent events: the job's progress as it goes, then its result or error."""
        return await stream_job(queue, job_id)

    return api


aqueue_app = aqueue.App(namespace="fastapi-example")  # the server at AQUEUE_URL
api = create_api(aqueue_app)
