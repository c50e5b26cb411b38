"""aqueue on a real Redis Cluster: 3 masters and 3 replicas on loopback (tests/clusters.py).

Queues are picked so that each lives on a different master: enqueue, run and results, a
worker reading all of them, cron, and workflows across queues.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.crc import key_slot

import aqueue
from tests.clusters import LocalCluster
from tests.conftest import IN_CI
from tests.internals import Keys

pytestmark = pytest.mark.slow

ONE_LOOP = True
"""The cluster client is the same on every event loop."""


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A 3-master cluster with a replica each, shared by the session."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if IN_CI:
            pytest.fail("CI needs Debian's redis-server and redis-tools: .ci/run installs them")
        pytest.skip("redis-server or redis-cli is not installed (apt-get install redis-server)")
    with LocalCluster() as running:
        yield running


@pytest.fixture
async def app(cluster: LocalCluster, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(
        cluster.url, namespace=namespace, lease=3, unknown_task_grace=0
    ) as the_app:
        yield the_app


def spread_queues(cluster: LocalCluster, namespace: str) -> list[str]:
    """One queue name per master: each queue's keys live on a different shard."""
    found: dict[int, str] = {}
    for n in range(1000):
        queue = f"q{n}"
        master = cluster.master_of(Keys(namespace, queue).stream).port
        found.setdefault(master, queue)
        if len(found) == len(cluster.nodes) // 2:
            return list(found.values())
    raise AssertionError("no queue names found for every master")


async def test_jobs_on_queues_of_every_master_run_and_give_their_results(
    app: aqueue.App, cluster: LocalCluster
) -> None:
    queues = spread_queues(cluster, app.namespace)
    assert len({key_slot(Keys(app.namespace, q).stream) for q in queues}) == 3

    @app.task
    async def where(n: int) -> str:
        return f"{aqueue.current_job().queue}:{n}"

    async with aqueue.Worker(app, queues=queues, concurrency=20):
        jobs = [
            job
            for queue in queues
            for job in await where.options(queue=queue).enqueue_many([(n,) for n in range(5)])
        ]
        results = await asyncio.gather(*(job.result(timeout=10) for job in jobs))
    assert results == [f"{q}:{n}" for q in queues for n in range(5)]
