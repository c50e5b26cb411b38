"""The examples, run for real: the FastAPI app over HTTP, the embedded worker as a process."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

import aqueue
from aqueue.testing import RedisServer
from examples import fastapi_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNFINISHED = {"queued", "scheduled", "running"}


@pytest.fixture
async def client(app: aqueue.App) -> AsyncIterator[httpx.AsyncClient]:
    """The example's API on the test server and namespace, its lifespan (worker) running."""
    # ASGITransport sends no lifespan events: LifespanManager runs the lifespan (the embedded
    # worker) and hands its state (the app, for the handlers) to each request.
    async with LifespanManager(fastapi_app.create_api(app)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://example") as the_client:
            yield the_client


async def poll(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """GET /jobs/{id} until the job has ended; its last view."""
    async with asyncio.timeout(5):
        while True:
            response = await client.get(f"/jobs/{job_id}")
            assert response.status_code == 200, response.text
            view: dict[str, Any] = response.json()
            if view["status"] not in UNFINISHED:
                return view
            await asyncio.sleep(0.02)


async def test_a_sum_enqueued_over_http_is_polled_until_it_succeeds(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/sum", params={"x": 2, "y": 3})
    assert response.status_code == 202
    job_id = response.json()["id"]

    first = await client.get(f"/jobs/{job_id}")
    assert first.json()["status"] in {"queued", "running"}
    assert await poll(client, job_id) == {
        "id": job_id,
        "status": "succeeded",
        "result": 5,
        "error": None,
    }


async def test_sum_now_waits_for_the_job_and_answers_its_result(
    client: httpx.AsyncClient, app: aqueue.App
) -> None:
    response = await client.get("/sum-now", params={"x": 20, "y": 22})
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == 42
    assert await app.job(body["id"]).status() is aqueue.JobStatus.SUCCEEDED


async def test_sum_now_answers_504_with_the_job_id_when_the_wait_runs_out(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastapi_app, "WAIT_SECONDS", 0.01)  # the task takes 0.1 s
    response = await client.get("/sum-now", params={"x": 1, "y": 1})
    assert response.status_code == 504
    found = re.search(r"poll /jobs/(\S+)", response.json()["detail"])
    assert found is not None
    assert (await poll(client, found[1]))["result"] == 2  # the job went on


async def test_a_job_nobody_enqueued_is_404_with_status_unknown(
    client: httpx.AsyncClient,
) -> None:
    for job_id in ["default:0123456789abcdef0123456789abcdef", "not-a-job-id"]:
        response = await client.get(f"/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json() == {"id": job_id, "status": "unknown", "result": None, "error": None}


async def test_a_failed_job_shows_its_error_and_no_result(
    client: httpx.AsyncClient, app: aqueue.App
) -> None:
    @app.task
    async def broken() -> None:
        raise ValueError("no such account")

    job = await broken.enqueue()
    view = await poll(client, job.id)
    assert view["status"] == "failed"
    assert view["error"] == "builtins.ValueError: no such account"
    assert view["result"] is None


async def test_the_events_of_a_sum_end_with_its_result(client: httpx.AsyncClient) -> None:
    job_id = (await client.post("/sum", params={"x": 2, "y": 3})).json()["id"]
    response = await client.get(f"/jobs/{job_id}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith('"result":5}\n\n')


def run_example(
    env: dict[str, str], script: str = "embedded_worker.py"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, os.path.join("examples", script)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": ROOT},
        timeout=30,
        cwd=ROOT,
    )


def test_the_embedded_worker_example_runs_its_jobs_and_stops_gracefully(
    server: RedisServer,
) -> None:
    result = run_example({**os.environ, "AQUEUE_URL": server.url})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"Redis at {server.url}" in lines[0]
    assert "results: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in lines
    ticks = re.search(r"ticked (\d+) times", result.stdout)
    assert ticks is not None
    assert int(ticks[1]) >= 5  # 0.2 s of jobs, a tick every 20 ms: the loop was never blocked
    assert "worker stopped; the last job succeeded with 144" in lines
    assert lines[-1] == "queue: queued=0 running=0 workers=0"


def test_the_embedded_worker_example_starts_its_own_valkey_without_aqueue_url() -> None:
    env = {name: value for name, value in os.environ.items() if name != "AQUEUE_URL"}
    result = run_example(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("AQUEUE_URL is not set: started an embedded Valkey")
    assert "worker stopped; the last job succeeded with 144" in result.stdout


def test_the_canvas_example_runs_a_chain_group_chord_and_dependency(server: RedisServer) -> None:
    result = run_example({**os.environ, "AQUEUE_URL": server.url}, "canvas.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "chain: 6 words on page 3",
        "group: [2, 4, 6, 8, 10]",
        "chord: all: 30 words",
        "after: sent 'report ready'",
        "failed: step 2 of 3 (__main__.parse) failed with builtins.ValueError: nothing to parse",
    ]


def test_the_hooks_example_shares_a_pool_carries_the_tenant_and_counts_signals(
    server: RedisServer,
) -> None:
    result = run_example({**os.environ, "AQUEUE_URL": server.url}, "hooks.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "worker start: database pool open",
        "acme has 3 orders",
        "globex has 5 orders",
        "retrying flaky_report in 0.1 s after ConnectionError('report service busy')",
        "report for acme",
        "worker stop: database pool closed",
        "signals: retried=1, started=4, succeeded=3",
    ]
