"""A real Sentinel set on loopback: a master, its replica, and three sentinels watching them.

Debian's redis-server 7.0 runs every process (``redis-server CONF --sentinel`` for the
sentinels), on free ports with temporary directories, stopped by PID when the set closes.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

from redis import Redis
from redis.exceptions import ResponseError

from aqueue.testing import RedisServer, TlsFiles
from aqueue.testing import _free_port as free_port

SERVICE = "aqueue-test"
"""The name the sentinels monitor the master under."""
SENTINELS = 3
QUORUM = 2


class SentinelSet:
    """A master and its ``replicas``, each with ``min-replicas-to-write`` (see ``start``), and
    three sentinels. ``failover()`` has the sentinels promote a replica and waits until every
    one names it.

    With ``tls``, the data nodes listen with TLS alone (replication too), and the sentinels
    reach them with TLS; the sentinels themselves listen in clear text, as aqueue reaches
    them so (see docs/guide/deployment.md).
    """

    def __init__(
        self,
        binary: str,
        *,
        replicas: int = 1,
        min_replicas_to_write: int = 1,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = binary
        self.min_replicas_to_write = min_replicas_to_write
        self.tls = tls
        # Replicas sync at once, not after the default 5 s wait for more of them.
        config = {"repl-diskless-sync-delay": "0"}
        if tls is not None:
            config["tls-replication"] = "yes"
        self.nodes = [RedisServer(binary, config=config, tls=tls) for _ in range(1 + replicas)]
        self.directory = Path(tempfile.mkdtemp(prefix="aqueue-sentinels-"))
        self.sentinel_ports = [free_port() for _ in range(SENTINELS)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        if self.tls is not None:
            return f"rediss+sentinel://{hosts}/{SERVICE}/0?{self.tls.url_query}"
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master_port(self) -> int:
        """The master's port, as the first sentinel names it."""
        with Redis(port=self.sentinel_ports[0]) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def start(self, timeout: float = 30.0) -> Self:
        master, *replicas = self.nodes
        for node in self.nodes:
            node.start()
        for replica in replicas:
            with replica.client() as client:
                client.replicaof("127.0.0.1", master.port)
        _wait(lambda: _replicas_online(master) == len(replicas), timeout, "replicas to sync")
        # Below the number of replicas, the old master takes writes after the promotion (until
        # Sentinel moves the other replicas and demotes it), and they are lost with its
        # demotion: the trade-off docs/guide/deployment.md measures.
        for node in self.nodes:
            with node.client() as client:
                client.config_set("min-replicas-to-write", self.min_replicas_to_write)
        _wait(lambda: _takes_writes(master), timeout, "the master to take writes")
        for port in self.sentinel_ports:
            self._sentinels.append(self._start_sentinel(port, master.port))
        for port in self.sentinel_ports:
            _wait(
                partial(_sees_all, port, len(replicas)), timeout, f"sentinel {port} to see the set"
            )
        return self

    def failover(self, timeout: float = 30.0) -> float:
        """``SENTINEL FAILOVER``; seconds until every sentinel names the new master."""
        before = self.master_port()
        started = time.monotonic()
        with Redis(port=self.sentinel_ports[0]) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
        _wait(
            lambda: all(_master_port(port) != before for port in self.sentinel_ports),
            timeout,
            "every sentinel to name the new master",
        )
        return time.monotonic() - started

    def close(self) -> None:
        for process in self._sentinels:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._sentinels.clear()
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _start_sentinel(self, port: int, master_port: int) -> subprocess.Popen[bytes]:
        # A sentinel rewrites its configuration file as it learns: one file each.
        config = self.directory / f"sentinel-{port}.conf"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {self.directory}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} {QUORUM}",
            f"sentinel down-after-milliseconds {SERVICE} 2000",
            f"sentinel failover-timeout {SERVICE} 10000",
        ]
        if self.tls is not None:
            # A sentinel reaches the data nodes as a replica does: tls-replication.
            settings = {**self.tls.server_config(), "tls-replication": "yes"}
            lines += [f"{name} {value}" for name, value in settings.items()]
        config.write_text("\n".join(lines) + "\n")
        return subprocess.Popen(
            [self.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _replicas_online(node: RedisServer) -> int:
    with node.client() as client:
        replication = client.info("replication")
    return sum(
        1
        for name, replica in replication.items()
        if name.startswith("slave")
        and isinstance(replica, dict)
        and replica.get("state") == "online"
    )


def _takes_writes(node: RedisServer) -> bool:
    with node.client() as client:
        try:
            client.set("aqueue-test:probe", 1)
        except ResponseError:  # NOREPLICAS until the replica's first acknowledgement
            return False
        client.delete("aqueue-test:probe")
    return True


def _sees_all(port: int, replicas: int) -> bool:
    """Whether the sentinel on ``port`` knows the replicas and the other sentinels."""
    try:
        with Redis(port=port) as sentinel:
            state = sentinel.sentinel_master(SERVICE)
    except Exception:  # not up yet
        return False
    return bool(state["num-slaves"] >= replicas and state["num-other-sentinels"] >= SENTINELS - 1)


def _master_port(port: int) -> int:
    with Redis(port=port) as sentinel:
        _, master = sentinel.sentinel_get_master_addr_by_name(SERVICE)
    return int(master)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
