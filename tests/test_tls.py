"""TLS (``rediss://``): producers, workers and results over encrypted connections."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import aqueue
from aqueue.testing import RedisServer


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _url(port: int, ca_file: Path) -> str:
    """A URL that trusts only the CA in ``ca_file``."""
    return f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca_file}&ssl_cert_reqs=required"


@pytest.fixture
def tls_port(server: RedisServer, tmp_path: Path) -> Iterator[int]:
    """A server of the same kind that also listens with TLS, its CA in ``ca.pem``."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    tls_port = _free_port()
    config = {
        "tls-port": str(tls_port),
        "tls-cert-file": str(cert_file),
        "tls-key-file": str(key_file),
        "tls-ca-cert-file": str(ca_file),
        "tls-auth-clients": "no",
    }
    tls_server = RedisServer(server.binary, config=config)
    try:
        tls_server.start()
    except RuntimeError:
        pytest.skip(f"{server.binary} was built without TLS")
    try:
        yield tls_port
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
