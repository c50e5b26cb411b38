"""Jobs that wait for other jobs: ``options(after=...)``, and the machinery under chains,
groups and chords (:mod:`aqueue._canvas` builds on it).

How it stays exactly-once and loses nothing, also on Redis Cluster
------------------------------------------------------------------
A waiting job and the jobs it waits for may live in different queues, hence different hash
slots, so no single script may touch both. Every step therefore runs in one slot, and every
cross-slot step is idempotent and runs *before* the ack that ends the dependency's delivery:

1. ``wait.lua`` (the waiting job's slot) writes its record, a *wait hash* (how to enqueue or
   finish it), and a *pending set* of the dependencies it still waits for.
2. ``depend.lua`` (each dependency's slot) adds the waiting job to the dependency's
   *dependents set*, unless the dependency already ended; then the producer resolves the
   waiting job itself. The check and the registration are one step, as is the status change
   in ``finish.lua``, so there is no gap in which an end goes unnoticed.
3. When a job with dependents ends, ``finish.lua`` writes its outcome but does not ack the
   entry; the worker tells each dependent (:func:`job_ended`), then acks. ``resolve.lua``
   removes the dependency from the pending set (a set, not a counter: telling twice changes
   nothing) and answers "ready" once it is empty; ``unblock.lua`` then enqueues the waiting
   job (with its dependencies' results in its arguments) or finishes a parent record, and
   deletes the wait hash in the same step, so it happens once however often it is asked. A
   crash anywhere before the ack redelivers the entry; the redelivery finds the job ended,
   skips running it and tells the dependents again.

So a chord's callback is enqueued exactly once, when its last header ends, even when header
jobs are retried (a retry is not an end) or redelivered after a crash. Nothing polls.
Jobs that nobody waits for pay one ``EXISTS`` inside ``finish.lua``: no extra round trip.

A failed (or cancelled) dependency fails the waiting job with a ``DependencyFailed`` error
that names the root cause; that end is told on in turn, so a failure travels down a chain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import orjson

from ._message import UNFINISHED_RECORD_TTL, Outgoing, record_ttl
from ._redis import _calls as scripts
from ._redis._errors import translate_errors
from ._redis._keys import Keys, keys_of, queue_of
from ._redis._wire import CODES, FIELDS
from ._serialize import encode_call
from .exceptions import ConfigurationError, ErrorType

if TYPE_CHECKING:
    from ._app import App
    from ._connections import Connections
    from ._write import Writer

_FINAL = frozenset({b"succeeded", b"failed", b"cancelled"})

ERROR_MARK = "__aqueue_error__"
"""Key of the mapping that stands for a failed member in a list of results
(``group(..., return_exceptions=True)``, ``chord(..., return_exceptions=True)``)."""

_ENTRY_CODES = " ".join(wire.code for wire in FIELDS)
"""The entry's field names, for the release script: it copies each the wait hash holds."""

_NOUNS = {"chain": "step", "group": "member", "chord": "header"}


@dataclasses.dataclass(slots=True)
class Waiting:
    """A job, or a workflow's parent record, that waits for ``deps`` to end."""

    job_id: str
    task: str
    deps: list[str]
    kind: str
    """``job`` (enqueued when released), or the parent of a ``chain``/``group``/``chord``
    (finished when released, never run)."""
    result_ttl: int
    entry: dict[str, bytes | str | int] = dataclasses.field(default_factory=dict)
    """The stream entry a ``job`` is released as (see :meth:`Outgoing.entry`): every field
    of it, so every option set at enqueue holds once the job is released."""
    expires_ms: int = 0
    """Cancelled if not started this long after the server's now (0: never)."""
    inject: int = 0
    """How many leading dependencies' results go in front of the arguments (a chain step:
    the previous step's; a chord's callback: its headers')."""
    as_list: bool = False
    """Pass those results as one list (a chord's callback) rather than the first one's value."""
    lenient: bool = False
    """A failed dependency counts as ended: its error takes its place in the results."""
    members: list[str] = dataclasses.field(default_factory=list)

    def script_call(self, namespace: str, events_limit: int) -> scripts.Call:
        keys = keys_of(namespace, queue_of(self.job_id))
        job = self.job_id
        # The entry's fields under their own (one-letter) names; the wait's under words.
        fields = {
            CODES["job_id"]: job,
            CODES["task"]: self.task,
            CODES["result_ttl"]: self.result_ttl,
            **self.entry,
            "kind": self.kind,
            "inject": self.inject,
            "list": "1" if self.as_list else "",
            "lenient": "1" if self.lenient else "",
            "deps": orjson.dumps(self.deps),
        }
        return scripts.wait(
            record=keys.job(job),
            wait=keys.wait(job),
            pending=keys.pending(job),
            members=keys.members(job),
            events=keys.events,
            status="scheduled" if self.kind == "job" else "running",
            task=self.task,
            ttl=record_ttl(self.result_ttl),
            expires_in=self.expires_ms,
            events_limit=events_limit,
            dependencies=self.deps,
            member_ids=self.members,
            fields=list(fields.items()),
        )


