"""One builder per Lua script: named, typed parameters in, a :class:`Call` (KEYS and ARGV) out.

This is the one home of each script's contract on the Python side. The ``.lua`` file names the
same values at its top, in the order its builder emits them (``local stream = KEYS[1]``; a block
of keys by the index it starts at: ``local streams = 4  -- KEYS[4...]: streams``), and
``tests/test_contract.py`` holds the two to each other. Values a group of parameters shares (a
job of an enqueue, a task's limits) come as a :class:`~typing.NamedTuple` whose field names are
the Lua names.

Every key a script touches is a parameter here: nothing names a key inside Lua, so Redis
Cluster can route a call and check it. The keys of one call share one hash slot (a queue's hash
tag): a caller with keys of several queues makes one call per queue.

The hot paths (enqueue, start, finish) build their lists directly, with no introspection: a
builder costs what building the lists by hand did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ._scripts import (
    CANCEL,
    DEPEND,
    ENQUEUE,
    FETCH,
    FINISH,
    LEAD,
    MOVED,
    POLL,
    PROGRESS,
    PRUNE,
    PURGE,
    REGISTER,
    RELEASE,
    RENEW,
    REPLAY,
    REQUEUE,
    RESIGN,
    RESOLVE,
    START,
    STATS,
    UNBLOCK,
    WAIT,
)
from ._scripts import Call as Call  # re-exported: the builders return it

Key = bytes
"""A Redis key: every one a script touches is passed in its KEYS."""

Value = bytes | str | int | float
"""An ARGV value, sent as Redis sends any argument (a number in decimal)."""


MOST_JOBS_PER_CALL = 500
"""Most jobs in one start or finish call: a script holds the server while it runs (a couple
of ms for this many), and Lua unpacks at most a few thousand ids into one command."""


def _id_range(entry_ids: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The least and the greatest of ``entry_ids`` (``b""`` twice for none), which the start
    and finish scripts take after their jobs: a batch is fenced with one XPENDING over that
    range, and finding it here spares the server parsing every id of the batch in Lua."""
    if not entry_ids:
        return b"", b""
    by_order = {_entry_order(entry_id): entry_id for entry_id in entry_ids}
    return by_order[min(by_order)], by_order[max(by_order)]


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    """A stream entry id as the numbers it is ordered by: ms, then sequence."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


def _flag(value: bool) -> str:
    """A yes/no argument as the scripts read it: ``"1"`` or ``""``."""
    return "1" if value else ""


class EnqueuedJob(NamedTuple):
    """One job of an enqueue call: its keys (record, "queued" hash, uniqueness key), then its
    values (id, payload, options, and the spec its task configuration shares; see
    :class:`aqueue._message.JobSpec`)."""

    record: Key
    queued: Key
    unique: Key
    job_id: str
    payload: bytes
    options: bytes
    spec: bytes


def enqueue(
    *,
    delayed: Key,
    levels: Key,
    events: Key,
    streams: Sequence[Key],
    limit: int,
    events_limit: int,
    stream_levels: str,
    group: str,
    jobs: Sequence[EnqueuedJob],
) -> Call:
    """Add ``jobs`` to one queue (``limit``: most jobs it may hold, 0 for no limit).

    ``streams`` are the streams of the jobs' levels (every level's with a limit), and
    ``stream_levels`` says whose each is: a level's digit, ``"-"`` for the default level.
    ``group``: the workers' consumer group, which tells a limited queue's finished entries
    from its unfinished ones."""
    keys = [delayed, levels, events, *streams]
    args: list[Any] = [limit, events_limit, stream_levels, group]
    for job in jobs:
        keys += job[:3]
        args += job[3:]
    return Call(ENQUEUE, keys, args)


class StartLimits(NamedTuple):
    """What the start script takes to acquire a task's limits (see :mod:`aqueue._limits`)."""

    rate_tat: Key
    rate_reserved: Key
    holders: Key
    parked_line: Key
    interval_us: str
    """Microseconds between two jobs of the rate ("" for no rate)."""
    most: int | str
    """Most running at once ("" for no cap)."""
    lease: int
    """The lease in ms."""


