"""What the dashboard shows, read from Redis as plain values: the JSON API returns them as
they are, and the pages render the same values.

Jobs are listed from where each status lives: queued and running jobs are the entries of
the queue's streams (running ones are those delivered and not yet acknowledged), scheduled
ones the members of its delayed set, and finished ones the queue's event stream, which only
apps made with ``App(events=True)`` write (without it, a finished job is found by its id).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, cast, get_args

from redis.exceptions import ResponseError

from .._app import App, connections_of
from .._inspect import (
    Arguments,
    decoded_arguments,
    job_arguments,
    job_record,
    known_queues,
    queue_status,
)
from .._job import JobInfo, JobStatus
from .._queue import DeadLetter, _dead_letter
from .._redis._errors import redact, translate_errors
from .._redis._keys import DEFAULT_PRIORITY, EVENTS_LIMIT, GROUP, keys_of, queue_of
from .._redis._msgpack import named_value
from .._redis._wire import CODES
from .._registry import WorkerInfo
from .._schedule import last_tick_key

Listed = Literal["queued", "running", "scheduled", "succeeded", "failed", "cancelled"]
"""The statuses the jobs page lists."""
LISTED: tuple[Listed, ...] = get_args(Listed)
FINISHED = frozenset(status.value for status in JobStatus if status.is_final)

Entries: TypeAlias = list[tuple[bytes, dict[bytes, bytes]]]
"""A stream range as redis-py returns it."""

LETTERS_AFTER_END = 100
"""Dead letters read after a failed job's end to find its own (others fail at the same time)."""
EVENTS_BATCH = 1000
"""Events read per round trip while looking for finished jobs or a job's timeline."""


async def queue_names(app: App) -> list[str]:
    """The queues the app names and those its live workers serve (an app given to the
    dashboard may register no task of its own: a producer's, or a bare ``App(url)``)."""
    return known_queues(app, await app.workers())


async def overview(app: App) -> dict[str, Any]:
    """The queues with their counts, the live workers, and where the app's data lives."""
    workers = await app.workers()
    statuses = await queue_status(app, known_queues(app, workers), workers)
    return {
        "redis": redact(app.url),
        "namespace": app.namespace,
        "events": app.events_limit > 0,
        "queues": [status.as_json() for status in statuses],
        "workers": [worker_json(worker) for worker in workers],
        "schedules": len(app.schedules),
    }


def worker_json(worker: WorkerInfo) -> dict[str, Any]:
    return dataclasses.asdict(worker)


RUNNING_SHOWN = 100
"""Running jobs read per queue for the workers page (each worker's are listed with it)."""


async def workers(app: App) -> list[dict[str, Any]]:
    """The live workers, each with the ids of the jobs it runs now (``jobs``)."""
    found = await app.workers()
    running: dict[str, list[str]] = {}
    for queue in sorted({queue for worker in found for queue in worker.queues}):
        for row in await jobs(app, queue, "running", RUNNING_SHOWN):
            running.setdefault(row["worker"], []).append(row["id"])
    return [{**worker_json(w), "jobs": running.get(w.id, [])} for w in found]


