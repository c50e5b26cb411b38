"""Cancelling a job, and what hangs on it: the jobs waiting for it learn that it ended (and
fail: "dependency failed"), and a workflow's members that have not ended are cancelled too,
nested workflows included. Each level of a workflow costs a few pipelined round trips, not one
per member, so cancelling a 10,000-member group stays quick."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from ._depend import job_ended
from ._job import encode_error
from ._redis import _calls as scripts
from ._redis._errors import translate_errors
from ._redis._keys import Keys, keys_of, queue_of
from .exceptions import ErrorType, JobNotFound

if TYPE_CHECKING:
    from ._app import App
    from ._connections import Connections

CANCELLED_RECORD_TTL = 3600
"""Seconds the record of a cancelled job is kept when the app keeps no results."""

_TELL_AT_ONCE = 100
"""Jobs whose waiting jobs are told concurrently (each telling is a round trip or two)."""


async def cancel(
    app: App,
    connections: Connections,
    job_id: str,
    *,
    keeps_record: bool = True,
    task: str | None = None,
) -> bool:
    """Cancel ``job_id`` and what hangs on it; True if this call cancelled it.

    ``keeps_record=False``: the job was enqueued with ``result_ttl=0`` (its handle says so),
    so no record tells whether it still waits: it is cancelled if it has not started. Its
    ``task`` (the handle knows it) names it in the cancel's event, as no record can.
    """
    with translate_errors(app.url):
        [(before, cancelled)] = await _cancel_each(
            app, connections, [job_id], forgotten=not keeps_record, task=task or ""
        )
        if not before and not cancelled:
            raise JobNotFound(
                f"no record of job {job_id} to cancel: it was never enqueued, or its record "
                "expired. A job enqueued with result_ttl=0 keeps none: cancel it through the "
                "handle its enqueue returned"
            )
        if cancelled:
            await _cascade(app, connections, [job_id])
    return bool(cancelled)


async def _cancel_each(
    app: App,
    connections: Connections,
    job_ids: list[str],
    *,
    forgotten: bool = False,
    task: str = "",
) -> list[Any]:
    error = encode_error(ErrorType.CANCELLED, "cancelled by request")
    keep = app.result_ttl or CANCELLED_RECORD_TTL
    queues = [keys_of(app.namespace, queue_of(job_id)) for job_id in job_ids]
    # The uniqueness key a job holds is named in its record (set at enqueue, never changed):
    # read first, so that the cancel script gets it in its KEYS.
    uniques = await connections.direct.commands(
        [
            (b"HGET", keys.job(job_id), b"unique")
            for keys, job_id in zip(queues, job_ids, strict=True)
        ]
    )
    replies = await connections.direct.run(
        scripts.cancel(
            record=keys.job(job_id),
            cancelled=keys.cancelled,
            queued=keys.queued(job_id),
            delayed=keys.delayed,
            events=keys.events,
            unique=unique if _owned(keys, unique) else keys.unique(""),
            streams=keys.streams,
            job_id=job_id,
            error_value=error,
            ttl=keep,
            forgotten=forgotten,
            events_limit=app.events_limit,
            task=task,
        )
        for keys, job_id, unique in zip(queues, job_ids, uniques, strict=True)
    )
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _owned(keys: Keys, unique: bytes | None) -> TypeGuard[bytes]:
    """Whether ``unique`` is a uniqueness key of the queue (a record written by another
    program could name any key, of any slot)."""
    return unique is not None and unique.startswith(keys.unique(""))


async def _cascade(app: App, connections: Connections, ended: list[str]) -> None:
    while ended:
        for start in range(0, len(ended), _TELL_AT_ONCE):
            await asyncio.gather(
                *(job_ended(app, connections, j) for j in ended[start : start + _TELL_AT_ONCE])
            )
        pipe = app.redis.pipeline(transaction=False)
        for job_id in ended:
            pipe.lrange(keys_of(app.namespace, queue_of(job_id)).members(job_id), 0, -1)
        lists = cast("list[list[bytes]]", await pipe.execute())
        members = [member.decode() for found in lists for member in found]
        if not members:
            return
        replies = await _cancel_each(app, connections, members)
        ended = [member for member, (_, now) in zip(members, replies, strict=True) if now]