class StartedJob(NamedTuple):
    """One delivery of a start call: its keys (record, "queued" hash), then its values (see
    start.lua: all but the entry id and the job id travel in the job's spec)."""

    record: Key
    queued: Key
    entry_id: bytes
    max_attempts: int
    keeps_record: bool
    prior_attempts: int
    expires_at: int
    record_ttl: int
    task_name: str
    job_id: str
    queued_first: bool = False
    """Whether the job's status may be a field of its "queued" hash (it was enqueued to run at
    once, with a record and no uniqueness key): the script looks there first."""


def start(
    *,
    stream: Key,
    events: Key,
    delayed: Key,
    followed: Key,
    paused: Key,
    holder_streams: Sequence[Key],
    consumer: bytes | str,
    group: str,
    events_limit: int,
    limits: StartLimits | None,
    jobs: Sequence[StartedJob],
) -> Call:
    """Begin ``jobs``, deliveries of ``stream`` (see start.lua for the replies, one per job).

    ``holder_streams``: the queue's level streams (a concurrency slot's holder names the stream
    of its entry). ``limits``: those every one of ``jobs`` takes, or None. ``followed``: the
    queue's jobs that someone follows (see Keys.followed). ``paused``: the queue's pause flag
    (none of ``jobs`` starts while it is set)."""
    keys = [stream, events, delayed, followed, paused]
    args: list[Any] = [consumer, group, events_limit]
    if limits is None:
        keys += (stream,) * 4
        args += ("", "", "")
    else:
        keys += limits[:4]
        args += limits[4:]
    keys += holder_streams
    for job in jobs:
        keys += job[:2]
        # The values the jobs of one task mostly share go as one spec, parsed once per call.
        spec = (
            f"{job.max_attempts} {int(job.keeps_record)} {int(job.queued_first)} "
            f"{job.prior_attempts} {job.expires_at} {job.record_ttl} {job.task_name}"
        )
        args += (job.entry_id, job.job_id, spec)
    args += _id_range([job.entry_id for job in jobs])
    return Call(START, keys, args)


class FinishedJob(NamedTuple):
    """One delivery of a finish call: its keys (record, uniqueness key, the set of jobs waiting
    for it), then its values (see finish.lua: all but the entry id, the job id, the outcome
    value, the arguments and a retry's member travel in the job's spec)."""

    record: Key
    unique: Key
    dependents: Key
    entry_id: bytes
    status: str
    outcome_field: str
    outcome: bytes | str
    result_ttl: int
    dead_reason: str
    retry_delay_ms: int
    retry_member: bytes
    """With status ``scheduled``: the job's member of the delayed set, packed (see
    :meth:`aqueue._worker._outcome.Delivery.retry_member`)."""
    job_id: str
    key_ttl: str
    told: bool
    task: str
    arguments: bytes
    """The job's encoded arguments for its record to keep once it ran (``b""``: none)."""
    arguments_size: str
    """Their size in bytes when they are too large to keep (``""``: none)."""


def finish(
    *,
    stream: Key,
    dead: Key,
    delayed: Key,
    events: Key,
    cancelled: Key,
    followed: Key,
    group: str,
    consumer: bytes,
    dead_limit: int,
    events_limit: int,
    jobs: Sequence[FinishedJob],
) -> Call:
    """Record the outcomes of ``jobs``, deliveries of ``stream``, and ack them: each only if
    ``consumer`` still owns its entry (see finish.lua for the replies, one per job).
    ``cancelled``: the queue's set of running jobs cancelled lately; ``followed``: its jobs
    that someone follows (see Keys.followed)."""
    keys = [stream, dead, delayed, events, cancelled, followed]
    args: list[Any] = [group, consumer, dead_limit, events_limit]
    for job in jobs:
        keys += job[:3]
        if job.arguments:
            arguments_field, arguments = "args", job.arguments
        elif job.arguments_size:
            arguments_field, arguments = "args_size", job.arguments_size.encode()
        else:
            arguments_field, arguments = "-", b""
        # The values the outcomes of one kind share go as one spec, parsed once per call.
        spec = (
            f"{job.status or '-'} {job.outcome_field} {job.result_ttl} {job.key_ttl or '-'} "
            f"{int(job.told)} {arguments_field} {job.retry_delay_ms} "
            f"{len(job.dead_reason.encode())} {job.dead_reason}{job.task}"
        )
        args += (job.entry_id, job.job_id, spec, job.outcome, arguments)
    args += (job.retry_member for job in jobs if job.status == "scheduled")
    args += _id_range([job.entry_id for job in jobs])
    return Call(FINISH, keys, args)


