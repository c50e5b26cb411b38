"""What the operating tools read about a fleet: queue summaries, which queues exist, and job
records with their arguments.

Shared by the ``aqueue`` commands (``status``, ``job``, ...) and the web dashboard, so that
both show the same numbers from the same reads and refuse the same unknown queues.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ._events import named_queues
from ._job import JobInfo, JobStatus, json_result
from ._queue import QueueStats
from ._redis._errors import translate_errors
from ._redis._keys import Keys, keys_of, queue_of
from ._redis._wire import ENTRY
from ._registry import WorkerInfo
from .exceptions import AqueueError

if TYPE_CHECKING:
    from ._app import App

KEPT_ARGUMENTS = b"args"
"""The record's field with the encoded arguments of a job that ran (written by finish.lua)."""
ARGUMENTS_SIZE = b"args_size"
"""The record's field with the size of arguments too large to keep (App.kept_arguments_size)."""


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


# -- which queues exist ---------------------------------------------------------------------
#
# A typo must not show a made-up queue's zeros, nor pause a queue no one serves. A queue is
# known when the app names it (its default, its tasks' and routes' queues), when a live worker
# serves it, or when it has keys in Redis (jobs, dead letters, delayed jobs, a pause flag).
# A queue that merely is empty is known by its stream, which
# stays once a worker has read it.


class UnknownQueue(AqueueError):
    """A command or a dashboard request named a queue that nothing knows."""


def known_queues(app: App, workers: Iterable[WorkerInfo]) -> list[str]:
    """The queues the app names and those the live ``workers`` serve, sorted (an app may
    name none of a fleet's queues: a producer's, or a bare ``App(url)``)."""
    served = (queue for worker in workers for queue in worker.queues)
    return sorted({*named_queues(app), *served})


async def refuse_unknown_queues(app: App, names: Sequence[str]) -> None:
    """Raise :class:`UnknownQueue` for the first of ``names`` that no one knows.

    Costs nothing for the queues the app names; the others cost a read of the workers and
    one ``EXISTS`` each.
    """
    named = set(named_queues(app))
    strays = [name for name in names if name not in named]
    if not strays:
        return
    known = known_queues(app, await app.workers())
    for name in strays:
        if name in known:
            continue
        keys = keys_of(app.namespace, name)
        with translate_errors(app.url):
            found = await app.redis.exists(
                keys.stream, keys.levels, keys.delayed, keys.dead, keys.paused
            )
        if not found:
            raise UnknownQueue(
                f"no queue {name!r} in namespace {app.namespace!r}: the app does not name it, "
                f"no live worker serves it and Redis holds nothing of it. Known queues: "
                f"{', '.join(known)} (check the spelling, and the namespace)"
            )


# -- a job's record -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arguments:
    """What is known of a job's arguments."""

    decoded: list[Any] | None = None
    """``[args, kwargs]``, when known."""
    size: int | None = None
    """Bytes of encoded arguments the record did not keep (too large)."""


async def job_arguments(app: App, info: JobInfo) -> Arguments:
    """A job's arguments: from its stream entry while it waits there, from its record once
    it ran (when it keeps them, see ``App.kept_arguments_size``)."""
    keys = keys_of(app.namespace, queue_of(info.id))
    with translate_errors(app.url):
        if info.status is JobStatus.QUEUED:
            return Arguments(decoded_arguments(app, await _queued_payload(app, keys, info.id)))
        payload, size = cast(
            "list[bytes | None]",
            await app.redis.hmget(keys.job(info.id), KEPT_ARGUMENTS, ARGUMENTS_SIZE),
        )
    return Arguments(decoded_arguments(app, payload), None if size is None else int(size))


async def _queued_payload(app: App, keys: Keys, job_id: str) -> bytes | None:
    """The encoded arguments in the stream entry of a job still waiting there (entries of
    jobs that keep no record are found through their queue's "queued" hash)."""
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
    return found[0][1].get(ENTRY.payload) if found else None


def decoded_arguments(app: App, payload: bytes | None) -> list[Any] | None:
    """``[args, kwargs]`` from a job's encoded arguments (an entry's, a record's, a dead
    letter's), or None when there are none or this app cannot read them."""
    if payload is None:
        return None
    try:
        decoded = app.serializer.loads(payload)
    except Exception:
        return None  # garbage, or another app's format: shown as unknown, never a crash
    return decoded if isinstance(decoded, list) and len(decoded) == 2 else None


def job_record(app: App, info: JobInfo, arguments: Arguments) -> dict[str, Any]:
    """A job's record as plain values (``aqueue job --json``, the dashboard's JSON API): its
    result as the JSON its task's return annotation sends."""
    record = dataclasses.asdict(
        dataclasses.replace(info, result=json_result(app, info.task, info.result))
    )
    record["queue"] = queue_of(info.id)
    decoded = arguments.decoded
    record["arguments"] = None if decoded is None else {"args": decoded[0], "kwargs": decoded[1]}
    record["arguments_size"] = arguments.size
    return record
