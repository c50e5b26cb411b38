"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
server, real workers and real jobs, the dashboard served by uvicorn on a loopback port.

Set AQUEUE_SCREENSHOTS=1 to save a screenshot of each page into docs/assets/dashboard/ (the
docs show them); CI leaves the tree alone.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect

import aqueue
from aqueue.testing import RedisServer
from aqueue.testing import _free_port as free_port
from aqueue.web import dashboard
from tests.conftest import IN_CI
from tests.helpers import eventually, has_status
from tests.web_helpers import task_stopping_halfway

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ONE_LOOP = True
"""Playwright's driver and uvicorn run on the test's loop: asyncio's is enough."""

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "assets" / "dashboard"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One server kind is enough here: what is tested is the browser's side."""
    with RedisServer.valkey() as running:
        yield running


@pytest.fixture
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("CI needs Debian's chromium: .ci/run installs it with apt")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # Debian's build: Playwright's own browser download cannot be reached everywhere.
        launched = await playwright.chromium.launch(executable_path=chromium)
        yield launched
        await launched.close()


@asynccontextmanager
async def serving(web: Any) -> AsyncIterator[str]:
    """``web`` served by uvicorn on a free loopback port, on this loop; yields its address."""
    port = free_port()
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    running = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn's server has no event to wait on
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await running


@dataclass
class Tab:
    """A page, with what went wrong in it and the dialogs it opened (confirms are accepted
    unless ``confirm`` is False)."""

    page: Page
    base: str
    confirm: bool = True
    errors: list[str] = field(default_factory=list)
    dialogs: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", self._answer)
        self.page.on("request", lambda request: self.requests.append(request.url))

    async def _answer(self, dialog: Dialog) -> None:
        self.dialogs.append((dialog.type, dialog.message))
        await (dialog.accept() if self.confirm else dialog.dismiss())

    async def open(self, path: str, screenshot: str | None = None) -> None:
        response = await self.page.goto(self.base + path)
        assert response is not None
        assert response.status == 200, (path, await response.text())
        if screenshot and os.environ.get("AQUEUE_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=SCREENSHOTS / f"{screenshot}.png", full_page=True)


@asynccontextmanager
async def tab_on(browser: Browser, web: Any, *, confirm: bool = True) -> AsyncIterator[Tab]:
    async with serving(web) as base:
        context = await browser.new_context(viewport={"width": 1280, "height": 720})
        try:
            yield Tab(await context.new_page(), base, confirm)
        finally:
            await context.close()


def small_worker(app: aqueue.App) -> aqueue.Worker:
    return aqueue.Worker(app, concurrency=5, grace_period=1)


def register_echo(app: aqueue.App) -> None:
    @app.task(name="echo")
    async def echo(text: str) -> str:
        return text


async def test_every_page_loads_without_errors_and_asks_only_its_own_origin(
    server: RedisServer, namespace: str, browser: Browser
) -> None:
    app = aqueue.App(server.url, namespace=namespace, lease=3, events=True)
    register_echo(app)

    @app.task(name="reports.render")
    async def render(report: str) -> None:
        raise ValueError(f"no template for {report!r}")

    @app.cron("*/5 * * * *", name="reports.hourly")
    async def hourly() -> None: ...

    halfway = task_stopping_halfway(app)
    async with app, small_worker(app), tab_on(browser, dashboard(app)) as tab:
        jobs = [await app.enqueue("echo", f"hello {n}") for n in range(3)]
        for job in jobs:
            await job.result(timeout=10)
        failed = await app.enqueue("reports.render", "weekly")
        running = await app.enqueue("slow")
        dead = await app.enqueue("not.deployed", 42)
        for job, status in [(failed, "FAILED"), (running, "RUNNING"), (dead, "FAILED")]:
            await eventually(functools.partial(has_status, job, aqueue.JobStatus[status]))
        await tab.open("/", "overview")
        # One round of live updates, with no error either.
        async with tab.page.expect_response(lambda r: "x-aqueue-fragment" in r.request.headers):
            pass
        await tab.open("/jobs?status=succeeded", "jobs")
        await tab.open(f"/jobs/{jobs[0].id}", "job")
        await tab.open(f"/jobs/{failed.id}", "job-failed")
        await tab.open(f"/jobs/{running.id}", "job-running")
        await tab.open("/workers", "workers")
        await tab.open("/dead-letters", "dead-letters")
        await tab.open("/schedules", "schedules")
        halfway.set()
    assert tab.errors == []
    assert all(url.startswith(tab.base + "/") for url in tab.requests), tab.requests


async def test_a_job_found_by_id_shows_its_result(app: aqueue.App, browser: Browser) -> None:
    register_echo(app)
    async with small_worker(app), tab_on(browser, dashboard(app)) as tab:
        job = await app.enqueue("echo", "found me")
        await job.result(timeout=10)
        await tab.open("/")
        await tab.page.get_by_label("Find a job by its id").fill(job.id)
        await tab.page.keyboard.press("Enter")
        await expect(tab.page.locator("h1")).to_contain_text(job.id)
        await expect(tab.page.locator("pre[data-field=result]")).to_have_text('"found me"')
    assert tab.errors == []


async def test_cancel_a_job_from_its_page_after_confirming(
    app: aqueue.App, browser: Browser
) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "never")  # no worker: it waits
    async with tab_on(browser, dashboard(app)) as tab:
        await tab.open(f"/jobs/{job.id}")
        await tab.page.get_by_role("button", name="Cancel").click()
        await expect(tab.page.locator(".flash")).to_have_text(f"cancelled {job.id}")
    assert tab.dialogs == [("confirm", f"Cancel job {job.id}?")]
    assert await job.status() is aqueue.JobStatus.CANCELLED


