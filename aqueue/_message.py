"""A job as it travels through a queue's stream: what producers write and workers read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from ._redis._calls import EnqueuedJob
from ._redis._keys import DEFAULT_PRIORITY, PRIORITIES, Keys
from ._redis._wire import CODES, VERSION_FIELDS
from .exceptions import PayloadTooLarge

LEVEL_MARKS: Final = tuple("-" if p == DEFAULT_PRIORITY else str(p) for p in PRIORITIES)
"""How the enqueue script names each priority level (by index): its digit, ``"-"`` for the
default level (whose jobs carry no level field)."""

UNFINISHED_RECORD_TTL = 7 * 24 * 3600
"""Seconds the record of an unfinished job is kept: far longer than any sane backlog, yet
bounded, so an abandoned queue cannot hold records forever."""


DEAD_LETTER_FIELDS: Final = ("reason", "entry", "dead_at", "member")
"""What aqueue writes into a dead letter, *before* the fields of the entry it copies: a
reader takes the first field of each name, so an entry's own field of the same name (written
by another program) neither hides aqueue's nor is lost. (Fields in front, rather than under
new names, keep dead letters of every release readable during a rolling deploy.)"""


def record_ttl(result_ttl: int) -> int:
    """Seconds to keep the record of an unfinished job that keeps its result ``result_ttl``."""
    return max(UNFINISHED_RECORD_TTL, result_ttl)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What every job of one task configuration shares: its task and per-job options.

    Made once per configuration (each :class:`aqueue.Task` holds one), so the enqueue
    script's values that follow from the options are worked out once, not on every enqueue.
    """

    task: str
    result_ttl: int
    timeout: float | None = None
    delay_ms: int = 0
    """Due this long after the server's now (0: at once)."""
    due_at_ms: int = 0
    """Due at this epoch time in ms (0: at once)."""
    unique_key: str | None = None
    """Add the job only if no job holds this key (``options(key=...)``)."""
    key_ttl: int = 0
    """Seconds the key stays held after the job ended."""
    expires_ms: int = 0
    """Cancelled if not started this long after the server's now (0: never)."""
    expires_at_ms: int = 0
    """Cancelled if not started by this epoch time in ms (0: never)."""
    priority: int = DEFAULT_PRIORITY
    options: bytes = field(init=False)
    """The entry's options field for jobs without metadata ("" when there are none)."""
    script_spec: bytes = field(init=False)
    """The enqueue script's spec of this configuration's jobs (see enqueue.lua)."""

    def __post_init__(self) -> None:
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "options", self.options_with(None))
        key_ttl = "-" if self.unique_key is None else self.key_ttl
        ttl = record_ttl(self.result_ttl) if self.result_ttl > 0 else 0
        spec = (
            f"{self.result_ttl} {ttl} {self.delay_ms} {self.due_at_ms} {key_ttl} "
            f"{self.expires_ms} {self.expires_at_ms} {LEVEL_MARKS[self.priority]} {self.task}"
        )
        object.__setattr__(self, "script_spec", spec.encode())

    @property
    def level(self) -> str:
        """The priority level as the entry's ``l`` field ("" for the default level)."""
        return "" if self.priority == DEFAULT_PRIORITY else str(self.priority)

    def options_with(self, metadata: dict[str, str] | None) -> bytes:
        """The entry's options field for a job with this enqueue middleware ``metadata``."""
        options: dict[str, Any] = {} if self.timeout is None else {"timeout": self.timeout}
        if metadata:
            options["meta"] = metadata
        return orjson.dumps(options) if options else b""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A job ready to be written: its id, encoded arguments, and what its task configuration
    says about it."""

    job_id: str
    payload: bytes
    spec: JobSpec
    metadata: dict[str, str] | None = None
    """Set by enqueue middleware; travels in the options field, read by the worker."""

    @property
    def options(self) -> bytes:
        """The entry's per-job options field ("" when there are none)."""
        return self.spec.options_with(self.metadata) if self.metadata else self.spec.options

    def entry(self) -> dict[str, bytes | str | int]:
        """The fields of this job's entry, as the enqueue script writes them, but for what
        only the server may set: an expiry relative to its now (``spec.expires_ms``) and a
        uniqueness key (which a job that waits for others cannot have)."""
        spec = self.spec
        fields: dict[str, bytes | str | int] = {
            **VERSION_FIELDS,
            CODES["job_id"]: self.job_id,
            CODES["task"]: spec.task,
            CODES["payload"]: self.payload,
            CODES["result_ttl"]: spec.result_ttl,
        }
        optional: dict[str, bytes | str | int] = {
            CODES["options"]: self.options,
            CODES["level"]: spec.level,
            CODES["expires_at_ms"]: spec.expires_at_ms,
        }
        fields.update((code, value) for code, value in optional.items() if value)
        return fields

    def script_job(self, keys: Keys) -> EnqueuedJob:
        """This job as the enqueue script takes it (see :func:`aqueue._redis._calls.enqueue`)."""
        spec = self.spec
        job_id = self.job_id
        return EnqueuedJob(
            keys.job(job_id),
            keys.queued(job_id),
            keys.unique(spec.unique_key or ""),
            job_id,
            self.payload,
            self.options,
            spec.script_spec,
        )


def check_size(job_id: str, task: str, payload: bytes, limit: int) -> None:
    """Refuse a payload over ``limit`` bytes before anything is written."""
    if len(payload) > limit:
        raise PayloadTooLarge(
            f"job {job_id} of task {task!r} encodes to {len(payload)} bytes, over the limit of "
            f"{limit}: store large data elsewhere (a blob store, a database) and pass its key, "
            "or raise App(max_payload_size=...)"
        )
