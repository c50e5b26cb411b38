"""Server-sent events of a job's progress and outcome, for every web framework alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from .._app import App
from .._job import Job, JobInfo, JobStatus, json_result
from ..exceptions import JobNotFound

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # nginx buffers proxied responses by default, which would hold events back until the end.
    "X-Accel-Buffering": "no",
}
"""Headers of an event stream, next to its ``text/event-stream`` content type."""

KEEPALIVE = 15.0
"""Seconds a stream may stay silent before it sends a comment line."""


def frame(info: JobInfo, app: App) -> bytes:
    """One event: ``progress`` while the job has not ended, ``end`` with its outcome last.

    A browser's ``EventSource`` reconnects whenever a stream closes: the named last event is
    what tells a client to close it instead.
    """
    data: dict[str, Any] = {
        "id": info.id,
        "status": info.status.value,
        "attempts": info.attempts,
        "progress": info.progress,
        "message": info.progress_message,
    }
    if info.status is JobStatus.SUCCEEDED:
        data["result"] = json_result(app, info.task, info.result)
    elif info.error is not None:
        # The type and message only: a traceback shows the server's code to any web client.
        data["error"] = {"type": info.error.type, "message": info.error.message}
    kind = b"end" if info.status.is_final or info.status is JobStatus.UNKNOWN else b"progress"
    # default=str: a result orjson cannot encode natively is sent as its text, not dropped.
    return b"event: %s\ndata: %s\n\n" % (kind, orjson.dumps(data, default=str))


async def job_to_follow(app: App, job_id: str) -> Job[Any] | None:
    """The job with ``job_id`` if it has a record to follow; None for a 404."""
    try:
        job = app.job(job_id)
    except JobNotFound:  # not even shaped like an aqueue job id
        return None
    return None if await job.status() is JobStatus.UNKNOWN else job


async def frames(job: Job[Any], app: App) -> AsyncGenerator[bytes, None]:
    """The job's events until it ends, and a comment line after each quiet spell of
    :data:`KEEPALIVE` seconds.

    The comments keep proxies from closing a quiet stream, and they are how a server learns
    that its client went away: only a write fails then, and without one the stream, and the
    job's subscription, would live on until the job next changed.
    """
    events: asyncio.Queue[bytes] = asyncio.Queue()
    follower = asyncio.create_task(_follow(job, app, events))
    try:
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    event = await events.get()
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if not event:
                break
            yield event
        await follower  # raises what ended the following early (e.g. ConnectionFailed)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)


async def _follow(job: Job[Any], app: App, events: asyncio.Queue[bytes]) -> None:
    """Put the job's events in ``events``, then an empty one for the end. Its record may
    vanish meanwhile (expired, purged): the stream then ends with status ``unknown``, so
    that a client stops too."""
    ended = False
    try:
        with contextlib.suppress(JobNotFound):
            async for info in job.events():
                ended = info.status.is_final
                events.put_nowait(frame(info, app))
        if not ended:
            events.put_nowait(frame(JobInfo(job.id, JobStatus.UNKNOWN), app))
    finally:
        events.put_nowait(b"")