async def jobs(app: App, queue: str, status: Listed, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` jobs of ``queue`` with ``status``: ``id``, ``task``, ``status``,
    ``at`` (enqueued, due or finished) and ``worker`` (for running and finished ones)."""
    app.queue(queue)  # checks the name
    with translate_errors(app.url):
        if status in ("queued", "running"):
            return await _unfinished(app, queue, status, limit)
        if status == "scheduled":
            return await _scheduled(app, queue, limit)
        return await _finished(app, queue, status, limit)


async def _streams(app: App, queue: str) -> list[bytes]:
    keys = keys_of(app.namespace, queue)
    levels = {int(m) for m in await app.redis.smembers(keys.levels) if m.isdigit()}
    return [keys.stream_at(level) for level in sorted({DEFAULT_PRIORITY, *levels}, reverse=True)]


async def _unfinished(app: App, queue: str, status: Listed, limit: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for stream in await _streams(app, queue):
        if len(found) >= limit:
            break
        if status == "running":
            found += await _running(app, stream, limit - len(found))
        else:
            found += await _queued(app, stream, limit - len(found))
    return found


async def _running(app: App, stream: bytes, limit: int) -> list[dict[str, Any]]:
    try:
        pending = cast(
            "list[dict[str, bytes]]",
            await app.redis.xpending_range(stream, GROUP, "-", "+", limit),
        )
    except ResponseError:  # no stream or no group yet: no worker ever read the queue
        return []
    pipe = app.redis.pipeline(transaction=False)
    for entry in pending:
        pipe.xrange(stream, entry["message_id"], entry["message_id"])
    rows = []
    for entry, found in zip(pending, await pipe.execute(), strict=True):
        if found:
            row = _entry_row(found[0], "running")
            rows.append({**row, "worker": entry["consumer"].decode(errors="replace")})
    return rows


async def _queued(app: App, stream: bytes, limit: int) -> list[dict[str, Any]]:
    # Entries after the group's last delivered one are waiting; those before are running.
    start = "-"
    try:
        groups = await app.redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return []
    for group in groups:
        if group["name"].decode() == GROUP:
            start = "(" + group["last-delivered-id"].decode()
    found = cast("Entries", await app.redis.xrange(stream, start, "+", count=limit))
    return [_entry_row(entry, "queued") for entry in found]


def _entry_row(entry: tuple[bytes, dict[bytes, bytes]], status: str) -> dict[str, Any]:
    entry_id, fields = entry
    return {
        "id": _text(fields.get(CODES["job_id"].encode())),
        "task": _text(fields.get(CODES["task"].encode())),
        "status": status,
        "at": _at_ms(int(entry_id.partition(b"-")[0])),
        "worker": None,
    }


async def _scheduled(app: App, queue: str, limit: int) -> list[dict[str, Any]]:
    keys = keys_of(app.namespace, queue)
    members = cast(
        "list[tuple[bytes, float]]",
        await app.redis.zrange(keys.delayed, 0, limit - 1, withscores=True),
    )
    rows = []
    for member, due in members:
        job_id = named_value(member, CODES["job_id"].encode())
        if job_id is None:
            continue  # no job's (written by hand): the workers dead-letter it when it is due
        rows.append(
            {
                "id": _text(job_id),
                "task": _text(named_value(member, CODES["task"].encode())),
                "status": "scheduled",
                "at": _at_ms(int(due)),
                "worker": None,
            }
        )
    return rows


async def _finished(app: App, queue: str, status: Listed, limit: int) -> list[dict[str, Any]]:
    # Newest first; a job's latest event says where it is now (a failed job may have been
    # replayed and succeeded since).
    stream = keys_of(app.namespace, queue).events
    seen: set[bytes] = set()
    rows: list[dict[str, Any]] = []
    end = "+"
    for _ in range(EVENTS_LIMIT // EVENTS_BATCH + 1):
        batch = cast("Entries", await app.redis.xrevrange(stream, end, "-", count=EVENTS_BATCH))
        for entry_id, fields in batch:
            job_id = fields.get(b"job", b"")
            if job_id in seen:
                continue
            seen.add(job_id)
            if fields.get(b"type") == status.encode():
                rows.append(_event_row(entry_id, fields))
                if len(rows) >= limit:
                    return rows
        if len(batch) < EVENTS_BATCH:
            break
        end = "(" + batch[-1][0].decode()
    return rows


def _event_row(entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    return {
        "id": _text(fields.get(b"job")),
        "task": _text(fields.get(b"task")) or None,
        "status": _text(fields.get(b"type")),
        "at": _at_ms(int(entry_id.partition(b"-")[0])),
        "worker": _text(fields.get(b"worker")) or None,
    }


async def job(app: App, job_id: str) -> dict[str, Any] | None:
    """The job's record (as ``aqueue job --json``), its timeline of events and the id of its
    dead letter (what a retry replays); None when there is no record."""
    handle = app.job(job_id)  # raises JobNotFound for an id aqueue never made
    info = await handle.info()
    if info.status is JobStatus.UNKNOWN:
        return None
    arguments = await job_arguments(app, info)
    letter = await dead_letter_of(app, info)
    if arguments.decoded is None and letter is not None:
        arguments = Arguments(decoded_arguments(app, letter.payload))
    with translate_errors(app.url):
        timeline = await _timeline(app, job_id, info.enqueued_at)
    record = job_record(app, info, arguments)
    record["dead_letter"] = None if letter is None else dead_letter_json(app, letter)
    record["timeline"] = timeline
    return record


async def dead_letter_of(app: App, info: JobInfo) -> DeadLetter | None:
    """The dead letter of a job that failed, if it left one (``dead_letter_failures``, poison,
    an unknown task). The script that records the failure writes the letter in the same step,
    so the letter's id is no earlier than the job's end: only the letters from then are read.
    """
    if info.status is not JobStatus.FAILED or info.finished_at is None:
        return None
    keys = keys_of(app.namespace, queue_of(info.id))
    start = f"{int(info.finished_at.timestamp() * 1000)}-0"
    with translate_errors(app.url):
        # The raw field list, as Queue.dead_letters reads it (aqueue's fields first).
        [entries] = await connections_of(app).direct.commands(
            [(b"XRANGE", keys.dead, start, b"+", b"COUNT", LETTERS_AFTER_END)]
        )
    letters = (_dead_letter(entry_id, fields) for entry_id, fields in entries)
    return next((letter for letter in letters if letter.job_id == info.id), None)


async def _timeline(app: App, job_id: str, since: datetime | None) -> list[dict[str, Any]]:
    """The job's events, oldest first, read from its enqueue time on (bounded)."""
    stream = keys_of(app.namespace, app.job(job_id).queue).events
    start = "-" if since is None else f"{int(since.timestamp() * 1000)}-0"
    wanted = job_id.encode()
    events = []
    for _ in range(EVENTS_LIMIT // EVENTS_BATCH + 1):
        batch = cast("Entries", await app.redis.xrange(stream, start, "+", count=EVENTS_BATCH))
        events += [
            _event_row(entry_id, fields)
            for entry_id, fields in batch
            if fields.get(b"job") == wanted
        ]
        if len(batch) < EVENTS_BATCH:
            break
        start = "(" + batch[-1][0].decode()
    return [{"type": e["status"], "at": e["at"], "worker": e["worker"]} for e in events]


async def dead_letters(app: App, queue: str, limit: int) -> list[dict[str, Any]]:
    """The oldest ``limit`` dead letters of ``queue``, each with its reason and entry."""
    return [dead_letter_json(app, letter) for letter in await app.queue(queue).dead_letters(limit)]


def dead_letter_json(app: App, letter: DeadLetter) -> dict[str, Any]:
    data = dataclasses.asdict(letter)
    data["payload"] = None if letter.payload is None else letter.payload.decode(errors="replace")
    arguments = decoded_arguments(app, letter.payload)
    data["arguments"] = (
        None if arguments is None else {"args": arguments[0], "kwargs": arguments[1]}
    )
    return data


async def schedules(app: App) -> list[dict[str, Any]]:
    """The app's periodic tasks, each with its last fired tick and its next one."""
    found = []
    with translate_errors(app.url):
        seconds, micros = await app.redis.time()
        now = seconds + micros / 1_000_000
        for schedule in app.schedules:
            last = await app.redis.get(last_tick_key(app.namespace, schedule.task_name))
            found.append(
                {
                    "task": schedule.task_name,
                    "queue": app.tasks[schedule.task_name]._config.queue,
                    "schedule": schedule.describe,
                    "misfire": schedule.misfire,
                    "last": None if last is None else _at(float(last)),
                    "next": _at(schedule.next_after(now)),
                }
            )
    return found


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode(errors="replace")


def _at_ms(ms: int) -> datetime:
    return _at(ms / 1000)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
