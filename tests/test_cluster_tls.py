"""aqueue on a Redis Cluster that speaks TLS alone (``rediss+cluster://``): every connection
aqueue makes (commands, the fast path per master, a worker's reads per slot, its lease
thread, the result waiters and notices by sharded pub/sub per master) must carry the URL's
TLS options, or it could not reach a node at all."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

import aqueue
from aqueue.testing import LocalCluster
from tests.certs import tls_files
from tests.clusters import local_cluster
from tests.test_cluster import _fail_over_under_load as fail_over_under_load
from tests.test_cluster import (
    results_of_jobs_on_every_master,
    runs_of_a_job_outliving_its_lease,
    seconds_to_cancel_a_running_job,
)

pytestmark = pytest.mark.slow

ONE_LOOP = True
"""The cluster client is the same on every event loop."""


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-master cluster with a replica each, on TLS alone, shared by the module."""
    with local_cluster(tls=tls_files(tmp_path_factory.mktemp("certs"))) as cluster:
        yield cluster


@pytest.fixture
async def app(tls_cluster: LocalCluster, namespace: str) -> AsyncIterator[aqueue.App]:
    async with aqueue.App(tls_cluster.url, namespace=namespace, lease=2) as the_app:
        yield the_app


def test_the_cluster_url_asks_for_tls_and_trusts_the_test_ca(tls_cluster: LocalCluster) -> None:
    assert tls_cluster.url.startswith("rediss+cluster://127.0.0.1:")
    assert tls_cluster.tls is not None
    assert tls_cluster.url.endswith(f"?ssl_ca_certs={tls_cluster.tls.ca}")


async def test_jobs_on_queues_of_every_master_run_and_give_their_results_over_tls(
    app: aqueue.App, tls_cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """No warning either: a connection that failed and was retried would log one."""
    assert len(await results_of_jobs_on_every_master(app, tls_cluster)) == 15
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_running_job_is_cancelled_within_a_second_over_tls(
    app: aqueue.App, tls_cluster: LocalCluster
) -> None:
    """The worker hears the cancel on its sharded subscription to the queue's master."""
    assert await seconds_to_cancel_a_running_job(app, tls_cluster) < 1.0


async def test_a_job_running_longer_than_its_lease_stays_with_its_worker_over_tls(
    app: aqueue.App, tls_cluster: LocalCluster
) -> None:
    """The lease thread renews through its own cluster client (lease 2 s, the job 3 s)."""
    assert await runs_of_a_job_outliving_its_lease(app, tls_cluster, 3) == 1


async def test_a_planned_failover_under_load_is_followed_over_tls(
    app: aqueue.App, tls_cluster: LocalCluster
) -> None:
    """``CLUSTER FAILOVER`` of a busy queue's master: the new master is reached with TLS too
    (figures printed with -s). Last in the module: it leaves the cluster's roles changed."""
    figures = await fail_over_under_load(app, tls_cluster, tls_cluster.fail_over)
    assert figures.lost == 0
    assert figures.duplicates == 0
    assert figures.again < 2.0