def requeue(
    *, stream: Key, record: Key, queued: Key, group: str, consumer: bytes, entry_id: bytes
) -> Call:
    """Hand an entry this consumer owns back to the queue's tail (``queued``: the job's
    "queued" hash, which names its entry while it waits)."""
    return Call(REQUEUE, [stream, record, queued], [group, consumer, entry_id])


def release(
    *,
    stream: Key,
    holders: Key,
    parked_line: Key,
    delayed: Key,
    group: str,
    entry_id: bytes,
) -> Call:
    """Free the concurrency slot of an entry that is no longer pending."""
    return Call(RELEASE, [stream, holders, parked_line, delayed], [group, entry_id])


def register(
    *,
    index: Key,
    record: Key,
    name: str,
    worker: bytes | str,
    ttl_ms: int | str,
    forget_after: int | str,
) -> Call:
    """Write a worker's registry record (``ttl_ms=""``: deregister it)."""
    return Call(REGISTER, [index, record], [name, worker, ttl_ms, forget_after])


def renew(*, stream: Key, group: str, consumer: str, entry_ids: Sequence[bytes]) -> Call:
    """Renew the lease of ``entry_ids`` (a few thousand at most) that ``consumer`` owns."""
    return Call(RENEW, [stream], [group, consumer, *entry_ids])


def fetch(*, streams: Sequence[Key], group: str, consumer: str, count: int) -> Call:
    """Read up to ``count`` new entries from ``streams``, in that order."""
    return Call(FETCH, list(streams), [group, consumer, count])


def poll(
    *,
    delayed: Key,
    levels: Key,
    cancelled: Key,
    paused: Key,
    leader: Key,
    dead: Key,
    followed: Key,
    streams: Sequence[Key],
    batch: int,
    cursor: int,
    worker: str,
    lead_ms: int,
    dead_limit: int,
    quiet_ms: int,
) -> Call:
    """A worker's look at a queue: it moves up to ``batch`` due jobs into their streams, and
    tells levels, cancellations, pause and leadership. ``followed``: the queue's jobs that
    someone follows (see Keys.followed), whose ids it returns when it moves them. It tells the
    queue's workers the next due time after a move, unless that is within ``quiet_ms``."""
    return Call(
        POLL,
        [delayed, levels, cancelled, paused, leader, dead, followed, *streams],
        [batch, cursor, worker, lead_ms, dead_limit, quiet_ms],
    )


def progress(*, record: Key, fraction: str, message: str) -> Call:
    """Record a running job's progress."""
    return Call(PROGRESS, [record], [fraction, message])


def lead(*, leader: Key, worker: str, lead_ms: int) -> Call:
    """Renew ``worker``'s leadership of a queue for ``lead_ms``, if it still leads it."""
    return Call(LEAD, [leader], [worker, lead_ms])


def resign(*, leader: Key, worker: str) -> Call:
    """Stop leading a queue's housekeeping, if ``worker`` leads it."""
    return Call(RESIGN, [leader], [worker])


def stats(
    *,
    dead: Key,
    delayed: Key,
    levels: Key,
    streams: Sequence[Key],
    group: str,
) -> Call:
    """A queue's counts, read in one step."""
    return Call(STATS, [dead, delayed, levels, *streams], [group])


def prune(
    *, levels: Key, streams: Sequence[Key], group: str, least_idle_ms: int, consumer: str
) -> Call:
    """Delete idle consumers with nothing pending (only ``consumer``, unless "")."""
    return Call(PRUNE, [levels, *streams], [group, least_idle_ms, consumer])


