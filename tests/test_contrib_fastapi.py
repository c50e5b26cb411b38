"""aqueue.contrib.fastapi and .starlette, through httpx's ASGI transport, against real servers."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
from collections.abc import AsyncIterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pydantic
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI, Response
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

import aqueue
from aqueue._version import pip_install
from aqueue.contrib.fastapi import AqueueApp, job_events, lifespan, stream_job
from aqueue.testing import _free_port as free_port
from tests.web_helpers import task_stopping_halfway


def small_worker(app: aqueue.App) -> aqueue.Worker:
    return aqueue.Worker(app, concurrency=5, grace_period=1)


def api_of(app: aqueue.App) -> FastAPI:
    api = FastAPI(lifespan=lifespan(app, worker=small_worker))

    @api.post("/jobs/{task}")
    async def enqueue(task: str, queue: AqueueApp) -> dict[str, str]:
        job = await queue.enqueue(task)
        return {"id": job.id}

    @api.get("/jobs/{job_id}/events")
    async def events(job_id: str, queue: AqueueApp) -> Response:
        return await stream_job(queue, job_id)

    return api


def opening_on(api: ASGIApp, marker: bytes, gate: asyncio.Event) -> ASGIApp:
    """``api``, with ``gate`` set once a response body carrying ``marker`` went out: a task can
    wait for the client to have seen an event before it goes on."""

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def watching(message: MutableMapping[str, Any]) -> None:
            await send(message)
            if marker in message.get("body", b""):
                gate.set()

        await api(scope, receive, watching)

    return watched


@pytest.fixture
async def lifespan_manager(app: aqueue.App) -> AsyncIterator[LifespanManager]:
    """The API's lifespan running (its embedded worker too), as a server would run it."""
    async with LifespanManager(api_of(app)) as manager:
        yield manager


def client_of(api: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test")


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent-events body."""
    found = []
    for block in body.strip().split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        found.append((fields[b"event"].decode(), orjson.loads(fields[b"data"])))
    return found


async def test_a_handler_gets_the_app_by_dependency_and_the_embedded_worker_runs_the_job(
    app: aqueue.App, lifespan_manager: LifespanManager
) -> None:
    @app.task(name="double")
    async def double() -> int:
        return 42

    async with client_of(lifespan_manager.app) as client:
        response = await client.post("/jobs/double")
    assert await app.job(response.json()["id"]).result(timeout=5) == 42


async def test_the_event_stream_sends_the_jobs_progress_then_its_result(
    app: aqueue.App, lifespan_manager: LifespanManager
) -> None:
    seen_halfway = task_stopping_halfway(app)
    job = await app.enqueue("slow")
    async with (
        client_of(opening_on(lifespan_manager.app, b"halfway", seen_halfway)) as client,
        asyncio.timeout(5),  # the job waits until the client saw its progress
    ):
        response = await client.get(f"/jobs/{job.id}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.content)
    assert ("progress", 0.5, "halfway") in [(e, d["progress"], d["message"]) for e, d in events]
    assert events[-1] == (
        "end",
        {
            "id": job.id,
            "status": "succeeded",
            "attempts": 1,
            "progress": 0.5,
            "message": "halfway",
            "result": "done",
        },
    )


class Thumbnail(pydantic.BaseModel):
    size: tuple[int, int]
    made: datetime


async def test_the_event_stream_sends_a_typed_result_as_the_json_the_task_returns(
    app: aqueue.App, lifespan_manager: LifespanManager
) -> None:
    made = datetime(2026, 12, 4, 22, 0, tzinfo=UTC)

    @app.task(name="thumbnail")
    async def thumbnail() -> Thumbnail:
        return Thumbnail(size=(64, 48), made=made)

    job = await app.enqueue("thumbnail")
    async with client_of(lifespan_manager.app) as client:
        response = await client.get(f"/jobs/{job.id}/events")
    event, data = events_of(response.content)[-1]
    assert (event, data["status"]) == ("end", "succeeded")
    assert data["result"] == {"size": [64, 48], "made": "2026-12-04T22:00:00Z"}


async def test_the_event_stream_of_a_failed_job_ends_with_its_error_but_no_traceback(
    app: aqueue.App, lifespan_manager: LifespanManager
) -> None:
    @app.task(name="broken")
    async def broken() -> None:
        raise ValueError("no such account")

    job = await app.enqueue("broken")
    async with client_of(lifespan_manager.app) as client:
        response = await client.get(f"/jobs/{job.id}/events")
    event, data = events_of(response.content)[-1]
    assert (event, data["status"]) == ("end", "failed")
    assert data["error"] == {"type": "builtins.ValueError", "message": "no such account"}


@pytest.mark.parametrize("job_id", ["default:0123456789abcdef0123456789abcdef", "not-a-job"])
async def test_the_event_stream_of_a_job_nobody_enqueued_is_404(
    lifespan_manager: LifespanManager, job_id: str
) -> None:
    async with client_of(lifespan_manager.app) as client:
        response = await client.get(f"/jobs/{job_id}/events")
    assert response.status_code == 404
    assert response.json() == {"id": job_id, "status": "unknown"}


async def test_leaving_the_lifespan_stops_the_embedded_worker(app: aqueue.App) -> None:
    async with LifespanManager(api_of(app)):
        assert (await app.queue().stats()).workers == 1
    assert (await app.queue().stats()).workers == 0


async def test_a_starlette_route_streams_a_job_with_the_ready_made_endpoint(
    app: aqueue.App,
) -> None:
    @app.task(name="quick")
    async def quick() -> int:
        return 7

    web = Starlette(
        lifespan=lifespan(app, worker=small_worker),
        routes=[Route("/jobs/{job_id}/events", job_events)],
    )
    job = await app.enqueue("quick")
    async with LifespanManager(web) as manager, client_of(manager.app) as client:
        response = await client.get(f"/jobs/{job.id}/events")
    assert events_of(response.content)[-1][1]["result"] == 7


async def test_a_handler_of_a_web_app_without_the_lifespan_is_told_to_add_it() -> None:
    web = Starlette(routes=[Route("/jobs/{job_id}/events", job_events)])
    async with client_of(web) as client:
        with pytest.raises(aqueue.ConfigurationError, match=r"lifespan=aqueue\.contrib"):
            await client.get("/jobs/default:0123456789abcdef0123456789abcdef/events")


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("aqueue.contrib.fastapi", "fastapi", "fastapi"),
        ("aqueue.contrib.starlette", "starlette", "starlette"),
        ("aqueue.contrib.aiohttp", "aiohttp", "aiohttp"),
    ],
)
def test_a_helper_whose_framework_is_missing_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, extra: str
) -> None:
    for name in [name for name in sys.modules if name.partition(".")[0] == framework]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: its import fails
    monkeypatch.setitem(sys.modules, framework, None)
    for name in ["aqueue.contrib.fastapi", "aqueue.contrib.starlette", "aqueue.contrib.aiohttp"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=re.escape(pip_install(extra))):
        importlib.import_module(module)


async def test_a_web_app_whose_redis_cannot_be_reached_fails_as_it_starts() -> None:
    unreachable = aqueue.App(f"redis://127.0.0.1:{free_port()}/0")
    producer_only = FastAPI(lifespan=lifespan(unreachable))
    with pytest.raises(aqueue.ConnectionFailed):
        async with LifespanManager(producer_only):
            pass
