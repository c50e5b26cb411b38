"""aqueue.sync: enqueue, read and wait from threads with no event loop, against real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import aqueue
from aqueue.sync import SyncApp
from aqueue.testing import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def producer(server: RedisServer, namespace: str) -> Iterator[SyncApp]:
    """A SyncApp of an app of its own (the worker's app runs on the test's loop)."""
    sync = SyncApp(aqueue.App(server.url, namespace=namespace))
    yield sync
    sync.close()


def tasks_of(app: aqueue.App) -> aqueue.Task[[int, int], int]:
    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    return add


async def test_threads_enqueue_and_wait_for_results_through_one_background_loop(
    app: aqueue.App, producer: SyncApp
) -> None:
    tasks_of(app)
    add = tasks_of(producer.app)

    def produce(base: int) -> list[int]:
        jobs = [producer.enqueue(add, base, i) for i in range(5)]
        return [job.result(timeout=10) for job in jobs]

    async with aqueue.Worker(app, concurrency=20):
        with ThreadPoolExecutor(8) as threads:
            results = await asyncio.to_thread(lambda: list(threads.map(produce, range(0, 80, 10))))
    assert results == [[base + i for i in range(5)] for base in range(0, 80, 10)]
    assert [t.name for t in threading.enumerate()].count("aqueue-sync") == 1


def test_a_job_enqueued_from_sync_code_reads_its_status_and_can_be_cancelled(
    producer: SyncApp,
) -> None:
    add = tasks_of(producer.app)
    job = producer.enqueue(add, 1, 2)  # no worker: it stays queued
    assert job.status() is aqueue.JobStatus.QUEUED
    assert producer.job(job.id).info().task == "add"
    assert job.cancel() is True
    with pytest.raises(aqueue.JobCancelled):
        job.result(timeout=1)


def test_a_job_enqueued_by_name_from_sync_code_is_queued(producer: SyncApp) -> None:
    job = producer.enqueue_by_name("reports.build", "2026-12", pages=3)
    assert job.status() is aqueue.JobStatus.QUEUED
    assert producer.run(producer.app.queue().stats()).queued == 1


def test_the_sync_enqueue_checks_arguments_like_the_async_one(producer: SyncApp) -> None:
    add = tasks_of(producer.app)
    with pytest.raises(aqueue.InvalidArguments):
        producer.enqueue(add, 1)  # type: ignore[call-arg]
    assert producer.run(producer.app.queue().stats()).queued == 0


async def test_a_sync_call_from_a_running_event_loop_says_to_await_instead(
    producer: SyncApp,
) -> None:
    add = tasks_of(producer.app)
    with pytest.raises(aqueue.ConfigurationError, match=r"await task\.enqueue"):
        producer.enqueue(add, 1, 2)


async def test_an_app_in_use_on_another_loop_is_refused_for_sync_calls(app: aqueue.App) -> None:
    add = tasks_of(app)
    await app.queue().stats()  # connected on the test's loop
    with pytest.raises(aqueue.ConfigurationError, match="App of its own"):
        await asyncio.to_thread(SyncApp(app).enqueue, add, 1, 2)


def test_a_task_of_another_app_is_refused(producer: SyncApp, server: RedisServer) -> None:
    other = tasks_of(aqueue.App(server.url))
    with pytest.raises(aqueue.ConfigurationError, match="belongs to another app"):
        producer.enqueue(other, 1, 2)


SCRIPT = """
import aqueue
from aqueue.sync import SyncApp

app = aqueue.App({url!r}, namespace={namespace!r})

@app.task
async def add(x: int, y: int) -> int:
    return x + y

job = SyncApp(app).enqueue(add, 2, 3)
print(job.status())
try:
    job.result(timeout=0.1)  # no worker: it times out, leaving a subscription open
except aqueue.ResultTimeout:
    print("still", job.status())
"""


def test_a_script_that_enqueues_exits_cleanly_without_closing_anything(
    server: RedisServer, namespace: str
) -> None:
    script = SCRIPT.format(url=server.url, namespace=namespace)
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "queued\nstill queued\n", "")


FORKING = """
import os
import aqueue
from aqueue.sync import SyncApp

app = aqueue.App({url!r}, namespace={namespace!r})
queue = SyncApp(app)
print("parent", queue.enqueue_by_name("tasks.add", 1, 2).status(), flush=True)
child = os.fork()
if child == 0:
    try:
        queue.enqueue_by_name("tasks.add", 3, 4)
    except aqueue.ConfigurationError as exc:
        print("child", exc, flush=True)
    raise SystemExit  # a normal exit: the exit handlers run in the child too
os.waitpid(child, 0)
"""


def test_a_process_forked_after_sync_calls_is_told_to_call_after_the_fork_and_exits_cleanly(
    server: RedisServer, namespace: str
) -> None:
    script = FORKING.format(url=server.url, namespace=namespace)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr  # the child's exit left the parent's loop alone
    parent, child = result.stdout.splitlines()
    assert parent == "parent queued"
    assert child.startswith("child aqueue.sync was first used before this process forked")
