"""A fresh redis-server for each measurement, on a free loopback port, stopped by its PID.

aqueue's own :class:`aqueue.testing.RedisServer` when this interpreter has aqueue; otherwise
(run.py started by a Python without aqueue, before the peers environment exists) an equivalent
subprocess with the same options: no persistence, bound to 127.0.0.1, its own data directory.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class _Server:
    """The same contract as aqueue.testing.RedisServer, as far as run.py uses it."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        return out.split("v=", 1)[1].split()[0] if "v=" in out else out.strip()

    def start(self, timeout: float = 10.0) -> _Server:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{self.binary} did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_server() -> Any:
    """A not yet started server running ``redis-server`` from the PATH."""
    try:
        from aqueue.testing import RedisServer
    except ImportError:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "redis-server is not on the PATH: apt-get install redis-server"
            ) from None
        return _Server(binary)
    return RedisServer.redis()
