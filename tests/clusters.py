"""A local Redis Cluster for a test module (aqueue.testing.LocalCluster), skipped with the
reason where the machine cannot run one (and failed in CI, which must)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from aqueue.testing import LocalCluster, TlsFiles
from tests.conftest import IN_CI


@contextmanager
def local_cluster(*, tls: TlsFiles | None = None) -> Iterator[LocalCluster]:
    """A running 3-master cluster (on TLS alone with ``tls``), closed when the block ends."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        if IN_CI:
            pytest.fail("CI needs Debian's redis-server and redis-tools: .ci/run installs them")
        pytest.skip("redis-server or redis-cli is not installed (apt-get install redis-server)")
    cluster = LocalCluster(tls=tls)
    try:
        cluster.start()
    except RuntimeError as exc:
        if tls is None or "exited at start" not in str(exc):
            raise
        pytest.skip(f"redis-server was built without TLS: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()
