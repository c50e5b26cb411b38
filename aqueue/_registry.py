"""The registry of live workers: what each worker process says about itself, with a TTL.

Each worker's lease thread writes its record at every heartbeat (see
``_worker/_lease.py``): its one beat for all its queues, since the record names them (a queue's
count of live workers is read here too). The record expires
after one lease, so a worker that died (SIGKILL, OOM, a lost host) disappears within about a
lease; the index of names is pruned by the live workers' beats.

Keys: the index and every record share one hash tag that no queue name can produce (queue
names allow no ``@``), so the register script touches one Cluster slot and never a queue's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import orjson

from ._redis._errors import translate_errors
from ._redis._wire import ABSENT_VERSION

if TYPE_CHECKING:
    from ._app import App


def registry_index(namespace: str) -> bytes:
    """Sorted set of the names of workers that registered, scored by last beat (ms)."""
    return f"{namespace}:{{@registry}}:workers".encode()


def registry_record(namespace: str, worker: str) -> bytes:
    """A worker's record (JSON), set with a TTL of one lease at every beat."""
    return f"{namespace}:{{@registry}}:worker:{worker}".encode()


def control_channel(namespace: str) -> bytes:
    """The pub/sub channel every worker of the app listens on for commands (``aqueue control``)."""
    return f"{namespace}:{{@registry}}:control".encode()


def control_replies(namespace: str, request: str) -> bytes:
    """The list each worker that a command reached pushes its answer to."""
    return f"{namespace}:{{@registry}}:replies:{request}".encode()


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker process, as it described itself at its last heartbeat."""

    id: str
    """The worker's name: its consumer name in every queue's group."""
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    """Most jobs it runs at once."""
    running: int
    """Jobs it was running at its last heartbeat."""
    processed: int
    """Jobs it ran to an outcome since it started (succeeded, failed or retried)."""
    failed: int
    """Of those, the runs that raised (failed for good or scheduled for a retry)."""
    started: datetime
    version: str
    """The aqueue version it runs."""
    tasks: tuple[str, ...]
    """The task names it knows (can run)."""
    seen: datetime
    """Its last heartbeat."""
    rates: Mapping[str, float] = field(default_factory=dict)
    """Jobs per second it ran from each queue, over the interval before its last heartbeat."""
    protocol: int = int(ABSENT_VERSION)
    """The newest version of the wire protocol it reads (docs/protocol.md)."""


def encode_record(info: WorkerInfo) -> bytes:
    """The record as stored: JSON, readable by tools in any language."""
    return orjson.dumps(
        {
            "id": info.id,
            "host": info.host,
            "pid": info.pid,
            "queues": info.queues,
            "concurrency": info.concurrency,
            "running": info.running,
            "processed": info.processed,
            "failed": info.failed,
            "started": info.started.timestamp(),
            "version": info.version,
            "tasks": info.tasks,
            "seen": info.seen.timestamp(),
            "rates": dict(info.rates),
            "protocol": info.protocol,
        }
    )


def decode_record(raw: bytes) -> WorkerInfo | None:
    """The record read back; None for anything aqueue did not write (e.g. set by hand)."""
    try:
        data: Any = orjson.loads(raw)
        return WorkerInfo(
            id=str(data["id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            queues=tuple(str(q) for q in data["queues"]),
            concurrency=int(data["concurrency"]),
            running=int(data["running"]),
            processed=int(data["processed"]),
            failed=int(data["failed"]),
            started=datetime.fromtimestamp(float(data["started"]), UTC),
            version=str(data["version"]),
            tasks=tuple(str(t) for t in data["tasks"]),
            seen=datetime.fromtimestamp(float(data["seen"]), UTC),
            rates={str(q): float(r) for q, r in data.get("rates", {}).items()},
            # Absent from the records of releases before it, which read version 1.
            protocol=int(data.get("protocol", ABSENT_VERSION)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


async def live_workers(app: App) -> list[WorkerInfo]:
    """Every worker of ``app`` whose record has not expired, by host, then pid, then id."""
    redis = app.redis
    with translate_errors(app.url):
        names = cast("list[bytes]", await redis.zrange(registry_index(app.namespace), 0, -1))
        if not names:
            return []
        keys = [registry_record(app.namespace, name.decode(errors="replace")) for name in names]
        raws = cast("list[bytes | None]", await redis.mget(keys))
    infos = [decode_record(raw) for raw in raws if raw is not None]
    return sorted((i for i in infos if i is not None), key=lambda i: (i.host, i.pid, i.id))
