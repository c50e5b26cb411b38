"""Operating one queue: statistics, pausing it, and its dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from redis.exceptions import ResponseError

from ._cancel import CANCELLED_RECORD_TTL
from ._checks import whole_number
from ._depend import job_ended
from ._job import encode_error
from ._message import DEAD_LETTER_FIELDS
from ._redis import _calls as scripts
from ._redis._errors import translate_errors
from ._redis._keys import DEFAULT_PRIORITY, GROUP, Keys, keys_of
from ._redis._wire import CODES, FIELDS
from ._registry import live_workers
from .exceptions import ErrorType

if TYPE_CHECKING:
    from ._app import App
    from ._connections import Connections

PURGE_BATCH = 1000
"""Entries each purge call drops: a call is one step on the server, kept short."""

REPLAY_PAGE = 100
"""Dead letters read, then replayed, at a time."""


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
    """Live workers that serve this queue (as the registry lists them: ``app.workers()``)."""
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

    __slots__ = ("_app", "_connections", "_keys", "name")

    def __init__(self, app: App, connections: Connections, name: str) -> None:
        self._app = app
        self._connections = connections
        self.name = name
        self._keys = keys_of(app.namespace, name)

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"

    async def stats(self) -> QueueStats:
        """Queued, scheduled, running and dead-lettered counts and the number of live workers.

        Queued and running jobs are counted over every priority level's stream: queued are
        those no worker has read yet, running those read and not finished. Finished jobs whose
        entries wait in a stream for their trim count as neither.
        """
        keys = self._keys
        with translate_errors(self._app.url):
            call = scripts.stats(
                dead=keys.dead,
                delayed=keys.delayed,
                levels=keys.levels,
                streams=keys.streams,
                group=GROUP,
            )
            (
                queued,
                scheduled,
                running,
                dead,
                at_default,
                *levels,
            ) = await self._connections.direct.call(call)
        # The registry is the one place that says which live workers serve a queue: a worker
        # beats there once for all its queues, not once per queue.
        workers = sum(self.name in info.queues for info in await live_workers(self._app))
        by_priority = {DEFAULT_PRIORITY: at_default}
        pairs = zip(levels[::2], levels[1::2], strict=True)
        by_priority.update((int(level), count) for level, count in pairs if level.isdigit())
        ordered = dict(sorted(by_priority.items(), reverse=True))
        return QueueStats(self.name, queued, scheduled, running, dead, workers, ordered)

    async def pause(self) -> None:
        """Stop every worker from reading this queue until :meth:`resume`.

        Workers learn of it at once (it is announced to them on pub/sub). Once this returns,
        no job of the queue starts until the resume, not even one that a read already waiting
        receives (handed back, still queued), except a job keeping no result in an app without
        events (started without a call to the server). Running jobs go on, their leases
        renewed; producers still enqueue, and delayed jobs still move into the queue when due;
        they wait there for the resume. The pause holds for workers that start later too.
        """
        await self._flag(paused=True)

    async def resume(self) -> None:
        """Let workers read this queue again (they learn of it as promptly as of a pause)."""
        await self._flag(paused=False)

    async def _flag(self, *, paused: bool) -> None:
        # The flag, then the notice (sharded, in the queue's slot), in this order on one
        # connection (to the queue's master on a Cluster, whose pipelines may not publish): a
        # worker told of the change reads the flag as it now is.
        flag = self._keys.paused
        change = (b"SET", flag, 1) if paused else (b"DEL", flag)
        with translate_errors(self._app.url):
            await self._connections.direct.commands([change, (b"SPUBLISH", flag, int(paused))])

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
                while entries := await self._unread(stream):
                    # Read first, so that the script gets the keys of their jobs; it drops
                    # only those that no worker read meanwhile.
                    count, *job_ids = await self._connections.direct.call(
                        scripts.purge(
                            stream=stream,
                            events=keys.events,
                            group=GROUP,
                            error_value=error,
                            ttl=keep,
                            events_limit=app.events_limit,
                            entries=[_purged(keys, entry_id, raw) for entry_id, raw in entries],
                        )
                    )
                    dropped += count
                    for job_id in job_ids:
                        await job_ended(app, self._connections, job_id.decode())
                    if len(entries) < PURGE_BATCH:
                        break
        return dropped

    async def _unread(self, stream: bytes) -> list[tuple[bytes, list[bytes]]]:
        """Up to :data:`PURGE_BATCH` entries of ``stream`` that no worker has read yet."""
        try:
            [groups] = await self._connections.direct.commands([(b"XINFO", b"GROUPS", stream)])
        except ResponseError:
            return []  # no stream: nothing queued
        after = b"-"
        for found in groups:
            # A map in RESP3, a flat list of names and values in RESP2.
            info = found if isinstance(found, dict) else dict(zip(*[iter(found)] * 2, strict=True))
            if info[b"name"] == GROUP.encode():
                after = b"(" + info[b"last-delivered-id"]
        [entries] = await self._connections.direct.commands(
            [(b"XRANGE", stream, after, b"+", b"COUNT", PURGE_BATCH)]
        )
        return cast("list[tuple[bytes, list[bytes]]]", entries)

    async def dead_letters(self, limit: int = 50) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, each with the reason it was dead-lettered."""
        whole_number(limit, "limit")
        with translate_errors(self._app.url):
            # The raw field list, in order: a client's dict would keep the last of two fields
            # of one name, and aqueue's come first (see DEAD_LETTER_FIELDS).
            [entries] = await self._connections.direct.commands(
                [(b"XRANGE", self._keys.dead, b"-", b"+", b"COUNT", limit)]
            )
        raw = cast("list[tuple[bytes, list[bytes]]]", entries)
        return [_dead_letter(entry_id, fields) for entry_id, fields in raw]

    async def replay_dead_letters(
        self,
        limit: int = 10_000,
        *,
        letter: str | None = None,
        task: str | None = None,
        reason: str | None = None,
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
            letter: Replay only the dead letter with this id (:attr:`DeadLetter.id`).

        Returns:
            How many jobs went back into the queue.
        """
        whole_number(limit, "limit")
        keys = self._keys
        own = " ".join(DEAD_LETTER_FIELDS)
        not_replayed = " ".join(wire.code for wire in FIELDS if not wire.replayed)
        # One letter: the range of its id alone, which the next page, "(id" to id, ends.
        start, end = (letter.encode(), letter.encode()) if letter else (b"-", b"+")
        replayed = 0
        with translate_errors(self._app.url):
            while replayed < limit:
                # Read a page first, so that the script gets the keys of the letters' jobs;
                # letters that cannot be replayed are passed by, never blocking the rest.
                [page] = await self._connections.direct.commands(
                    [(b"XRANGE", keys.dead, start, end, b"COUNT", REPLAY_PAGE)]
                )
                if not page:
                    break
                start = b"(" + page[-1][0]
                moved, _ = await self._connections.direct.call(
                    scripts.replay(
                        dead=keys.dead,
                        levels=keys.levels,
                        events=keys.events,
                        streams=keys.streams,
                        own_fields=own,
                        dropped_fields=not_replayed,
                        most=limit - replayed,
                        events_limit=self._app.events_limit,
                        letters=[
                            _letter(keys, entry_id, raw)
                            for entry_id, raw in page
                            if _selected(raw, task, reason)
                        ],
                    )
                )
                replayed += moved
        return replayed

    async def purge_dead_letters(self) -> int:
        """Delete every dead letter of this queue and return how many there were."""
        with translate_errors(self._app.url):
            pipe = self._app.redis.pipeline(transaction=True)
            pipe.xlen(self._keys.dead)
            pipe.delete(self._keys.dead)
            count, _ = await pipe.execute()
        return int(count)


def _first_fields(raw: list[bytes]) -> dict[str, bytes]:
    """An entry's fields, the first of each name: aqueue's own fields of a dead letter lead,
    the entry's follow (see DEAD_LETTER_FIELDS)."""
    fields: dict[str, bytes] = {}
    for name, value in zip(raw[::2], raw[1::2], strict=True):
        fields.setdefault(name.decode(errors="replace"), value)
    return fields


def _named(keys: Keys, raw: list[bytes]) -> tuple[str, bytes]:
    """The job id an entry names and the uniqueness key it holds. For what it does not name
    (or names outside the queue: written by another program), a value that stands for a key
    of the queue the scripts leave alone: every key of a script call shares the queue's slot."""
    fields = _first_fields(raw)
    job_id = fields.get(CODES["job_id"], b":").decode(errors="replace")
    unique = fields.get(CODES["unique_key"], b"")
    if not unique.startswith(keys.unique("")):
        unique = keys.unique("")
    return job_id, unique


def _purged(keys: Keys, entry_id: bytes, raw: list[bytes]) -> scripts.PurgedEntry:
    job_id, unique = _named(keys, raw)
    return scripts.PurgedEntry(keys.job(job_id), keys.queued(job_id), unique, entry_id)


def _selected(raw: list[bytes], task: str | None, reason: str | None) -> bool:
    """Whether a dead letter is of ``task`` and its reason holds ``reason`` (None: any).
    Letters do not change once written, so choosing them before the script moves them is
    safe."""
    fields = _first_fields(raw)
    if task is not None and fields.get(CODES["task"]) != task.encode():
        return False
    return reason is None or reason.encode() in fields.get("reason", b"")


def _letter(keys: Keys, letter_id: bytes, raw: list[bytes]) -> scripts.Letter:
    job_id, unique = _named(keys, raw)
    return scripts.Letter(keys.job(job_id), unique, letter_id)


def _dead_letter(entry_id: bytes, raw: list[bytes]) -> DeadLetter:
    fields = _first_fields(raw)

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
