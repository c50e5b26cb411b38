"""TLS (``rediss://``): producers, workers and results over encrypted connections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import aqueue
from aqueue.testing import RedisServer
from tests.certs import tls_files


def _url(port: int, ca_file: Path) -> str:
    """A URL that trusts only the CA in ``ca_file``."""
    return f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}&ssl_cert_reqs=required"


@pytest.fixture
def tls_port(server: RedisServer, tmp_path: Path) -> Iterator[int]:
    """A server of the same kind that listens with TLS alone, its CA in ``ca.pem``."""
    tls_server = RedisServer(server.binary, tls=tls_files(tmp_path))
    try:
        tls_server.start()
    except RuntimeError:
        pytest.skip(f"{server.binary} was built without TLS")
    try:
        yield tls_server.port
    finally:
        tls_server.close()


async def test_enqueue_work_and_results_over_tls(
    tls_port: int, tmp_path: Path, namespace: str
) -> None:
    app = aqueue.App(_url(tls_port, tmp_path / "ca.pem"), namespace=namespace)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async with app, aqueue.Worker(app):
        single = await add.enqueue(1, 2)
        jobs = await add.enqueue_many([(i, i) for i in range(50)])
        assert await single.result(timeout=10) == 3
        assert [await job.result(timeout=10) for job in jobs] == [2 * i for i in range(50)]


async def test_a_server_certificate_from_an_untrusted_ca_is_refused(
    tls_port: int, tmp_path: Path, namespace: str
) -> None:
    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    app = aqueue.App(_url(tls_port, other_ca), namespace=namespace)

    @app.task
    async def noop() -> None: ...

    async with app:
        with pytest.raises(aqueue.ConnectionFailed, match="certificate verify failed"):
            await noop.enqueue()