def cancel(
    *,
    record: Key,
    cancelled: Key,
    queued: Key,
    delayed: Key,
    events: Key,
    unique: Key,
    streams: Sequence[Key],
    job_id: str,
    error_value: bytes,
    ttl: int,
    forgotten: bool,
    events_limit: int,
    task: str,
) -> Call:
    """Cancel a job that has not ended (``unique``: the key its record names, if any;
    ``task``: its task name for the event when no record tells it, else "")."""
    return Call(
        CANCEL,
        [record, cancelled, queued, delayed, events, unique, *streams],
        [job_id, error_value, ttl, _flag(forgotten), events_limit, task],
    )


def moved(*, delayed: Key, record: Key, job_id: str) -> Call:
    """The status, as it is now, of a job whose record said scheduled: ``queued`` once it
    has left ``delayed`` (moved into its stream), else the record's (see lua/moved.lua)."""
    return Call(MOVED, [delayed, record], [job_id])


class PurgedEntry(NamedTuple):
    """An entry a purge drops, with the keys of the job it names."""

    record: Key
    queued: Key
    unique: Key
    entry_id: bytes


def purge(
    *,
    stream: Key,
    events: Key,
    group: str,
    error_value: bytes,
    ttl: int,
    events_limit: int,
    entries: Sequence[PurgedEntry],
) -> Call:
    """Drop the ``entries`` of ``stream`` that no worker has read yet."""
    keys = [stream, events]
    args: list[Any] = [group, error_value, ttl, events_limit]
    for entry in entries:
        keys += entry[:3]
        args.append(entry.entry_id)
    return Call(PURGE, keys, args)


class Letter(NamedTuple):
    """A dead letter to replay, with the keys of the job it names."""

    record: Key
    unique: Key
    letter_id: bytes


def replay(
    *,
    dead: Key,
    levels: Key,
    events: Key,
    streams: Sequence[Key],
    own_fields: str,
    dropped_fields: str,
    most: int,
    events_limit: int,
    letters: Sequence[Letter],
) -> Call:
    """Move up to ``most`` of ``letters`` back into the queue."""
    keys = [dead, levels, events, *streams]
    args: list[Any] = [own_fields, dropped_fields, most, events_limit]
    for letter in letters:
        keys += letter[:2]
        args.append(letter.letter_id)
    return Call(REPLAY, keys, args)


def wait(
    *,
    record: Key,
    wait: Key,
    pending: Key,
    members: Key,
    events: Key,
    status: str,
    task: str,
    ttl: int,
    expires_in: int,
    events_limit: int,
    dependencies: Sequence[str],
    member_ids: Sequence[str],
    fields: Sequence[tuple[str, Value]],
) -> Call:
    """Register a job (or a workflow's parent record) that waits for ``dependencies``."""
    args: list[Any] = [status, task, ttl, expires_in, events_limit]
    args += [len(dependencies), *dependencies, len(member_ids), *member_ids]
    for name, value in fields:
        args += [name, value]
    return Call(WAIT, [record, wait, pending, members, events], args)


def depend(
    *, record: Key, dependents: Key, queued: Key, waiting_job: str, ttl: int, fresh: bool
) -> Call:
    """Register ``waiting_job`` as a dependent of a job, unless that job ended."""
    return Call(DEPEND, [record, dependents, queued], [waiting_job, ttl, _flag(fresh)])


def resolve(
    *, record: Key, wait: Key, pending: Key, dependency: str, dependency_status: str
) -> Call:
    """Count the end of ``dependency`` for a waiting job."""
    return Call(RESOLVE, [record, wait, pending], [dependency, dependency_status])


def unblock(
    *,
    record: Key,
    wait: Key,
    pending: Key,
    levels: Key,
    events: Key,
    streams: Sequence[Key],
    action: str,
    payload: bytes = b"",
    codes: str = "",
    status: str = "",
    outcome_field: str = "",
    outcome: bytes = b"",
    result_ttl: int = 0,
    events_limit: int,
) -> Call:
    """Release a waiting job once: ``action="enqueue"`` it (with ``payload``, the entry's
    ``codes``) or ``"finish"`` its record (with ``status`` and the outcome, told as an event)."""
    return Call(
        UNBLOCK,
        [record, wait, pending, levels, events, *streams],
        [action, payload, codes, status, outcome_field, outcome, result_ttl, events_limit],
    )