async def test_a_dismissed_confirmation_cancels_nothing(app: aqueue.App, browser: Browser) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "keep")
    async with tab_on(browser, dashboard(app), confirm=False) as tab:
        await tab.open(f"/jobs/{job.id}")
        await tab.page.get_by_role("button", name="Cancel").click()
        await expect(tab.page.locator(".flash")).to_have_count(0)
    assert [kind for kind, _ in tab.dialogs] == ["confirm"]
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_replay_dead_letters_from_their_page(app: aqueue.App, browser: Browser) -> None:
    async with small_worker(app):
        job = await app.enqueue("not.deployed", 1)
        await eventually(lambda: has_status(job, aqueue.JobStatus.FAILED))
    async with tab_on(browser, dashboard(app)) as tab:
        await tab.open("/dead-letters")
        await expect(tab.page.locator("tbody tr")).to_have_count(1)
        await tab.page.get_by_role("button", name="Replay all").click()
        await expect(tab.page.locator(".flash")).to_have_text("replayed 1 job(s) into default")
        await expect(tab.page.locator("tbody")).to_contain_text("No dead letters")
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_pause_and_resume_a_queue_from_the_overview(
    app: aqueue.App, browser: Browser
) -> None:
    async with tab_on(browser, dashboard(app)) as tab:
        await tab.open("/")
        await tab.page.get_by_role("button", name="Pause").click()
        await expect(tab.page.get_by_role("button", name="Resume")).to_be_visible()
        assert await app.queue().is_paused()
        await tab.page.get_by_role("button", name="Resume").click()
        await expect(tab.page.get_by_role("button", name="Pause")).to_be_visible()
        assert not await app.queue().is_paused()
    assert tab.errors == []


async def test_task_data_shaped_like_html_stays_text(app: aqueue.App, browser: Browser) -> None:
    register_echo(app)
    async with small_worker(app):
        finished = await app.enqueue("echo", XSS)
        await finished.result(timeout=10)
        dead = await app.enqueue("not.deployed", XSS)
        await eventually(lambda: has_status(dead, aqueue.JobStatus.FAILED))
    queued = await app.enqueue("echo", XSS)
    async with tab_on(browser, dashboard(app)) as tab:
        for path in [f"/jobs/{finished.id}", f"/jobs/{queued.id}", "/dead-letters"]:
            await tab.open(path)
            await expect(tab.page.locator("main pre").first).to_contain_text(XSS)
            assert await tab.page.locator("main img").count() == 0, path
        await tab.open(f"/jobs/{queued.id}", "job-escaped")
    assert tab.dialogs == []


async def test_read_only_shows_no_action_and_refuses_one_posted_anyway(
    app: aqueue.App, browser: Browser
) -> None:
    register_echo(app)
    job = await app.enqueue("echo", "x")
    async with tab_on(browser, dashboard(app, read_only=True)) as tab:
        for path in ["/", f"/jobs/{job.id}", "/jobs"]:
            await tab.open(path)
            assert await tab.page.locator("main form[method=post]").count() == 0, path
        status = await tab.page.evaluate(
            """async (path) => (await fetch(path, {
                method: "POST", headers: {"Content-Type": "application/json"}, body: "{}",
            })).status""",
            f"/api/jobs/{job.id}/cancel",
        )
    assert status == 403
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_a_job_page_follows_the_job_without_a_reload(
    app: aqueue.App, browser: Browser
) -> None:
    halfway = task_stopping_halfway(app)
    async with small_worker(app), tab_on(browser, dashboard(app)) as tab:
        job = await app.enqueue("slow")
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        await tab.open(f"/jobs/{job.id}")
        await expect(tab.page.locator("main")).to_contain_text("halfway")
        navigations: list[str] = []
        tab.page.on("framenavigated", lambda frame: navigations.append(frame.url))
        halfway.set()
        await expect(tab.page.locator("pre[data-field=result]")).to_have_text('"done"')
    assert navigations == []
    assert tab.errors == []
