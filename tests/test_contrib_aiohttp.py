"""aqueue.contrib.aiohttp through aiohttp's own test client and server, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

import aqueue
import aqueue.contrib._sse
from aqueue.contrib.aiohttp import APP_KEY, job_events, setup
from tests.helpers import eventually
from tests.internals import keys_of
from tests.web_helpers import task_stopping_halfway


async def enqueue(request: web.Request) -> web.Response:
    job = await request.app[APP_KEY].enqueue(request.match_info["task"])
    return web.json_response({"id": job.id}, status=202)


@pytest.fixture
async def client(app: aqueue.App) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A web app with the helpers, served on a loopback port; its embedded worker running."""
    web_app = web.Application()
    setup(web_app, app, worker=lambda app: aqueue.Worker(app, concurrency=5, grace_period=1))
    web_app.router.add_post("/jobs/{task}", enqueue)
    web_app.router.add_get("/jobs/{job_id}/events", job_events)
    async with TestClient(TestServer(web_app)) as the_client:
        yield the_client


async def test_a_handler_gets_the_typed_app_and_the_embedded_worker_runs_the_job(
    app: aqueue.App, client: TestClient[web.Request, web.Application]
) -> None:
    @app.task(name="answer")
    async def answer() -> int:
        return 42

    response = await client.post("/jobs/answer")
    assert response.status == 202
    assert await app.job((await response.json())["id"]).result(timeout=5) == 42


async def test_the_event_stream_arrives_as_the_job_goes_and_ends_with_its_result(
    app: aqueue.App, client: TestClient[web.Request, web.Application]
) -> None:
    seen_halfway = task_stopping_halfway(app)
    job = await app.enqueue("slow")
    response = await client.get(f"/jobs/{job.id}/events")
    assert response.content_type == "text/event-stream"
    events = []
    async with asyncio.timeout(5):
        while not response.content.at_eof():
            block = (await response.content.readuntil(b"\n\n")).strip()
            if not block:
                continue
            event, data = (line.split(b": ", 1)[1] for line in block.split(b"\n"))
            events.append((event.decode(), orjson.loads(data)))
            if orjson.loads(data)["message"] == "halfway":
                seen_halfway.set()  # the stream showed the progress while the job waited
    assert events[0][0] == "progress"
    assert events[-1][0] == "end"
    assert events[-1][1]["result"] == "done"
    assert [data["status"] for _, data in events].count("succeeded") == 1


async def test_the_event_stream_of_a_job_nobody_enqueued_is_404(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/jobs/default:0123456789abcdef0123456789abcdef/events")
    assert response.status == 404
    assert (await response.json())["status"] == "unknown"


async def test_closing_the_web_app_stops_the_embedded_worker(app: aqueue.App) -> None:
    web_app = web.Application()
    setup(web_app, app, worker=True)
    async with TestClient(TestServer(web_app)):
        assert (await app.queue().stats()).workers == 1
    assert (await app.queue().stats()).workers == 0


async def subscribers(redis: Redis, app: aqueue.App, job: aqueue.Job[Any]) -> int:
    """How many connections follow the job (its record's channel)."""
    [(_, count)] = await redis.pubsub_shardnumsub(keys_of(app.namespace, job.queue).job(job.id))
    return int(count)


async def has_no_subscribers(redis: Redis, app: aqueue.App, job: aqueue.Job[Any]) -> bool:
    return await subscribers(redis, app, job) == 0


async def test_a_quiet_stream_keeps_alive_and_ends_its_subscription_when_the_client_leaves(
    app: aqueue.App,
    client: TestClient[web.Request, web.Application],
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aqueue.contrib._sse, "KEEPALIVE", 0.05)

    @app.task(name="later")
    async def later() -> None: ...

    job = await later.options(delay=60).enqueue()  # it stays scheduled: the stream is quiet
    response = await client.get(f"/jobs/{job.id}/events")
    async with asyncio.timeout(5):
        assert (await response.content.readuntil(b"\n\n")).startswith(b"event: progress\n")
        assert await response.content.readuntil(b"\n\n") == b": keepalive\n\n"
    assert await subscribers(redis, app, job) == 1

    response.close()
    await eventually(lambda: has_no_subscribers(redis, app, job))
