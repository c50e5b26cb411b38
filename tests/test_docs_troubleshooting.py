"""The Troubleshooting page quotes the messages aqueue gives: each test here brings a symptom
about against a real server and checks that the page quotes its message word for word."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, has_status
from tests.test_docs_blocks import blocks_of

ONE_LOOP = True  # the messages do not depend on the event loop

PAGE = Path(__file__).resolve().parent.parent / "docs" / "guide" / "troubleshooting.md"
HEX_ID = re.compile(r"[0-9a-f]{32}")


def assert_quoted(message: str, server: RedisServer, namespace: str) -> None:
    """The page quotes ``message`` whole, as a text block or as inline code, with any job id,
    this test's server and namespace as the page writes them (line breaks anywhere)."""

    def canonical(text: str) -> str:
        text = text.replace(server.url, "redis://localhost:6379/0")
        text = text.replace(f"'{namespace}'", "'aqueue'")
        text = re.sub(r"script: [^)]*", "script: ...", text)  # the server's script line
        return " ".join(HEX_ID.sub("<id>", text).split())

    page = PAGE.read_text()
    blocks = [block.code for block in blocks_of(PAGE) if block.language == "text"]
    inline = re.findall(r"(?<!`)`([^`]+)`(?!`)", page)
    assert canonical(message) in {canonical(quote) for quote in (*blocks, *inline)}


async def failure_of(job: aqueue.Job[Any]) -> str:
    with pytest.raises(aqueue.AqueueError) as caught:
        await job.result(timeout=10)
    return str(caught.value)


@pytest.fixture
async def worker_app(app: aqueue.App) -> AsyncIterator[aqueue.App]:
    """An app with a worker running, whose tasks are those of a ``send.py`` run as a module."""
    worker = aqueue.App(app.url, namespace=app.namespace, lease=3)

    @worker.task(name="send.hello")
    async def hello() -> None: ...

    @worker.task(name="myproj.tasks.slow", timeout=1)
    async def slow() -> None:
        await asyncio.sleep(5)

    async with worker, aqueue.Worker(worker, grace_period=0.1):
        yield worker


async def test_a_job_no_worker_takes_gives_the_quoted_result_timeout(
    app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    job = await app.enqueue("myproj.tasks.add", 2, 3)
    with pytest.raises(aqueue.ResultTimeout) as caught:
        await job.result(timeout=1)
    assert_quoted(str(caught.value), server, namespace)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A ``myproj.tasks:app`` configured from the environment, as the page's commands name."""
    (tmp_path / "myproj").mkdir()
    (tmp_path / "myproj" / "__init__.py").write_text("")
    (tmp_path / "myproj" / "tasks.py").write_text(
        "import aqueue\n\napp = aqueue.App()\n\n\n@app.task\nasync def add(x: int, y: int) -> int:"
        "\n    return x + y\n"
    )
    return tmp_path


def test_check_of_a_namespace_without_workers_gives_the_quoted_error(
    project: Path, server: RedisServer, namespace: str
) -> None:
    env = {**os.environ, "AQUEUE_URL": server.url, "AQUEUE_NAMESPACE": namespace}
    check = subprocess.run(
        [sys.executable, "-m", "aqueue", "check", "myproj.tasks:app"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 1
    assert_quoted(check.stderr, server, namespace)


async def test_a_task_enqueued_from_a_script_run_as_main_gives_the_quoted_failure(
    app: aqueue.App, worker_app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    job = await app.enqueue("__main__.hello")
    assert_quoted(await failure_of(job), server, namespace)


async def test_a_task_no_worker_registers_gives_the_quoted_failure(
    app: aqueue.App, worker_app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    job = await app.enqueue("emails.send", "a@b.c")
    assert_quoted(await failure_of(job), server, namespace)


async def test_a_task_past_its_timeout_gives_the_quoted_failure(
    app: aqueue.App, worker_app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    job = await app.enqueue("myproj.tasks.slow")
    assert_quoted(await failure_of(job), server, namespace)


async def test_an_expired_result_gives_the_quoted_error(
    app: aqueue.App, worker_app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    hello = worker_app.tasks["send.hello"]
    job = await hello.options(result_ttl=1).enqueue()
    await job.result(timeout=10)
    await eventually(lambda: has_status(job, aqueue.JobStatus.UNKNOWN), timeout=5)
    assert_quoted(await failure_of(job), server, namespace)


async def test_a_job_expired_before_it_started_gives_the_quoted_cancel(
    app: aqueue.App, server: RedisServer, namespace: str
) -> None:
    @app.task(name="send.hello")
    async def hello() -> None: ...

    job = await hello.options(expires=0.05).enqueue()
    await asyncio.sleep(0.2)
    async with aqueue.Worker(app):
        assert_quoted(await failure_of(job), server, namespace)


async def test_a_worker_stopped_mid_job_logs_the_quoted_hand_back(
    app: aqueue.App, caplog: pytest.LogCaptureFixture, server: RedisServer, namespace: str
) -> None:
    started = asyncio.Event()

    @app.task
    async def long() -> None:
        started.set()
        await asyncio.sleep(10)

    with caplog.at_level(logging.WARNING, logger="aqueue"):
        async with aqueue.Worker(app, grace_period=0.1):
            await long.enqueue()
            await asyncio.wait_for(started.wait(), 10)
    [handed_back] = [r.getMessage() for r in caplog.records if "handing" in r.getMessage()]
    assert_quoted(handed_back, server, namespace)


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of the test's own: its limits are changed."""
    with RedisServer.valkey() as running:
        yield running


async def test_a_server_at_its_maxclients_gives_the_quoted_error(own_server: RedisServer) -> None:
    admin = Redis.from_url(own_server.url)
    holders = [Redis.from_url(own_server.url) for _ in range(3)]
    try:
        await admin.config_set("maxclients", 4)
        for holder in holders:
            await holder.ping()
        async with aqueue.App(own_server.url, namespace="full") as app:
            with pytest.raises(aqueue.ConnectionFailed) as caught:
                await app.enqueue("myproj.tasks.add", 2, 3)
    finally:
        for client in (*holders, admin):
            await client.aclose()
    assert_quoted(str(caught.value), own_server, "full")


async def test_a_server_at_its_maxmemory_gives_the_quoted_error(own_server: RedisServer) -> None:
    admin = Redis.from_url(own_server.url)
    try:
        await admin.set("ballast", b"x" * 2_000_000)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1_000_000)
        async with aqueue.App(own_server.url, namespace="full") as app:
            with pytest.raises(aqueue.ServerError) as caught:
                await app.enqueue("myproj.tasks.add", 2, 3)
    finally:
        await admin.aclose()
    assert_quoted(str(caught.value), own_server, "full")
