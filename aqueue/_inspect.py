"""What the operating tools read about a fleet: queue summaries and job records.

Shared by the ``aqueue status``/``aqueue job`` commands and the web dashboard, so that both
show the same numbers from the same reads.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

from ._job import JobInfo
from ._queue import QueueStats
from ._redis._keys import keys_of, queue_of
from ._registry import WorkerInfo

if TYPE_CHECKING:
    from ._app import App


@dataclasses.dataclass(frozen=True)
class QueueStatus:
    """A queue's counts, whether it is paused, and how fast its workers run its jobs."""

    stats: QueueStats
    paused: bool
    rate: float
    """Jobs per second the live workers ran from the queue lately (the sum of theirs)."""

    def as_json(self) -> dict[str, Any]:
        """The counts, ``paused`` and ``rate`` as one JSON object (priorities as text keys)."""
        by_priority = self.stats.queued_by_priority
        return {
            **dataclasses.asdict(self.stats),
            "queued_by_priority": {str(level): count for level, count in by_priority.items()},
            "paused": self.paused,
            "rate": self.rate,
        }


async def queue_status(app: App, names: list[str], workers: list[WorkerInfo]) -> list[QueueStatus]:
    """The status of each queue in ``names``; ``workers`` are the live ones (for the rates)."""
    statuses = []
    for name in names:
        queue = app.queue(name)
        rate = sum(w.rates.get(name, 0.0) for w in workers)
        statuses.append(QueueStatus(await queue.stats(), await queue.is_paused(), rate))
    return statuses


async def queued_arguments(app: App, job_id: str) -> list[Any] | None:
    """``[args, kwargs]`` of a job still waiting in its stream; None once it started (the
    arguments live only in the stream entry, removed when the job ends)."""
    keys = keys_of(app.namespace, queue_of(job_id))
    place = cast(
        "bytes | None", await app.redis.hget(keys.queued(job_id), job_id.partition(":")[2])
    )
    if place is None:
        return None
    entry, _, level = place.partition(b" ")
    stream = keys.stream_at(int(level)) if level else keys.stream
    found = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", await app.redis.xrange(stream, entry, entry)
    )
    if not found or b"p" not in found[0][1]:
        return None
    try:
        decoded = app.serializer.loads(found[0][1][b"p"])
    except Exception:
        return None  # not this app's format: shown as unknown, never a crash
    return decoded if isinstance(decoded, list) else None


def job_record(info: JobInfo, arguments: list[Any] | None) -> dict[str, Any]:
    """A job's record as plain values (``aqueue job --json``, the dashboard's JSON API)."""
    record = dataclasses.asdict(info)
    record["queue"] = queue_of(info.id)
    record["arguments"] = (
        None if arguments is None else {"args": arguments[0], "kwargs": arguments[1]}
    )
    return record
