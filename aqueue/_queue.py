"""Operating one queue: statistics, pausing it, and its dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from ._cancel import CANCELLED_RECORD_TTL
from ._checks import whole_number
from ._depend import job_ended
from ._job import encode_error
from ._message import CODES, DEAD_LETTER_FIELDS, FIELDS
from ._redis._errors import translate_errors
from ._redis._keys import DEFAULT_PRIORITY, GROUP, keys_of
from ._redis._scripts import PURGE, REPLAY, STATS
from .exceptions import ErrorType

if TYPE_CHECKING:
    from ._app import App

PURGE_BATCH = 1000
"""Entries each purge call drops: a call is one step on the server, kept short."""


@dataclass(frozen=True)
class QueueStats:
    """Counts of one queue, read in one atomic step."""

    queue: str
    queued: int
    """Jobs waiting for a worker."""
    scheduled: int
    """Jobs waiting for their time: retries after a backoff, delayed jobs."""
    running: int
    """Jobs delivered to a worker and not yet acknowledged."""
    dead: int
    """Entries in the dead-letter stream."""
    workers: int
    """Workers that served this queue within the lease time."""
    queued_by_priority: Mapping[int, int] = field(default_factory=dict)
    """Jobs waiting for a worker at each priority level in use (the default level always)."""


@dataclass(frozen=True)
class DeadLetter:
    """An entry that could not be run, kept with the reason and its original payload."""

    id: str
    """The dead letter's own id in the dead-letter stream."""
    reason: str
    dead_at: datetime
    job_id: str | None
    """The job's id, when the entry had one (garbage written by hand may not)."""
    task: str | None
    payload: bytes | None
    """The encoded arguments as they were enqueued."""


