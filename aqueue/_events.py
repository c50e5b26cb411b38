"""The app's event stream: what happened to its jobs, as it happened, for dashboards and tools.

Each queue keeps its events in a bounded stream of its own (``Keys.events``, trimmed to about
:data:`EVENTS_LIMIT`), written by the scripts that make each change (enqueue, wait, start,
finish, unblock, cancel, purge, replay) in the same step: a reader never sees an event for a
change that did not happen, nor misses one that did while it reads. A job that waits for
others is told enqueued when it begins to wait (as a delayed job is at its enqueue); a
replayed dead letter is told enqueued again; purged jobs are told cancelled.

A stream per queue, not one per app, keeps every script on its queue's keys alone (one
Cluster slot); :func:`follow` merges them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TypeAlias, cast

from ._redis._cluster import slot_groups
from ._redis._errors import translate_errors
from ._redis._keys import check_name, keys_of

if TYPE_CHECKING:
    from ._app import App

EventType: TypeAlias = Literal[
    "enqueued", "started", "succeeded", "failed", "retried", "cancelled", "dead-lettered"
]
"""What happened: ``retried`` is a failed run with another attempt to come, ``failed`` a
failure for good, ``dead-lettered`` an entry that went to the dead-letter stream."""

READ_BLOCK_MS = 1000
"""How long one read waits for events before it reads again."""


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to a job (see :meth:`aqueue.App.events`)."""

    id: str
    """The event's id: pass it as ``after=`` to read on from here later."""
    type: EventType
    job_id: str
    task: str
    queue: str
    worker: str | None
    """The worker that started or finished the run; None for enqueues, cancels and ends
    without a run (a failed dependency, a workflow's own job)."""
    at: datetime
    """When it happened, by the server's clock."""


def named_queues(app: App) -> list[str]:
    """Every queue the app names: its default, its tasks' (periodic ones too), its routes'."""
    named = (task._config.queue for task in app.tasks.values())
    return sorted({app.default_queue, *named, *app.routes.values()})


async def follow(app: App, queues: Sequence[str] | None, after: str | None) -> AsyncIterator[Event]:
    """Yield the events of ``queues`` (every queue the app names if None) as they come."""
    names = [check_name("queue", q) for q in queues] if queues else named_queues(app)
    streams = {keys_of(app.namespace, q).events: q for q in names}
    if after is None:
        with translate_errors(app.url):
            seconds, micros = await app.redis.time()
        after = f"{seconds * 1000 + micros // 1000}-0"
    # On a Cluster one read may name streams of one slot only: a reader per slot, merged.
    groups = list(slot_groups(app.redis, streams).values())
    readers = [_read(app, dict.fromkeys(group, after)) for group in groups]
    found = readers[0] if len(readers) == 1 else _merged(readers)
    async for stream, entry_id, fields in found:
        yield _event(streams[stream], entry_id, fields)


_Found: TypeAlias = tuple[bytes, bytes, dict[bytes, bytes]]
"""An event as read: its stream, its entry id and its fields."""


async def _read(app: App, positions: dict[bytes, str | bytes]) -> AsyncIterator[_Found]:
    while True:
        with translate_errors(app.url):
            reply = await app.redis.xread(
                cast("dict[bytes | str | memoryview, int | bytes | str | memoryview]", positions),
                count=100,
                block=READ_BLOCK_MS,
            )
        read = cast("list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]", reply or [])
        for stream, entries in read:
            for entry_id, fields in entries:
                positions[stream] = entry_id
                yield stream, entry_id, fields
        # Let other tasks run between reads, even when every read returns at once.
        await asyncio.sleep(0)


async def _merged(readers: list[AsyncIterator[_Found]]) -> AsyncIterator[_Found]:
    """What ``readers`` find, as each finds it; the first error of any of them is raised."""
    found: asyncio.Queue[_Found | BaseException] = asyncio.Queue(maxsize=100)

    async def pump(reader: AsyncIterator[_Found]) -> None:
        try:
            async for item in reader:
                await found.put(item)
        except Exception as exc:  # handed to the consumer, which raises it
            await found.put(exc)

    pumps = [asyncio.create_task(pump(reader)) for reader in readers]
    try:
        while True:
            item = await found.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _event(queue: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    worker = fields.get(b"worker", b"").decode()
    return Event(
        id=entry_id.decode(),
        type=cast("EventType", fields.get(b"type", b"").decode()),
        job_id=fields.get(b"job", b"").decode(),
        task=fields.get(b"task", b"").decode(),
        queue=queue,
        worker=worker or None,
        at=datetime.fromtimestamp(int(entry_id.split(b"-", 1)[0]) / 1000, UTC),
    )
