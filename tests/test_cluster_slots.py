"""A worker's concurrency on a Redis Cluster, where it reads each slot's queues on a connection
of its own, all at once: a read of one slot may take a job while another slot's job fills the
worker. Never more than ``concurrency`` jobs run at once, and a job the worker cannot start
goes back to its queue at once, unstarted, for an idle worker (or for this one, later)."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

import aqueue
from aqueue.testing import LocalCluster
from tests.helpers import eventually, has_status
from tests.test_cluster import app as app  # the fixture: an app on the cluster
from tests.test_cluster import spread_queues
from tests.test_concurrency import Gauge

pytestmark = pytest.mark.slow

ONE_LOOP = True
"""The cluster client is the same on every event loop."""


def gauged_by_worker(
    app: aqueue.App, release: asyncio.Event
) -> tuple[aqueue.Task[[str], str], dict[str, Gauge]]:
    """A task that runs under its worker's gauge, until ``release`` when named ``long``."""
    gauges: dict[str, Gauge] = collections.defaultdict(Gauge)

    @app.task
    async def work(name: str) -> str:
        with gauges[aqueue.current_job().worker].run(name):
            if name == "long":
                await release.wait()
            else:
                await asyncio.sleep(0.01)
        return name

    return work, gauges


async def test_a_busy_one_slot_worker_leaves_another_masters_job_to_an_idle_worker_at_once(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """The busy worker's read of the other slot, in flight since it was idle, takes the job
    (it waited there first): the job goes back to its queue, and the idle worker runs it
    while the long job still runs. Held, it would wait for the long job, or for its lease."""
    first, second = spread_queues(cluster, app.namespace)[:2]
    release = asyncio.Event()
    work, gauges = gauged_by_worker(app, release)
    async with aqueue.Worker(app, queues=[first, second], concurrency=1, name="busy"):
        await asyncio.sleep(0.5)  # idle: a read in flight on each slot
        async with aqueue.Worker(app, queues=[second], concurrency=1, name="idle"):
            long = await work.options(queue=first).enqueue("long")
            await eventually(lambda: has_status(long, aqueue.JobStatus.RUNNING))
            enqueued = time.monotonic()
            other = await work.options(queue=second).enqueue("other")
            assert await other.result(timeout=5) == "other"
            assert time.monotonic() - enqueued < 1.0
            assert await long.status() is aqueue.JobStatus.RUNNING
            release.set()
            assert await long.result(timeout=5) == "long"
    assert {worker: gauge.started for worker, gauge in gauges.items()} == {
        "busy": ["long"],
        "idle": ["other"],
    }
    assert (await other.info()).attempts == 1  # handed back unstarted: no attempt counted


async def test_a_one_slot_worker_on_three_masters_runs_one_job_at_a_time_and_every_job_once(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    """Jobs arrive on every master's queue while the worker runs one: those its other reads
    take go back and run later, each with one attempt."""
    queues = spread_queues(cluster, app.namespace)
    release = asyncio.Event()
    release.set()
    work, gauges = gauged_by_worker(app, release)
    async with aqueue.Worker(app, queues=queues, concurrency=1, name="one"):
        await asyncio.sleep(0.5)  # idle: a read in flight on each slot
        jobs: list[aqueue.Job[str]] = []
        for n in range(8):
            jobs.extend([await work.options(queue=q).enqueue(f"{q}:{n}") for q in queues])
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*(job.result(timeout=20) for job in jobs))
    assert sorted(results) == sorted(f"{queue}:{n}" for n in range(8) for queue in queues)
    assert gauges["one"].peak == 1
    assert [(await job.info()).attempts for job in jobs] == [1] * len(jobs)
