"""The dashboard's JSON API and pages (aqueue.web), through httpx's ASGI transport, against
real servers, real workers and real jobs."""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.exceptions import HTTPException
from starlette.requests import Request

import aqueue
from aqueue._redis._msgpack import named_value
from aqueue.testing import RedisServer
from aqueue.testing import _free_port as free_port
from aqueue.web import Auth, dashboard
from tests.helpers import eventually, has_status
from tests.internals import Keys, last_tick_key, pip_install
from tests.test_cli import ROOT, cli_env
from tests.test_docs_guides import blocks
from tests.web_helpers import task_stopping_halfway

XSS = "<img src=x onerror=alert(1)>"


def client_of(web: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(web), base_url=base_url)


@pytest.fixture
async def events_app(server: RedisServer, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(server.url, namespace=namespace, lease=3, events=True) as the_app:
        yield the_app


@pytest.fixture
async def client(app: aqueue.App) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(dashboard(app)) as the_client:
        yield the_client


@pytest.fixture
async def events_client(events_app: aqueue.App) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(dashboard(events_app)) as the_client:
        yield the_client


def small_worker(app: aqueue.App) -> aqueue.Worker:
    return aqueue.Worker(app, concurrency=5, grace_period=1)


def register_echo(app: aqueue.App) -> Any:
    @app.task(name="echo")
    async def echo(text: str) -> str:
        return text

    return echo


async def get_json(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


# -- installing -------------------------------------------------------------------------------


def test_importing_aqueue_imports_no_web_dependency() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, aqueue, aqueue.cli; "
            "print(sorted({m.partition('.')[0] for m in sys.modules} & "
            "{'starlette', 'jinja2', 'uvicorn', 'aqueue.web'}), 'aqueue.web' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.split() == ["[]", "False"]


def test_the_dashboard_without_its_dependencies_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # None in sys.modules: its import fails
    for name in [name for name in sys.modules if name.startswith("aqueue.web")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=re.escape(pip_install("web"))):
        importlib.import_module("aqueue.web")


# -- the JSON API -----------------------------------------------------------------------------


async def test_the_overview_counts_each_queue_and_lists_live_workers(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    await app.queue().pause()
    await app.enqueue("echo", "a")
    async with small_worker(app) as worker:
        overview = await get_json(client, "/api/overview")
    [queue] = overview["queues"]
    assert (queue["queue"], queue["queued"], queue["paused"], queue["workers"]) == (
        "default",
        1,
        True,
        1,
    )
    assert [w["id"] for w in overview["workers"]] == [worker.name]
    assert overview["workers"][0]["tasks"] == ["echo"]


async def test_the_overview_masks_the_password_of_the_redis_url(
    server: RedisServer, namespace: str
) -> None:
    admin = Redis.from_url(server.url)
    user = f"user-{namespace}"
    await admin.acl_setuser(
        user, enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], categories=["+@all"]
    )
    try:
        url = f"redis://{user}:s3cret@127.0.0.1:{server.port}/0"
        async with aqueue.App(url, namespace=namespace) as app, client_of(dashboard(app)) as web:
            overview = await get_json(web, "/api/overview")
            page = (await web.get("/")).text
    finally:
        await admin.acl_deluser(user)
        await admin.aclose()
    assert overview["redis"] == f"redis://{user}:***@127.0.0.1:{server.port}/0"
    assert "s3cret" not in page
    assert f"{user}:***@" in page


async def test_an_unreachable_server_is_a_503_that_shows_no_password() -> None:
    app = aqueue.App(f"redis://me:s3cret@127.0.0.1:{free_port()}/0")
    async with app, client_of(dashboard(app)) as web:
        page = await web.get("/")
        api = await web.get("/api/overview")
    assert (page.status_code, api.status_code) == (503, 503)
    assert "cannot reach Redis" in api.json()["error"]
    assert "s3cret" not in page.text + api.text
    assert "me:***@" in page.text


async def test_queued_jobs_are_listed_oldest_first(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    jobs = [await app.enqueue("echo", str(n)) for n in range(3)]
    listed = await get_json(client, "/api/jobs?queue=default&status=queued&limit=2")
    assert [(row["id"], row["task"], row["status"]) for row in listed] == [
        (job.id, "echo", "queued") for job in jobs[:2]
    ]


async def test_running_jobs_are_listed_with_their_worker(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    halfway = task_stopping_halfway(app)
    async with small_worker(app) as worker:
        job = await app.enqueue("slow")
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        listed = await get_json(client, "/api/jobs?status=running")
        queued = await get_json(client, "/api/jobs?status=queued")
        halfway.set()
        await job.result(timeout=10)
    assert [(row["id"], row["worker"]) for row in listed] == [(job.id, worker.name)]
    assert queued == []


async def test_each_worker_is_listed_with_the_jobs_it_runs(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    halfway = task_stopping_halfway(app)
    async with small_worker(app) as worker:
        job = await app.enqueue("slow")
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        [listed] = await get_json(client, "/api/workers")
        halfway.set()
        await job.result(timeout=10)
    assert (listed["id"], listed["jobs"]) == (worker.name, [job.id])


async def test_scheduled_jobs_are_listed_with_the_time_they_are_due(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    echo = register_echo(app)
    job = await echo.options(delay=600).enqueue("later")
    [row] = await get_json(client, "/api/jobs?status=scheduled")
    due = (await job.info()).due_at
    assert due is not None
    assert (row["id"], row["task"], row["at"]) == (job.id, "echo", due.isoformat())


async def test_a_scheduled_job_with_an_expiry_is_listed(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    """Its delayed-set member holds the expiry as a number among the strings."""
    echo = register_echo(app)
    job = await echo.options(delay=600, expires=3600).enqueue("later")
    listed = await get_json(client, "/api/jobs?status=scheduled")
    assert [(row["id"], row["task"]) for row in listed] == [(job.id, "echo")]


async def test_a_delayed_member_that_is_no_job_is_not_listed(
    app: aqueue.App, client: httpx.AsyncClient, redis: Redis
) -> None:
    echo = register_echo(app)
    job = await echo.options(delay=600).enqueue("later")
    await redis.zadd(Keys(app.namespace, "default").delayed, {b"garbage": 1})
    listed = await get_json(client, "/api/jobs?status=scheduled")
    assert [row["id"] for row in listed] == [job.id]


async def test_finished_jobs_are_listed_from_the_event_stream_newest_first(
    events_app: aqueue.App, events_client: httpx.AsyncClient
) -> None:
    register_echo(events_app)

    @events_app.task(name="boom")
    async def boom() -> None:
        raise ValueError("no")

    async with small_worker(events_app):
        first, second = [await events_app.enqueue("echo", t) for t in "ab"]
        failed = await events_app.enqueue("boom")
        for job in (first, second):
            await job.result(timeout=10)
        await eventually(lambda: has_status(failed, aqueue.JobStatus.FAILED))
    succeeded = await get_json(events_client, "/api/jobs?status=succeeded")
    assert {row["id"] for row in succeeded} == {first.id, second.id}
    assert [row["id"] for row in await get_json(events_client, "/api/jobs?status=failed")] == [
        failed.id
    ]


async def test_an_unknown_status_is_a_400_naming_the_statuses(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/jobs?status=lost")
    assert response.status_code == 400
    assert "use one of queued, running, scheduled" in response.json()["error"]


@pytest.mark.parametrize("path", ["/api/jobs?queue=defualt", "/api/dead-letters?queue=defualt"])
async def test_a_queue_nothing_knows_is_a_404_naming_the_known_ones(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert "no queue 'defualt'" in response.json()["error"]
    assert "Known queues: default" in response.json()["error"]


async def test_pausing_a_queue_nothing_knows_is_refused_and_pauses_nothing(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    response = await client.post("/api/queues/defualt/pause", json={})
    assert response.status_code == 404
    assert not await app.queue("defualt").is_paused()


async def test_a_queue_only_a_live_worker_serves_is_listed(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    async with aqueue.Worker(app, queues=["reports"], grace_period=1):
        response = await client.get("/api/jobs?queue=reports")
    assert (response.status_code, response.json()) == (200, [])


async def test_a_job_found_by_id_shows_its_result_attempts_worker_and_timeline(
    events_app: aqueue.App, events_client: httpx.AsyncClient
) -> None:
    register_echo(events_app)
    async with small_worker(events_app) as worker:
        job = await events_app.enqueue("echo", "hi")
        await job.result(timeout=10)
    record = await get_json(events_client, f"/api/jobs/{job.id}")
    assert (record["status"], record["result"], record["attempts"]) == ("succeeded", "hi", 1)
    assert (record["task"], record["queue"], record["worker"]) == ("echo", "default", worker.name)
    assert [event["type"] for event in record["timeline"]] == ["enqueued", "started", "succeeded"]


async def test_a_typed_result_shows_as_the_json_its_annotation_sends(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    @app.task(name="blob")
    async def blob() -> bytes:
        return b"\x00\xff"

    async with small_worker(app):
        job = await blob.enqueue()
        await job.result(timeout=10)
    record = await get_json(client, f"/api/jobs/{job.id}")
    assert record["result"] == base64.b64encode(b"\x00\xff").decode()


async def test_a_queued_job_shows_its_arguments(app: aqueue.App, client: httpx.AsyncClient) -> None:
    register_echo(app)
    job = await app.enqueue("echo", text="waiting")
    record = await get_json(client, f"/api/jobs/{job.id}")
    assert record["arguments"] == {"args": [], "kwargs": {"text": "waiting"}}


async def test_the_page_of_a_job_that_ran_shows_the_arguments_its_record_kept(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    async with small_worker(app):
        job = await app.enqueue("echo", text="kept after the run")
        await job.result(timeout=10)
    record = await get_json(client, f"/api/jobs/{job.id}")
    assert record["arguments"] == {"args": [], "kwargs": {"text": "kept after the run"}}
    kwargs = re.search(r'data-field="kwargs">(.*?)</pre>', await _page(client, job), re.DOTALL)
    assert kwargs is not None
    assert "kept after the run" in kwargs[1]


async def test_the_page_of_a_job_whose_arguments_were_too_large_to_keep_shows_their_size(
    server: RedisServer, namespace: str
) -> None:
    async with aqueue.App(server.url, namespace=namespace, kept_arguments_size=8) as app:
        register_echo(app)
        async with small_worker(app):
            job = await app.enqueue("echo", "more than eight bytes")
            await job.result(timeout=10)
        async with client_of(dashboard(app)) as client:
            record = await get_json(client, f"/api/jobs/{job.id}")
            page = await _page(client, job)
    assert record["arguments"] is None
    assert record["arguments_size"] > 8
    assert f"{record['arguments_size']} bytes, not kept" in page


async def _failed_job(app: aqueue.App, message: str) -> aqueue.Job[Any]:
    """A job of a task that raised ValueError(message), once a worker ran it."""

    @app.task(name="boom")
    async def boom() -> None:
        raise ValueError(message)

    async with small_worker(app):
        job = await app.enqueue("boom")
        await eventually(lambda: has_status(job, aqueue.JobStatus.FAILED))
    return job


async def _page(client: httpx.AsyncClient, job: aqueue.Job[Any]) -> str:
    response = await client.get(f"/jobs/{job.id}")
    assert response.status_code == 200, response.text
    return response.text


async def test_a_failed_job_shows_its_error_and_traceback(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    job = await _failed_job(app, "out of paper")
    error = (await get_json(client, f"/api/jobs/{job.id}"))["error"]
    assert (error["type"], error["message"]) == ("builtins.ValueError", "out of paper")
    assert "raise ValueError(message)" in error["traceback"]  # the task's own line


async def test_a_dead_lettered_job_shows_its_letter_and_the_arguments_it_kept(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    async with small_worker(app):
        job = await app.enqueue("not.deployed", 7, unit="kg")
        await eventually(lambda: has_status(job, aqueue.JobStatus.FAILED))
    record = await get_json(client, f"/api/jobs/{job.id}")
    assert record["arguments"] == {"args": [7], "kwargs": {"unit": "kg"}}
    assert record["dead_letter"]["reason"].startswith("no task named 'not.deployed'")


@pytest.mark.parametrize("job_id", ["default:0123456789abcdef", "not-an-id"])
async def test_a_job_without_a_record_is_a_404(client: httpx.AsyncClient, job_id: str) -> None:
    response = await client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 404
    assert job_id in response.json()["error"]


async def test_dead_letters_show_the_reason_and_the_original_arguments(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    async with small_worker(app):
        job = await app.enqueue("not.deployed", XSS, n=1)
        await eventually(lambda: has_status(job, aqueue.JobStatus.FAILED))
    [letter] = await get_json(client, "/api/dead-letters?queue=default")
    assert (letter["job_id"], letter["task"]) == (job.id, "not.deployed")
    assert letter["reason"].startswith("no task named 'not.deployed'")
    assert letter["arguments"] == {"args": [XSS], "kwargs": {"n": 1}}


async def test_schedules_show_their_last_and_next_tick(
    app: aqueue.App, client: httpx.AsyncClient, redis: Redis
) -> None:
    @app.cron("0 * * * *", name="hourly")
    async def hourly() -> None: ...

    [before] = await get_json(client, "/api/schedules")
    await redis.set(last_tick_key(app.namespace, "hourly"), repr(1_700_000_000.0))
    [after] = await get_json(client, "/api/schedules")
    assert (before["task"], before["last"]) == ("hourly", None)
    assert after["last"] == "2023-11-14T22:13:20+00:00"
    assert after["next"].endswith(":00:00+00:00")


async def test_a_periodic_task_that_fired_shows_its_last_tick(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    @app.periodic(every=0.2, name="often")
    async def often() -> None: ...

    async with small_worker(app):

        async def fired() -> bool:
            [schedule] = await get_json(client, "/api/schedules")
            return schedule["last"] is not None

        await eventually(fired)


# -- pages ------------------------------------------------------------------------------------

PAGES = ["/", "/jobs", "/jobs?status=succeeded", "/workers", "/dead-letters", "/schedules"]
LINK = re.compile(r'(?:href|src|action)="([^"]*)"')


def links_of(html: str) -> list[str]:
    return LINK.findall(html)


async def every_page(client: httpx.AsyncClient, job: aqueue.Job[Any]) -> dict[str, str]:
    pages = {}
    for path in [*PAGES, f"/jobs/{job.id}"]:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        pages[path] = response.text
    return pages


async def test_every_page_links_only_to_paths_of_its_own_origin(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    async with small_worker(app):
        job = await app.enqueue("echo", "x")
        await job.result(timeout=10)
        pages = await every_page(client, job)
    for path, html in pages.items():
        links = links_of(html)
        assert links, path
        assert all(link.startswith("/") and not link.startswith("//") for link in links), path


async def test_mounted_under_a_prefix_every_link_keeps_the_prefix(app: aqueue.App) -> None:
    register_echo(app)
    api = FastAPI()
    api.mount("/ops/aqueue", dashboard(app))
    async with client_of(api) as client:
        job = await app.enqueue("echo", "x")
        response = await client.get(f"/ops/aqueue/jobs?id={job.id}", follow_redirects=True)
        assert response.status_code == 200
        assert str(response.url).endswith(f"/ops/aqueue/jobs/{job.id}")
        pages = {}
        for path in PAGES:
            pages[path] = (await client.get(f"/ops/aqueue{path}")).text
        pages["job"] = response.text
    for path, html in pages.items():
        assert all(link.startswith("/ops/aqueue/") for link in links_of(html)), path


async def test_the_search_box_leads_to_the_job_page(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "x")
    response = await client.get("/jobs", params={"id": f" {job.id} "})
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job.id}"


async def test_task_data_is_escaped_in_every_page(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    queued = await app.enqueue("echo", XSS)
    async with small_worker(app):
        dead = await app.enqueue("not.deployed", XSS)
        await eventually(lambda: has_status(dead, aqueue.JobStatus.FAILED))
    for path in [f"/jobs/{queued.id}", "/dead-letters", f"/jobs/{dead.id}"]:
        html = (await client.get(path)).text
        assert XSS not in html, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path


async def test_pages_forbid_scripts_and_styles_of_other_origins(
    client: httpx.AsyncClient,
) -> None:
    policy = (await client.get("/")).headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy


async def test_the_page_script_polls_for_the_live_part_alone(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    await app.enqueue("echo", "x")
    html = (await client.get("/", headers={"X-Aqueue-Fragment": "1"})).text
    assert "<html" not in html
    assert "<h1>Overview</h1>" in html
    assert "default" in html


async def test_the_live_part_of_a_page_leaves_its_filters_out(client: httpx.AsyncClient) -> None:
    """A refresh must not undo a filter being chosen."""
    for path in ["/jobs?status=failed", "/dead-letters"]:
        page = (await client.get(path)).text
        live = (await client.get(path, headers={"X-Aqueue-Fragment": "1"})).text
        assert 'class="filters"' in page, path
        assert 'class="filters"' not in live, path


@pytest.mark.parametrize("size", [3, 40, 300, 70_000])
async def test_the_members_of_a_delayed_set_read_back_whatever_their_size(
    redis: Redis, size: int
) -> None:
    """cmsgpack, which packs them, heads a string by its size (fixstr, str8, str16, str32)."""
    fields = [b"p", b"x" * size, b"j", b"default:ab"]
    packed = await redis.eval("return cmsgpack.pack(ARGV)", 0, *fields)
    assert (named_value(packed, b"p"), named_value(packed, b"j")) == (b"x" * size, b"default:ab")


@pytest.mark.parametrize("member", [b"", b"\x92\xa1j", b"\x91\x01", b"not msgpack", b"\x90\x90"])
def test_a_member_that_is_no_array_of_names_and_values_names_no_job(member: bytes) -> None:
    assert named_value(member, b"j") is None


async def test_the_page_of_a_job_that_ended_stops_refreshing(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "x")
    waiting = (await client.get(f"/jobs/{job.id}")).text
    await job.cancel()
    ended = (await client.get(f"/jobs/{job.id}")).text
    assert '<main id="live" data-live>' in waiting
    assert '<main id="live">' in ended


# -- actions ----------------------------------------------------------------------------------


async def test_a_tool_cancels_a_queued_job_with_a_json_post(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "x")
    response = await client.post(f"/api/jobs/{job.id}/cancel", json={})
    assert response.json() == {"message": f"cancelled {job.id}"}
    assert await job.status() is aqueue.JobStatus.CANCELLED


def token_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_a_page_form_acts_then_returns_to_the_page_with_what_it_did(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    token = token_of((await client.get("/")).text)
    response = await client.post(
        "/api/queues/default/pause", data={"csrf": token, "next": "/jobs?status=queued"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/jobs?status=queued"
    assert await app.queue().is_paused()
    page = await client.get("/jobs?status=queued")
    assert '<p class="flash" role="status">paused default</p>' in page.text
    assert "flash" not in (await client.get("/jobs")).text  # shown once


async def test_a_form_returns_to_no_other_site(client: httpx.AsyncClient) -> None:
    token = token_of((await client.get("/")).text)
    for elsewhere in ["//evil.example/x", "https://evil.example/", "/\\evil.example"]:
        response = await client.post(
            "/api/queues/default/resume", data={"csrf": token, "next": elsewhere}
        )
        assert response.headers["location"] == "/", elsewhere


async def test_a_post_from_another_site_is_refused(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    token = token_of((await client.get("/")).text)
    response = await client.post(
        "/api/queues/default/pause",
        data={"csrf": token, "next": "/"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "another site" in response.text
    assert not await app.queue().is_paused()


async def test_behind_a_proxy_a_post_from_the_host_the_browser_asked_for_is_allowed(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/api/queues/default/pause",
        json={},
        headers={"Origin": "https://ops.example", "X-Forwarded-Host": "ops.example"},
    )
    assert response.status_code == 200
    assert await app.queue().is_paused()


async def test_a_form_without_the_token_of_its_cookie_is_refused(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    await client.get("/")  # the browser holds a token cookie, but a forged form cannot read it
    response = await client.post("/api/queues/default/pause", data={"csrf": "guess", "next": "/"})
    assert response.status_code == 403
    assert not await app.queue().is_paused()


async def test_read_only_refuses_every_action_and_shows_no_button(app: aqueue.App) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "x")
    async with client_of(dashboard(app, read_only=True)) as client:
        pages = await every_page(client, job)
        refused = await client.post(f"/api/jobs/{job.id}/cancel", json={})
    assert refused.status_code == 403
    assert await job.status() is aqueue.JobStatus.QUEUED
    for path, html in pages.items():
        assert 'method="post"' not in html, path
    assert "Read-only" in pages["/"]


async def test_pause_and_resume_a_queue(app: aqueue.App, client: httpx.AsyncClient) -> None:
    await client.post("/api/queues/default/pause", json={})
    assert await app.queue().is_paused()
    await client.post("/api/queues/default/resume", json={})
    assert not await app.queue().is_paused()


async def test_replay_and_purge_dead_letters(app: aqueue.App, client: httpx.AsyncClient) -> None:
    async with small_worker(app):
        for _ in range(2):
            job = await app.enqueue("not.deployed")
            await eventually(functools.partial(has_status, job, aqueue.JobStatus.FAILED))
    replayed = await client.post("/api/queues/default/dead-letters/replay", json={})
    assert replayed.json() == {"message": "replayed 2 job(s) into default"}
    assert (await app.queue().stats()).queued == 2
    async with small_worker(app):
        await eventually(lambda: _dead_letters(app, 2))
    purged = await client.post("/api/queues/default/dead-letters/purge", json={})
    assert purged.json() == {"message": "deleted 2 dead letter(s) of default"}
    assert await app.queue().dead_letters() == []


async def _dead_letters(app: aqueue.App, count: int) -> bool:
    return len(await app.queue().dead_letters()) == count


async def test_retry_runs_a_failed_job_again_from_its_dead_letter(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    attempts = 0

    @app.task(name="flaky", dead_letter_failures=True)
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("not yet")
        return "done"

    async with small_worker(app):
        job = await app.enqueue("flaky")
        await eventually(lambda: has_status(job, aqueue.JobStatus.FAILED))
        await eventually(lambda: _dead_letters(app, 1))
        response = await client.post(f"/api/jobs/{job.id}/retry", json={})
        assert response.json() == {"message": f"{job.id} is queued again"}
        assert await job.result(timeout=10) == "done"


async def test_retry_of_a_job_without_a_dead_letter_says_why_not(
    app: aqueue.App, client: httpx.AsyncClient
) -> None:
    job = await _failed_job(app, "no")
    response = await client.post(f"/api/jobs/{job.id}/retry", json={})
    assert response.status_code == 409
    assert "dead_letter_failures=True" in response.json()["error"]


async def test_ping_a_worker(app: aqueue.App, client: httpx.AsyncClient) -> None:
    async with small_worker(app) as worker:
        response = await client.post(f"/api/workers/{worker.name}/ping", json={})
    assert response.json() == {"message": f"{worker.name}: pong"}


async def test_shut_down_a_worker(app: aqueue.App, client: httpx.AsyncClient) -> None:
    async with small_worker(app) as worker:
        response = await client.post(f"/api/workers/{worker.name}/shutdown", json={})
        assert response.json() == {"message": f"{worker.name}: stopping"}
        await eventually(lambda: _workers(app, 0))  # a stopped worker leaves the registry


async def _workers(app: aqueue.App, count: int) -> bool:
    return len(await app.workers()) == count


async def test_a_command_to_a_worker_that_is_gone_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/workers/nobody-1-abc/ping", json={})
    assert response.status_code == 404
    assert "no live worker named nobody-1-abc" in response.json()["error"]


# -- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [True, False])
async def test_auth_returning_false_answers_401(app: aqueue.App, allowed: bool) -> None:
    async with client_of(dashboard(app, auth=lambda request: allowed)) as client:
        statuses = {(await client.get(path)).status_code for path in ["/", "/api/overview"]}
    assert statuses == ({200} if allowed else {401})


async def test_auth_may_be_a_coroutine_function_reading_the_request(app: aqueue.App) -> None:
    async def by_header(request: Request) -> bool:
        await asyncio.sleep(0)
        return request.headers.get("x-user") == "ops"

    async with client_of(dashboard(app, auth=by_header)) as client:
        refused = await client.get("/api/workers")
        allowed = await client.get("/api/workers", headers={"x-user": "ops"})
    assert (refused.status_code, allowed.status_code) == (401, 200)


async def test_auth_may_raise_its_own_http_error(app: aqueue.App) -> None:
    def basic(request: Request) -> bool:
        raise HTTPException(401, "who are you?", headers={"WWW-Authenticate": "Basic"})

    auth: Auth = basic
    async with client_of(dashboard(app, auth=auth)) as client:
        response = await client.get("/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Basic"
    assert "who are you?" in response.text


# -- the command ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_dashboard_command_serves_it_on_loopback(server: RedisServer, namespace: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aqueue", "dashboard", "tests.cli_app:app", "--port", str(port)],
        env=cli_env(server, namespace),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        overview = _when_served(f"http://127.0.0.1:{port}/api/overview")
        assert overview["namespace"] == namespace
        assert _listening_on(port) == {"127.0.0.1"}
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=10)
    # uvicorn stops gracefully on SIGTERM, then ends by the signal.
    assert b"Application shutdown complete" in errors


@pytest.mark.slow
def test_the_dashboard_command_read_only_refuses_actions(
    server: RedisServer, namespace: str
) -> None:
    port = free_port()
    command = ["dashboard", "tests.cli_app:app", "--port", str(port), "--read-only"]
    process = subprocess.Popen(
        [sys.executable, "-m", "aqueue", *command],
        env=cli_env(server, namespace),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _when_served(f"http://127.0.0.1:{port}/api/overview")
        refused = httpx.post(f"http://127.0.0.1:{port}/api/queues/default/pause", json={})
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert refused.status_code == 403


def _when_served(url: str) -> Any:
    deadline = time.monotonic() + 20
    while True:
        try:
            return httpx.get(url).raise_for_status().json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _listening_on(port: int) -> set[str]:
    """The local IPv4 addresses of the sockets listening on ``port``, from /proc/net/tcp
    (every Linux has it; ``ss`` is not installed on a bare machine)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, port_hex = local.partition(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return addresses


# -- the guide's examples ---------------------------------------------------------------------


@pytest.mark.parametrize(("block", "name"), [(0, "api"), (1, "web")])
async def test_the_guides_basic_auth_examples_ask_for_a_login_and_let_the_operator_in(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch, block: int, name: str
) -> None:
    monkeypatch.setenv("DASHBOARD_PASSWORD", "s3cret")
    code = blocks("dashboard.md", "python")[block]
    scope: dict[str, Any] = {}
    exec(compile(code, "dashboard.md", "exec"), scope)
    app: aqueue.App = scope["app"]
    app.url, app.namespace = server.url, namespace
    async with app, LifespanManager(scope[name]) as manager, client_of(manager.app) as client:
        anonymous = await client.get("/aqueue/")
        wrong = await client.get("/aqueue/", auth=("ops", "guess"))
        operator = await client.get("/aqueue/api/overview", auth=("ops", "s3cret"))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert wrong.status_code == 401
    assert operator.json()["namespace"] == namespace
