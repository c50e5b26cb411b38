"""What a worker read (a delivery) and what it decided about it (an outcome)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .._checks import MAX_SECONDS
from .._limits import Limits
from .._redis._keys import Keys
from .._redis._msgpack import pack_strings
from .._redis._wire import ENTRY


@dataclass(slots=True)
class Delivery:
    """One stream entry handed to this worker."""

    keys: Keys
    entry_id: bytes
    fields: dict[bytes, bytes]
    stream: bytes
    """The stream the entry was read from: its queue's stream of the job's priority level."""
    limits: Limits | None = None
    """The task's limits, acquired when the delivery started (None for tasks without)."""
    # Read once from the fields: the hot path asks for these several times per job.
    job_id: str | None = field(init=False)
    task_name: str | None = field(init=False)
    result_ttl: int = field(init=False)
    """Seconds to keep the outcome; 0 when the job keeps no record at all.

    Clamped to what producers may ask for: the finish script acks before it sets the TTL, and
    an EXPIRE out of Redis's range would fail it after the ack (an entry not written by
    aqueue can hold anything)."""

    def __post_init__(self) -> None:
        fields = self.fields
        raw = fields.get(ENTRY.job_id)
        self.job_id = None if raw is None else raw.decode(errors="replace")
        raw = fields.get(ENTRY.task)
        self.task_name = None if raw is None else raw.decode(errors="replace")
        try:
            ttl = int(fields.get(ENTRY.result_ttl, b"0"))
        except ValueError:
            ttl = 0
        self.result_ttl = min(max(ttl, 0), MAX_SECONDS)

    @property
    def prior_attempts(self) -> int:
        """Attempts made before this entry was written (a retry carries the count)."""
        try:
            return max(0, int(self.fields.get(ENTRY.prior_attempts, b"0")))
        except ValueError:
            return 0

    @property
    def expires_ms(self) -> int:
        """Epoch ms after which the job must not start (0: never)."""
        raw = self.fields.get(ENTRY.expires_at_ms)
        return int(raw) if raw is not None and raw.isdigit() else 0

    @property
    def unique_key(self) -> tuple[bytes, str]:
        """The uniqueness key the job holds and its ttl after the end ("" when none).

        Only a key inside this queue's own namespace is honoured: an entry written by hand
        cannot make the worker delete an arbitrary key.
        """
        key, ttl = self.fields.get(ENTRY.unique_key), self.fields.get(ENTRY.key_ttl, b"0")
        if key is None or not key.startswith(self.keys.unique("")) or not ttl.isdigit():
            return self.keys.unique(""), ""
        return key, ttl.decode()

    def kept_arguments(self, limit: int) -> tuple[bytes, str]:
        """What the job's record keeps of its arguments once it ran (for ``aqueue job``;
        the entry that holds them is deleted): the encoded arguments when they fit in
        ``limit`` bytes, else their size; ``(b"", "")`` for a job that keeps no record."""
        payload = self.fields.get(ENTRY.payload)
        if payload is None or limit == 0 or self.result_ttl == 0:
            return b"", ""
        if len(payload) > limit:
            return b"", str(len(payload))
        return payload, ""

    def retry_member(self, attempt: int) -> bytes:
        """The job's member of the delayed set while it waits for its retry: its entry's
        fields, as the stream holds them, with the attempts made so far (``attempt``) in place
        of those the entry carried (it counts them for jobs that keep no record)."""
        kept = (
            item
            for name, value in self.fields.items()
            if name != ENTRY.prior_attempts
            for item in (name, value)
        )
        return pack_strings([*kept, ENTRY.prior_attempts, str(attempt).encode()])

    @property
    def may_wait_queued(self) -> bool:
        """Whether the job's status may wait in its "queued" hash rather than in a record:
        the enqueue script puts it there for a job that keeps a record and holds no key (and
        runs at once, which only the server knows)."""
        return self.result_ttl > 0 and ENTRY.unique_key not in self.fields

    @property
    def record(self) -> bytes:
        """The job's record key (a key that never exists when the entry has no job id)."""
        return self.keys.job(self.job_id or ":")

    @property
    def queued(self) -> bytes:
        """The "queued" hash that holds the job's status until its record is made."""
        return self.keys.queued(self.job_id or ":")


class Action(enum.Enum):
    FINISH = "finish"
    """Record the outcome and ack the entry."""
    REQUEUE = "requeue"
    """Hand the entry back to the queue unrun (shutdown)."""


@dataclass(slots=True)
class Outcome:
    """The result of handling one delivery, waiting to be flushed to Redis."""

    delivery: Delivery
    action: Action
    status: str = ""
    """``succeeded``, ``failed``, ``cancelled``, ``scheduled`` (a retry), or "" to ack only."""
    field: str = "result"
    value: bytes = b""
    dead_reason: str = ""
    """Why the entry goes to the dead-letter stream; "" when it does not."""
    retry_delay_ms: int = 0
    """With status ``scheduled``: how long the retry waits in the delayed set."""
    attempt: int = 0
    """With status ``scheduled``: the attempt that failed."""
    told: bool = False
    """The jobs waiting for this one were told it ended: ack even though they wait."""
    error: Exception | None = None
    """The exception of a failed run (for the middleware's signals)."""
