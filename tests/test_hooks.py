"""Worker lifecycle hooks, and the typed resources they hand to tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

import aqueue
from aqueue.testing import RedisServer
from tests.test_cli import cli_env, run_cli


class Pool:
    """Stands in for a database pool a worker opens once and shares with its tasks."""

    def __init__(self) -> None:
        self.closed = False

    async def fetch(self, query: str) -> str:
        return f"rows of {query}"


DB = aqueue.ResourceKey[Pool]("db")


async def test_start_hooks_run_before_the_first_job_and_stop_hooks_after_the_last(
    app: aqueue.App,
) -> None:
    events: list[str] = []

    @app.on_worker_start
    async def open_db(worker: aqueue.Worker) -> None:
        events.append("open db")

    @app.on_worker_stop
    async def close_db(worker: aqueue.Worker) -> None:
        events.append("close db")

    @app.on_worker_start
    def open_cache(worker: aqueue.Worker) -> None:  # plain functions work too
        events.append("open cache")

    @app.on_worker_stop
    def close_cache(worker: aqueue.Worker) -> None:
        events.append("close cache")

    @app.task
    async def work() -> None:
        events.append("job")

    job = await work.enqueue()
    async with aqueue.Worker(app):
        await job.result(timeout=5)
        assert events == ["open db", "open cache", "job"]
    # Undone in reverse: what was set up last is torn down first.
    assert events == ["open db", "open cache", "job", "close cache", "close db"]
    assert await job.status() is aqueue.JobStatus.SUCCEEDED


async def test_a_resource_provided_by_a_start_hook_reaches_async_and_sync_tasks(
    app: aqueue.App,
) -> None:
    @app.on_worker_start
    async def open_db(worker: aqueue.Worker) -> None:
        worker.provide(DB, Pool())

    @app.on_worker_stop
    async def close_db(worker: aqueue.Worker) -> None:
        worker.resource(DB).closed = True

    @app.task
    async def query(table: str) -> str:
        return await aqueue.current_job().resource(DB).fetch(table)

    @app.task
    def identity() -> int:
        return id(aqueue.current_job().resource(DB))

    async with aqueue.Worker(app) as worker:
        assert await (await query.enqueue("users")).result(timeout=5) == "rows of users"
        assert await (await identity.enqueue()).result(timeout=5) == id(worker.resource(DB))
    assert worker.resource(DB).closed


async def test_a_task_asking_for_a_resource_nobody_provided_fails_saying_where_to_provide_it(
    app: aqueue.App,
) -> None:
    @app.task
    async def query() -> str:
        return await aqueue.current_job().resource(DB).fetch("users")

    async with aqueue.Worker(app):
        job = await query.enqueue()
        with pytest.raises(aqueue.TaskFailed, match="on_worker_start") as failure:
            await job.result(timeout=5)
    assert failure.value.type == "aqueue.ResourceNotProvided"
    assert "'db'" in failure.value.message


async def test_a_failing_start_hook_stops_the_start_and_undoes_the_hooks_before_it(
    app: aqueue.App,
) -> None:
    events: list[str] = []

    @app.on_worker_start
    async def open_db(worker: aqueue.Worker) -> None:
        events.append("open db")

    @app.on_worker_stop
    async def close_db(worker: aqueue.Worker) -> None:
        events.append("close db")

    @app.on_worker_start
    async def open_broker(worker: aqueue.Worker) -> None:
        raise ConnectionRefusedError("broker down")

    @app.on_worker_stop
    async def close_broker(worker: aqueue.Worker) -> None:
        events.append("close broker")  # its start never succeeded: must not run

    @app.task
    async def work() -> None:
        events.append("job")

    job = await work.enqueue()
    with pytest.raises(aqueue.WorkerStartError, match="open_broker failed") as failure:
        async with aqueue.Worker(app):
            pass
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)
    assert events == ["open db", "close db"]
    assert await job.status() is aqueue.JobStatus.QUEUED  # nothing was fetched


async def test_a_failing_stop_hook_is_logged_and_the_other_stop_hooks_still_run(
    app: aqueue.App, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[str] = []

    @app.on_worker_stop
    async def close_db(worker: aqueue.Worker) -> None:
        closed.append("db")

    @app.on_worker_stop
    async def close_broken(worker: aqueue.Worker) -> None:
        raise RuntimeError("already closed")

    with caplog.at_level(logging.ERROR, logger="aqueue.worker"):
        async with aqueue.Worker(app):
            pass
    assert closed == ["db"]
    assert "on_worker_stop hook" in caplog.text
    assert "close_broken" in caplog.text
    assert "RuntimeError: already closed" in caplog.text


async def test_a_worker_run_until_stopped_runs_the_hooks_too(app: aqueue.App) -> None:
    events: list[str] = []

    @app.on_worker_start
    async def opened(worker: aqueue.Worker) -> None:
        events.append("start")
        # The start hook runs inside run(): stop once the worker serves.
        asyncio.get_running_loop().call_soon(worker.stop)

    @app.on_worker_stop
    async def closed(worker: aqueue.Worker) -> None:
        events.append("stop")

    await asyncio.wait_for(aqueue.Worker(app).run(handle_signals=False), 10)
    assert events == ["start", "stop"]


async def test_a_resource_can_be_provided_before_an_embedded_worker_starts(
    app: aqueue.App,
) -> None:
    @app.task
    async def query() -> str:
        return await aqueue.current_job().resource(DB).fetch("orders")

    worker = aqueue.Worker(app)
    worker.provide(DB, Pool())
    async with worker:
        assert await (await query.enqueue()).result(timeout=5) == "rows of orders"


def test_reading_a_resource_nobody_provided_names_the_key(app: aqueue.App) -> None:
    with pytest.raises(aqueue.ResourceNotProvided, match="no resource 'db'"):
        aqueue.Worker(app).resource(DB)


def test_the_worker_command_exits_1_with_one_line_when_a_start_hook_fails(
    server: RedisServer, namespace: str
) -> None:
    result = run_cli("worker", "tests.hooks_app:app", env=cli_env(server, namespace))
    assert result.returncode == 1
    last = result.stderr.splitlines()[-1]
    assert last.startswith(
        "error: on_worker_start hook open_db failed: ConnectionRefusedError: "
        "database at db:5432 refused the connection. Worker "
    )
    assert last.endswith("did not start; fix what the hook sets up")
    assert "Traceback" not in result.stderr
