"""A real local Redis Cluster for the tests: 3 masters and 3 replicas on loopback ports.

Debian's redis-server 7.0 nodes, joined by ``redis-cli --cluster create``, each in a temporary
directory of its own and stopped by its PID (see :class:`aqueue.testing.RedisServer`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import ExitStack
from types import TracebackType
from typing import Self

from redis import Redis as SyncRedis

from aqueue.testing import RedisServer

MASTERS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalCluster:
    """``MASTERS`` masters with a replica each; :attr:`url` is its ``redis+cluster://`` URL."""

    def __init__(self) -> None:
        self.nodes: list[RedisServer] = []
        self._stack = ExitStack()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self, timeout: float = 30.0) -> Self:
        """Start the nodes, join them, and wait until the cluster serves every slot; the
        nodes are stopped again if it does not come up."""
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not on the PATH (apt-get install redis-tools)")
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
                "cluster-port": str(free_port()),
                "cluster-node-timeout": "2000",
                # Replicas sync at once, not after the default 5 s wait for more of them.
                "repl-diskless-sync-delay": "0",
            }
            self.nodes.append(self._stack.enter_context(RedisServer.redis(config=config)))
        subprocess.run(
            [
                "redis-cli",
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
            with SyncRedis(port=node.port) as client:
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
        with SyncRedis(port=self.nodes[0].port) as client:
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = master[1]
                    return next(n for n in self.nodes if n.port == port)
        raise AssertionError(f"no node serves the slot of {key!r}")

    def masters(self) -> list[tuple[RedisServer, list[int]]]:
        """Each master and the first and last slot of each range it serves."""
        with SyncRedis(port=self.nodes[0].port) as client:
            served: dict[int, list[int]] = {}
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                served.setdefault(master[1], []).extend([start, end])
        return [(n, sorted(served[n.port])) for n in self.nodes if n.port in served]

    def node_id(self, node: RedisServer) -> str:
        with SyncRedis(port=node.port) as client:
            return bytes(client.execute_command("CLUSTER", "MYID")).decode()

    def replica_of(self, master: RedisServer) -> RedisServer:
        master_id = self.node_id(master)
        for node in self.nodes:
            with SyncRedis(port=node.port) as client:
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
        with SyncRedis(port=replica.port) as client:
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
            with SyncRedis(port=replica.port) as client:
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
                "redis-cli",
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