class Plan:
    """What one ``enqueue`` of a workflow writes, in a fixed number of round trips.

    Jobs that can run at once are written first (pipelined per queue), then the waiting
    records (one pipeline), then the dependencies learn of them (one pipeline); dependencies
    that had ended by then are resolved here.
    """

    def __init__(self, app: App, writer: Writer) -> None:
        self.app = app
        self._writer = writer
        self._ready: dict[str, list[Outgoing]] = {}
        self._wait_for_room: set[str] = set()
        self._waiting: list[Waiting] = []

    def add(self, queue: str, outgoing: Outgoing, *, wait: bool = False) -> str:
        """Write ``outgoing`` to ``queue`` (with ``wait``: wait for room in a full queue);
        returns its job id."""
        self._ready.setdefault(queue, []).append(outgoing)
        if wait:
            self._wait_for_room.add(queue)
        return outgoing.job_id

    def wait(self, waiting: Waiting) -> str:
        """Register ``waiting``; returns its job id."""
        self._waiting.append(waiting)
        return waiting.job_id

    async def run(self) -> dict[str, str]:
        """Write everything; returns each written id mapped to the job that stands for it
        (another id when ``options(key=...)`` found a job holding the key)."""
        self._check_results_kept()
        app, connections = self.app, self._writer.connections
        # Jobs with a uniqueness key first: the job that stands for one is known only then.
        same = await self._write(keyed=True)
        for waiting in self._waiting:
            waiting.deps = [same.get(dep, dep) for dep in waiting.deps]
            waiting.members = [same.get(member, member) for member in waiting.members]
        fresh = {o.job_id for b in self._ready.values() for o in b if o.spec.unique_key is None}
        planned = fresh | {w.job_id for w in self._waiting}
        links = [(w.job_id, dep) for w in self._waiting for dep in dict.fromkeys(w.deps)]
        early = [(job_id, dep) for job_id, dep in links if dep in planned]
        late = [(job_id, dep) for job_id, dep in links if dep not in planned]
        with translate_errors(app.url):
            if self._waiting:
                # Before any member is written, so none can end unnoticed: the waiting
                # records, and the members of this plan registered as dependencies (fresh
                # jobs before they exist).
                waits = [
                    waiting.script_call(app.namespace, app.events_limit)
                    for waiting in self._waiting
                ]
                _raise_errors(await connections.direct.run([*waits, *self._depend(early, fresh)]))
            same |= await self._write(keyed=False)
            if not late:
                return same
            replies = await connections.direct.run(self._depend(late, fresh))
            _raise_errors(replies)
            for (job_id, dep), reply in zip(late, replies, strict=True):
                # It had ended (or has no record): nobody will tell, so tell now.
                if reply and await resolve(app, connections, job_id, dep, reply.decode()):
                    await job_ended(app, connections, job_id)
        return same

    def _check_results_kept(self) -> None:
        keep = {o.job_id: o.spec.result_ttl > 0 for batch in self._ready.values() for o in batch}
        keep |= {w.job_id: w.result_ttl > 0 for w in self._waiting}
        for waiting in self._waiting:
            for dep in waiting.deps:
                if not keep.get(dep, True):
                    raise ConfigurationError(
                        f"job {dep} feeds another job (a workflow member or a dependency) "
                        "but keeps no result (result_ttl=0); give it a result_ttl"
                    )

    async def _write(self, *, keyed: bool) -> dict[str, str]:
        same: dict[str, str] = {}
        for queue, ready in self._ready.items():
            batch = [o for o in ready if (o.spec.unique_key is not None) is keyed]
            if batch:
                jobs = await self._writer.write(queue, batch, wait=queue in self._wait_for_room)
                same.update((o.job_id, job.id) for o, job in zip(batch, jobs, strict=True))
        return same

    def _depend(self, links: list[tuple[str, str]], fresh: set[str]) -> list[scripts.Call]:
        calls = []
        for job_id, dep in links:
            keys = keys_of(self.app.namespace, queue_of(dep))
            calls.append(
                scripts.depend(
                    record=keys.job(dep),
                    dependents=keys.dependents(dep),
                    queued=keys.queued(dep),
                    waiting_job=job_id,
                    ttl=UNFINISHED_RECORD_TTL,
                    fresh=dep in fresh,
                )
            )
        return calls


