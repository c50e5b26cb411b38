"""The operating tools on a Redis Cluster: the ``aqueue`` commands and the dashboard's JSON
API show the numbers of queues whose keys live on different masters."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

import aqueue
from aqueue.testing import LocalCluster
from aqueue.web import dashboard
from tests.helpers import eventually, has_status
from tests.test_cli import ROOT, run_cli
from tests.test_cluster import spread_queues
from tests.test_web_api import client_of, get_json

pytestmark = pytest.mark.slow

ONE_LOOP = True
"""The cluster client is the same on every event loop."""

CLI_APP = "tests.cli_app:app"


@pytest.fixture
async def app(cluster: LocalCluster, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(cluster.url, namespace=namespace, unknown_task_grace=0) as the_app:
        yield the_app


@dataclass
class Fleet:
    """Two queues on two masters, and what each holds."""

    first: str
    """Paused, holds 3 queued jobs and 1 running on :attr:`worker`."""
    second: str
    """Holds 2 queued jobs, 1 scheduled and 2 dead letters; no worker serves it now."""
    worker: aqueue.Worker
    running: aqueue.Job[Any]


@asynccontextmanager
async def busy_fleet(app: aqueue.App, cluster: LocalCluster) -> AsyncIterator[Fleet]:
    first, second = spread_queues(cluster, app.namespace)[:2]
    started = asyncio.Event()

    @app.task
    async def nap() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task
    async def echo(n: int) -> int:
        return n

    app.routes["missing.*"] = second
    async with aqueue.Worker(app, queues=[second]):
        lost = [await app.enqueue("missing.task", n) for n in range(2)]
        await eventually(lambda: _all_failed(lost), timeout=10)
    # One slot: once the nap runs, what is enqueued on the first queue stays queued.
    async with aqueue.Worker(app, queues=[first], concurrency=1, grace_period=0.1) as worker:
        running = await nap.options(queue=first).enqueue()
        await asyncio.wait_for(started.wait(), 10)
        await echo.options(queue=first).enqueue_many([(n,) for n in range(3)])
        await echo.options(queue=second).enqueue_many([(n,) for n in range(2)])
        await echo.options(queue=second, delay=600).enqueue(9)
        await app.queue(first).pause()
        yield Fleet(first, second, worker, running)


async def _all_failed(jobs: list[aqueue.Job[Any]]) -> bool:
    return all([await has_status(job, aqueue.JobStatus.FAILED) for job in jobs])


COUNTS = ("queued", "scheduled", "running", "dead", "workers", "paused")
EXPECTED = {"first": (3, 0, 1, 0, 1, True), "second": (2, 1, 0, 2, 0, False)}


def counts(queues: list[dict[str, Any]], fleet: Fleet) -> dict[str, tuple[Any, ...]]:
    """Each queue's counts by the role it plays in ``fleet``."""
    names = {fleet.first: "first", fleet.second: "second"}
    return {names[q["queue"]]: tuple(q[c] for c in COUNTS) for q in queues if q["queue"] in names}


async def cli(cluster: LocalCluster, namespace: str, *args: str) -> str:
    """The command's output, run beside the test's worker (a process of its own)."""
    env = {
        **os.environ,
        "AQUEUE_URL": cluster.url,
        "AQUEUE_TEST_NAMESPACE": namespace,
        "PYTHONPATH": ROOT,
    }
    result = await asyncio.to_thread(run_cli, *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_status_shows_the_numbers_of_queues_on_two_masters(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    async with busy_fleet(app, cluster) as fleet:
        shown = orjson.loads(
            await cli(
                cluster,
                app.namespace,
                "status",
                CLI_APP,
                "-q",
                fleet.first,
                "-q",
                fleet.second,
                "--json",
            )
        )
    assert counts(shown["queues"], fleet) == EXPECTED
    assert [w["id"] for w in shown["workers"]] == [fleet.worker.name]


async def test_the_job_and_dead_letters_commands_read_a_queue_on_another_master(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    async with busy_fleet(app, cluster) as fleet:
        record = orjson.loads(
            await cli(cluster, app.namespace, "job", CLI_APP, fleet.running.id, "--json")
        )
        letters = await cli(
            cluster, app.namespace, "dead-letters", "ls", CLI_APP, "-q", fleet.second
        )
    assert (record["status"], record["queue"]) == ("running", fleet.first)
    [header, *rows] = letters.splitlines()
    assert header.split()[:5] == ["dead", "at", "(UTC)", "task", "job"]
    assert [row.split()[2] for row in rows] == ["missing.task", "missing.task"]


async def test_purge_drops_the_queued_jobs_of_a_queue_on_another_master(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    async with busy_fleet(app, cluster) as fleet:
        said = await cli(cluster, app.namespace, "purge", CLI_APP, "-q", fleet.second, "--yes")
        after = await app.queue(fleet.second).stats()
    assert said.strip() == f"dropped 2 queued job(s) from {fleet.second}"
    assert (after.queued, after.scheduled, after.dead) == (0, 1, 2)


async def test_the_dashboard_api_shows_the_numbers_and_jobs_of_queues_on_two_masters(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    async with busy_fleet(app, cluster) as fleet, client_of(dashboard(app)) as web:
        overview = await get_json(web, "/api/overview")
        queues = await get_json(web, "/api/queues")
        queued = await get_json(web, f"/api/jobs?queue={fleet.first}&status=queued")
        running = await get_json(web, f"/api/jobs?queue={fleet.first}&status=running")
        scheduled = await get_json(web, f"/api/jobs?queue={fleet.second}&status=scheduled")
        letters = await get_json(web, f"/api/dead-letters?queue={fleet.second}")
        [worker] = await get_json(web, "/api/workers")
    assert counts(overview["queues"], fleet) == EXPECTED
    assert counts(queues, fleet) == EXPECTED
    assert (len(queued), [row["id"] for row in running]) == (3, [fleet.running.id])
    assert len(scheduled) == 1
    assert len(letters) == 2
    assert (worker["id"], worker["jobs"]) == (fleet.worker.name, [fleet.running.id])


async def test_the_dashboard_actions_reach_queues_on_two_masters(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """Each acts on its queue's master: a replay, a resume, a cancel, and a ping to the
    worker (remote control over plain pub/sub, which a cluster passes to every node)."""
    async with busy_fleet(app, cluster) as fleet, client_of(dashboard(app)) as web:
        said = [
            (await web.post(path, json={})).json()["message"]
            for path in (
                f"/api/queues/{fleet.second}/dead-letters/replay",
                f"/api/queues/{fleet.first}/resume",
                f"/api/jobs/{fleet.running.id}/cancel",
                f"/api/workers/{fleet.worker.name}/ping",
            )
        ]
        with pytest.raises(aqueue.JobCancelled):
            await fleet.running.result(timeout=5)
    assert said[:3] == [
        f"replayed 2 job(s) into {fleet.second}",
        f"resumed {fleet.first}",
        f"cancelled {fleet.running.id}",
    ]
    assert said[3] == f"{fleet.worker.name}: pong"
    second = await app.queue(fleet.second).stats()
    assert (second.queued, second.dead) == (4, 0)
    assert not await app.queue(fleet.first).is_paused()
