"""Redis behind Sentinel with data nodes on TLS alone (``rediss+sentinel://``): every client
asks the (clear-text) sentinels for the master, then reaches it with TLS, also after a
failover."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

import pytest

import aqueue
from tests.certs import tls_files
from tests.conftest import IN_CI
from tests.helpers import eventually
from tests.sentinels import SentinelSet

pytestmark = pytest.mark.slow

ONE_LOOP = True
"""What differs between the loops over TLS (their TLS transports, which the fast path takes
over) is tested on both in test_tls.py; a failover takes 20 s, not worth taking twice."""


@pytest.fixture(scope="module")
def tls_sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A master and its replica on TLS alone, and three sentinels, shared by the module."""
    binary = shutil.which("redis-server")
    if binary is None:
        if IN_CI:
            pytest.fail("CI needs Debian's redis-server: .ci/run installs it with apt")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    # Writes taken by the new master at once (not once the old one rejoined as its replica,
    # some 15 s later): what is tested here is that every connection follows it over TLS; what
    # a failover can lose is tested in tests/faults/test_sentinel.py.
    certs = tls_files(tmp_path_factory.mktemp("certs"))
    sentinels = SentinelSet(binary, tls=certs, min_replicas_to_write=0)
    try:
        sentinels.start()
    except RuntimeError as exc:
        sentinels.close()
        if "exited at start" not in str(exc):
            raise
        pytest.skip(f"{binary} was built without TLS: {exc}")
    try:
        yield sentinels
    finally:
        sentinels.close()


def test_the_sentinel_url_asks_for_tls_and_trusts_the_test_ca(
    tls_sentinel_set: SentinelSet,
) -> None:
    assert tls_sentinel_set.url.startswith("rediss+sentinel://127.0.0.1:")
    assert tls_sentinel_set.tls is not None
    assert tls_sentinel_set.url.endswith(f"/0?ssl_ca_certs={tls_sentinel_set.tls.ca}")


async def test_jobs_run_and_give_their_results_through_the_sentinels_over_tls(
    tls_sentinel_set: SentinelSet, namespace: str
) -> None:
    app = aqueue.App(tls_sentinel_set.url, namespace=namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, aqueue.Worker(app):
        single = await add.enqueue(2, 3)
        jobs = await add.enqueue_many([(i, i) for i in range(20)])
        assert await single.result(timeout=10) == 5
        assert [await job.result(timeout=10) for job in jobs] == [2 * i for i in range(20)]


async def test_a_worker_and_a_producer_follow_a_failover_over_tls(
    tls_sentinel_set: SentinelSet, namespace: str
) -> None:
    """After ``SENTINEL FAILOVER``, new jobs run on the new master, reached with TLS, and the
    lease thread's heartbeats reach it too."""
    app = aqueue.App(tls_sentinel_set.url, namespace=namespace, lease=3)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, aqueue.Worker(app):
        assert await (await add.enqueue(1, 1)).result(timeout=10) == 2
        before = tls_sentinel_set.master_port()
        await asyncio.to_thread(tls_sentinel_set.failover)
        assert tls_sentinel_set.master_port() != before

        async def enqueued() -> bool:  # refused (ConnectionFailed) until the switch is seen
            try:
                job = await add.enqueue(2, 2)
            except aqueue.ConnectionFailed:
                return False
            return await job.result(timeout=10) == 4

        # About 15 s: the new master refuses writes (NOREPLICAS) until Sentinel has made the
        # old one its replica and it synced, with TLS or without.
        await eventually(enqueued, timeout=40)

        async def beat_after_the_switch() -> bool:
            return [w.processed for w in await app.workers()] == [2]

        await eventually(beat_after_the_switch, timeout=10)  # a beat every lease / 3
