"""Supervision: a worker whose loop dies stops with that loop's error, never half-alive."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import aqueue
from aqueue.testing import RedisServer
from tests.helpers import eventually, has_status
from tests.internals import Acker, Fetcher, LeaseKeeper, Reclaimer, Scheduler


class Boom(Exception):
    """The crash injected into a loop."""


def _crash(*args: Any, **kwargs: Any) -> Any:
    raise Boom("injected")


# One method of each loop that the loop calls while it runs, and that raises no error the
# loop handles itself (a Redis error is retried; this must not be).
LOOPS: dict[str, tuple[type, str]] = {
    "outcome writer": (Acker, "_flush"),
    "fetcher": (Fetcher, "begin"),
    "promoter and reclaimer": (Reclaimer, "_look"),
    "scheduler": (Scheduler, "_server_now"),
    "lease keeper": (LeaseKeeper, "_check_loop"),
}


def _app(server: RedisServer, namespace: str) -> aqueue.App:
    app = aqueue.App(server.url, namespace=namespace, lease=0.3)

    @app.task(name="echo")
    async def echo(n: int) -> int:
        return n

    @app.periodic(every=3600)
    async def hourly() -> None: ...

    return app


async def _feed(app: aqueue.App) -> None:
    """Give the fetcher something to read and the outcome writer something to write."""
    await app.enqueue("echo", 1)


@pytest.mark.parametrize("loop", list(LOOPS))
async def test_a_worker_whose_loop_dies_stops_with_that_error(
    server: RedisServer, namespace: str, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, method = LOOPS[loop]
    monkeypatch.setattr(owner, method, _crash)
    app = _app(server, namespace)
    async with app:
        await _feed(app)
        with pytest.raises(Boom):
            await asyncio.wait_for(aqueue.Worker(app).run(handle_signals=False), 10)


async def test_a_dead_loops_error_is_logged_with_its_traceback(
    server: RedisServer,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(Reclaimer, "_look", _crash)
    app = _app(server, namespace)
    async with app:
        with pytest.raises(Boom), caplog.at_level(logging.ERROR, logger="aqueue.worker"):
            await asyncio.wait_for(aqueue.Worker(app).run(handle_signals=False), 10)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == (
        "the worker's promoter and reclaimer failed; stopping the worker"
    )
    assert record.exc_info is not None
    assert record.exc_info[0] is Boom


async def test_leaving_async_with_a_worker_whose_loop_died_raises_its_error(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Scheduler, "_server_now", _crash)
    app = _app(server, namespace)
    async with app:
        with pytest.raises(Boom):
            async with aqueue.Worker(app):
                await asyncio.sleep(0.5)


async def test_a_loop_that_dies_lets_running_jobs_finish_and_writes_their_outcomes(
    server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop a dead loop causes is the graceful one: nothing running is lost."""
    app = _app(server, namespace)
    release = asyncio.Event()

    @app.task
    async def held() -> str:
        await release.wait()
        return "done"

    crash_now = asyncio.Event()
    original = Reclaimer._tend

    async def tend_until_told(self: Reclaimer) -> None:
        if crash_now.is_set():
            raise Boom("injected")
        await original(self)

    monkeypatch.setattr(Reclaimer, "_tend", tend_until_told)
    async with app:
        job = await held.enqueue()
        worker = asyncio.create_task(aqueue.Worker(app).run(handle_signals=False))
        await eventually(lambda: has_status(job, aqueue.JobStatus.RUNNING))
        crash_now.set()
        await asyncio.sleep(0.3)
        assert not worker.done()  # waiting for the running job, in its grace period
        release.set()
        with pytest.raises(Boom):
            await asyncio.wait_for(worker, 10)
        assert await job.result(timeout=1) == "done"