class Queue:
    """A handle on one queue of an app: ``app.queue("emails")``."""

    __slots__ = ("_app", "_keys", "name")

    def __init__(self, app: App, name: str) -> None:
        self._app = app
        self.name = name
        self._keys = keys_of(app.namespace, name)

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"

    async def stats(self) -> QueueStats:
        """Queued, scheduled, running and dead-lettered counts and the number of live workers.

        Queued and running jobs are counted over every priority level's stream.
        """
        keys = self._keys
        with translate_errors(self._app.url):
            queued, scheduled, running, dead, workers, at_default, *levels = await STATS(
                self._app.redis,
                [keys.stream, keys.dead, keys.workers, keys.delayed, keys.levels],
                [GROUP, int(self._app.lease * 1000)],
            )
        by_priority = {DEFAULT_PRIORITY: at_default}
        pairs = zip(levels[::2], levels[1::2], strict=True)
        by_priority.update((int(level), count) for level, count in pairs if level.isdigit())
        ordered = dict(sorted(by_priority.items(), reverse=True))
        return QueueStats(self.name, queued, scheduled, running, dead, workers, ordered)

    async def pause(self) -> None:
        """Stop every worker from reading this queue until :meth:`resume`.

        Workers learn of it within a few tens of milliseconds (at their next promote step).
        Running jobs go on, their leases renewed; producers still enqueue, and delayed jobs
        still move into the queue when due; they wait there for the resume. The pause holds
        for workers that start later too.
        """
        with translate_errors(self._app.url):
            await self._app.redis.set(self._keys.paused, 1)

    async def resume(self) -> None:
        """Let workers read this queue again (they learn of it as promptly as of a pause)."""
        with translate_errors(self._app.url):
            await self._app.redis.delete(self._keys.paused)

    async def is_paused(self) -> bool:
        """Whether the queue is paused (see :meth:`pause`)."""
        with translate_errors(self._app.url):
            return bool(await self._app.redis.exists(self._keys.paused))

    async def purge_queued(self) -> int:
        """Drop every job waiting in this queue (at every priority level) and return how many.

        Each ends as cancelled (``result()`` raises :class:`JobCancelled`), and jobs waiting
        for it are told. Running jobs and scheduled ones (delayed, or waiting for a retry)
        are left alone.
        """
        keys = self._keys
        app = self._app
        error = encode_error(ErrorType.CANCELLED, "purged from its queue")
        keep = app.result_ttl or CANCELLED_RECORD_TTL
        dropped = 0
        with translate_errors(app.url):
            levels = await app.redis.smembers(keys.levels)
            used = {DEFAULT_PRIORITY, *(int(m) for m in levels if m.isdigit())}
            for stream in (keys.stream_at(level) for level in sorted(used, reverse=True)):
                while True:
                    count, *job_ids = await PURGE(
                        app.redis, [stream], [GROUP, keys.prefix, error, keep, PURGE_BATCH]
                    )
                    dropped += count
                    for job_id in job_ids:
                        await job_ended(app, job_id.decode())
                    if count < PURGE_BATCH:
                        break
        return dropped

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, each with the reason it was dead-lettered."""
        whole_number(limit, "limit")
        with translate_errors(self._app.url):
            # The raw field list, in order: a client's dict would keep the last of two fields
            # of one name, and aqueue's come first (see DEAD_LETTER_FIELDS).
            [entries] = await self._app._direct.commands(
                [(b"XRANGE", self._keys.dead, b"-", b"+", b"COUNT", limit)]
            )
        raw = cast("list[tuple[bytes, list[bytes]]]", entries)
        return [_dead_letter(entry_id, fields) for entry_id, fields in raw]

    async def replay_dead_letters(
        self, limit: int = 10_000, *, task: str | None = None, reason: str | None = None
    ) -> int:
        """Move up to ``limit`` dead letters back into the queue, oldest first.

        Replayed jobs start over (attempts count from zero), each with every option it was
        enqueued with (priority, expiry, timeout, uniqueness key). Use it once the cause is
        fixed, e.g. after deploying the task a worker did not know.

        A replay is the one way out of a final status: a ``failed`` job is ``queued`` again
        and runs anew. A job that succeeded or was cancelled meanwhile is not run again; its
        dead letter stays (:meth:`purge_dead_letters` deletes it).

        Args:
            limit: Most letters to replay.
            task: Replay only the letters of this task name (the others stay).
            reason: Replay only the letters whose reason holds this text, e.g.
                ``"no task named"`` (a task not deployed then) or ``"arguments do not
                bind"`` (the others stay).

        Returns:
            How many jobs went back into the queue.
        """
        whole_number(limit, "limit")
        not_replayed = " ".join(wire.code for wire in FIELDS if not wire.replayed)
        with translate_errors(self._app.url):
            replayed, _ = await REPLAY(
                self._app.redis,
                [self._keys.dead, self._keys.stream, self._keys.levels],
                [
                    self._keys.prefix,
                    limit,
                    " ".join(DEAD_LETTER_FIELDS),
                    not_replayed,
                    task or "",
                    reason or "",
                ],
            )
        return int(replayed)

    async def purge_dead_letters(self) -> int:
        """Delete every dead letter of this queue and return how many there were."""
        with translate_errors(self._app.url):
            pipe = self._app.redis.pipeline(transaction=True)
            pipe.xlen(self._keys.dead)
            pipe.delete(self._keys.dead)
            count, _ = await pipe.execute()
        return int(count)


def _dead_letter(entry_id: bytes, raw: list[bytes]) -> DeadLetter:
    fields: dict[str, bytes] = {}
    for name, value in zip(raw[::2], raw[1::2], strict=True):
        # The first of each name: aqueue's own fields lead, the entry's follow.
        fields.setdefault(name.decode(errors="replace"), value)

    def text(name: str) -> str | None:
        value = fields.get(name)
        return None if value is None else value.decode(errors="replace")

    return DeadLetter(
        id=entry_id.decode(),
        reason=text("reason") or "",
        dead_at=_time_of(fields.get("dead_at"), entry_id),
        job_id=text(CODES["job_id"]),
        task=text(CODES["task"]),
        payload=fields.get(CODES["payload"]),
    )


def _time_of(dead_at: bytes | None, entry_id: bytes) -> datetime:
    """When a letter was written: its ``dead_at`` field, else (a letter aqueue did not write
    may lack it, or hold anything there) the time in its entry id."""
    try:
        return datetime.fromtimestamp(int(dead_at or b"") / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(int(entry_id.partition(b"-")[0]) / 1000, UTC)
