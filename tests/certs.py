"""Certificates for TLS servers in tests: a CA of the test's own (trustme) and a server
certificate for 127.0.0.1 it signed, written as the PEM files a server is started with."""

from __future__ import annotations

from pathlib import Path

import trustme

from aqueue.testing import TlsFiles


def tls_files(directory: Path) -> TlsFiles:
    """A fresh CA and a certificate for 127.0.0.1, in ``directory``."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    files = TlsFiles(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    return files