def _raise_errors(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


async def members(app: App, job_id: str) -> list[str]:
    """The member job ids of a chain, group or chord job, in order (empty for other jobs).

    For a chord: the header jobs, then the callback.
    """
    keys = keys_of(app.namespace, queue_of(job_id))
    with translate_errors(app.url):
        raw = cast("list[bytes]", await app.redis.lrange(keys.members(job_id), 0, -1))
    return [member.decode() for member in raw]


async def job_ended(app: App, connections: Connections, job_id: str) -> None:
    """Tell every job waiting for ``job_id`` that it ended. Idempotent; call it again freely.

    Ends that this causes (a failure travelling down a chain, a finished parent) are told
    on in turn, in a loop rather than by recursion: a long chain cannot exhaust the stack.
    """
    ended = [job_id]
    while ended:
        current = ended.pop()
        keys = keys_of(app.namespace, queue_of(current))
        status, waiting = await connections.direct.commands(
            [(b"HGET", keys.job(current), b"status"), (b"SMEMBERS", keys.dependents(current))]
        )
        if status not in _FINAL:
            continue
        for raw in sorted(waiting):
            dependent = raw.decode()
            if await resolve(app, connections, dependent, current, status.decode()):
                ended.append(dependent)


async def resolve(
    app: App, connections: Connections, job_id: str, dep: str, dep_status: str
) -> bool:
    """``dep`` ended with ``dep_status``: count it for waiting job ``job_id``, and release
    the job when nothing else is pending. True when ``job_id`` has ended (now or before), so
    its own dependents must be told (:func:`job_ended`)."""
    keys = keys_of(app.namespace, queue_of(job_id))
    reply = await connections.direct.call(
        scripts.resolve(
            record=keys.job(job_id),
            wait=keys.wait(job_id),
            pending=keys.pending(job_id),
            dependency=dep,
            dependency_status=dep_status,
        )
    )
    verdict = reply[0]
    if verdict == b"wait":
        return False
    if verdict == b"gone":
        # Ended already? Then its dependents may not have been told yet (a crash).
        return bool(reply[1] in _FINAL)
    raw = reply[1]
    spec = {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}
    if verdict == b"fail":
        [row] = await _outcomes(app, connections, [dep])
        return await _fail(app, connections, keys, job_id, spec, _root(dep, row))
    return await _release(app, connections, keys, job_id, spec)


async def _release(
    app: App, connections: Connections, keys: Keys, job_id: str, spec: dict[str, bytes]
) -> bool:
    deps: list[str] = orjson.loads(spec["deps"])
    kind = spec["kind"].decode()
    if kind == "group":
        count = len(deps)
    elif kind == "job":
        count = int(spec["inject"])
    else:
        count = 1
    rows = await _outcomes(app, connections, deps[:count])
    for dep, row in zip(deps, rows, strict=False):
        if row[0] != b"succeeded" and spec["lenient"] != b"1":
            # Its record expired or was changed between the count and now.
            return await _fail(app, connections, keys, job_id, spec, _root(dep, row))
    serializer = app.serializer
    if kind in ("chain", "chord"):
        # The parent's outcome is its last step's (or its callback's), copied as it is.
        result = rows[0][1]
        if result is None:
            result = serializer.dumps(None)
        return await _finish(app, connections, keys, job_id, spec, "succeeded", "result", result)
    payload = spec.get(CODES["payload"], b"")  # a group's parent has none of its own
    try:
        values = [_value(app, dep, row) for dep, row in zip(deps, rows, strict=False)]
        if kind == "group":
            payload = serializer.dumps(values)
        elif count:
            args, kwargs = serializer.loads(payload)
            first = values if spec["list"] == b"1" else values[0]
            task = spec[CODES["task"]].decode()
            payload = encode_call(serializer, task, [first, *args], kwargs)
    except Exception as exc:
        # E.g. a result this app's serializer cannot read: the job cannot be given its input.
        kind_name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        error = {"type": kind_name, "message": str(exc), "traceback": ""}
        return await _finish(
            app, connections, keys, job_id, spec, "failed", "error", orjson.dumps(error)
        )
    if kind == "group":
        return await _finish(app, connections, keys, job_id, spec, "succeeded", "result", payload)
    released = await connections.direct.call(
        _unblock(
            keys,
            job_id,
            app.events_limit,
            action="enqueue",
            payload=payload,
            codes=_ENTRY_CODES,
        )
    )
    # Not released: cancelled while it waited, an end its own dependents must hear of.
    return not released


async def _fail(
    app: App,
    connections: Connections,
    keys: Keys,
    job_id: str,
    spec: dict[str, bytes],
    root: dict[str, Any],
) -> bool:
    kind = spec["kind"].decode()
    error: dict[str, Any]
    if kind == "job":
        error = {
            "type": ErrorType.DEPENDENCY_FAILED,
            "message": f"dependency failed: job {root['job']} ({root['task']}) {_ended(root)}",
        }
    else:
        error = {"type": root["type"], "message": await _member_failed(app, job_id, kind, root)}
    error |= {"traceback": root.get("traceback", ""), "cause": root}
    return await _finish(
        app, connections, keys, job_id, spec, "failed", "error", orjson.dumps(error)
    )


async def _member_failed(app: App, job_id: str, kind: str, root: dict[str, Any]) -> str:
    """``step 2 of 3 (tasks.b) failed with builtins.ValueError: boom``, for a parent's error."""
    ids = await members(app, job_id)
    what = f"{kind} member {root['job']}"
    if root["job"] in ids:
        index, total = ids.index(root["job"]), len(ids)
        if kind == "chord":
            total -= 1
        what = "callback" if index == total else f"{_NOUNS[kind]} {index + 1} of {total}"
    return f"{what} ({root['task']}) {_ended(root)}"


async def _finish(
    app: App,
    connections: Connections,
    keys: Keys,
    job_id: str,
    spec: dict[str, bytes],
    status: str,
    field: str,
    value: bytes,
) -> bool:
    """Finish a waiting job without running it. True: it ended (by this call or, when it was
    cancelled or finished meanwhile, before), so its dependents must be told."""
    await connections.direct.call(
        _unblock(
            keys,
            job_id,
            app.events_limit,
            action="finish",
            status=status,
            outcome_field=field,
            outcome=value,
            result_ttl=max(1, int(spec[CODES["result_ttl"]])),
        )
    )
    return True


def _unblock(keys: Keys, job_id: str, events_limit: int, **action: Any) -> scripts.Call:
    """The unblock script's call for waiting job ``job_id``, doing ``action``."""
    return scripts.unblock(
        record=keys.job(job_id),
        wait=keys.wait(job_id),
        pending=keys.pending(job_id),
        levels=keys.levels,
        events=keys.events,
        streams=keys.streams,
        events_limit=events_limit,
        **action,
    )


_Row = Sequence[bytes | None]


async def _outcomes(app: App, connections: Connections, ids: list[str]) -> list[_Row]:
    # Through the hot-path lanes: a 10,000-member group reads 10,000 records here, and
    # redis-py's Python packing of that pipeline held the worker's loop for most of a second.
    fields = (b"status", b"result", b"error", b"task")
    return await connections.direct.commands(
        [
            (b"HMGET", keys_of(app.namespace, queue_of(job_id)).job(job_id), *fields)
            for job_id in ids
        ]
    )


def _value(app: App, job_id: str, row: _Row) -> Any:
    status, result = row[0], row[1]
    if status != b"succeeded":
        return {ERROR_MARK: _root(job_id, row)}
    return None if result is None else app.serializer.loads(result)


def _root(job_id: str, row: _Row) -> dict[str, Any]:
    """What ended ``job_id`` badly: its own error, or the root cause it carries."""
    status, _, raw_error, task = row
    root: dict[str, Any] = {"job": job_id, "task": (task or b"?").decode()}
    if status is None:
        return root | {
            "status": "unknown",
            "type": ErrorType.JOB_NOT_FOUND,
            "message": "no record (never enqueued, result_ttl=0, or expired)",
        }
    error: dict[str, Any] = orjson.loads(raw_error) if raw_error else {}
    if "cause" in error:
        cause: dict[str, Any] = error["cause"]
        return cause
    if status == b"cancelled":
        return root | {"status": "cancelled", "type": ErrorType.CANCELLED, "message": ""}
    return root | {
        "status": status.decode(),
        "type": error.get("type", ErrorType.UNKNOWN_ERROR),
        "message": error.get("message", ""),
        "traceback": error.get("traceback", ""),
    }


def _ended(root: dict[str, Any]) -> str:
    if root["status"] == "cancelled":
        return "was cancelled"
    if root["status"] == "unknown":
        return f"has {root['message']}"
    return f"failed with {root['type']}: {root['message']}"
