"""A job's stream entry, field by field: the one definition of its wire format.

Python reads it here (:data:`ENTRY`, :data:`CODES`); the Lua scripts read the same table, which
:mod:`._scripts` puts in front of every script as ``FIELD`` (``FIELD.task`` is ``'t'``), so no
file of either language spells a field's code. docs/protocol.md documents it for producers in
other languages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple


@dataclass(frozen=True, slots=True)
class WireField:
    """One field of a job's stream entry (see :data:`FIELDS`)."""

    code: str
    """The field's name in the entry: one letter, since every queued job carries it."""
    name: str
    """What it holds, named as in the Python code."""
    type: type
    """How its value reads: ``str``, ``int`` (decimal digits) or ``bytes`` (as written)."""
    default: str | None
    """How an entry without it reads (None: every job's entry has it)."""
    replayed: bool = True
    """Whether a replay of a dead letter carries it back into the queue."""


PROTOCOL_VERSION: Final = 1
"""The version of the wire format (docs/protocol.md) this release writes (see
:data:`VERSION_FIELDS`). A release that changes the format raises it, and reads the versions
before it, so that old and new workers can share a queue during a rolling deploy."""

ABSENT_VERSION: Final = b"1"
"""The version of an entry without a ``v`` field: those of releases before the field."""

READ_VERSIONS: Final = frozenset(str(v).encode() for v in range(1, PROTOCOL_VERSION + 1))
"""The ``v`` values this release reads: its own and every one before it."""

FIELDS: Final = (
    # An entry without it was written before the field existed: version 1.
    WireField("v", "version", int, ABSENT_VERSION.decode()),
    WireField("j", "job_id", str, None),
    WireField("t", "task", str, None),
    WireField("p", "payload", bytes, None),
    WireField("r", "result_ttl", int, None),
    # JSON: the timeout and the enqueue middleware's metadata.
    WireField("o", "options", bytes, ""),
    WireField("u", "unique_key", str, ""),
    WireField("k", "key_ttl", int, "0"),
    WireField("l", "level", str, ""),
    WireField("x", "expires_at_ms", int, "0"),
    # A replayed job starts over: a poison job gets a fresh count.
    WireField("a", "prior_attempts", int, "0", replayed=False),
)
"""The fields of a job's stream entry.

Every path that moves a job (enqueue, a waiting job's release, a delay's or a retry's
promotion, a reclaim, a hand-back at shutdown, a replay) carries every field, so an option
set at enqueue holds however the job travels."""

CODES: Final = {wire.name: wire.code for wire in FIELDS}
"""The entry's field name of each :data:`FIELDS` entry, by its Python name."""

VERSION_FIELDS: Final[dict[str, str]] = (
    {}
    if str(PROTOCOL_VERSION).encode() == ABSENT_VERSION
    else {CODES["version"]: str(PROTOCOL_VERSION)}
)
"""The ``v`` field an entry of this release opens with: none while the protocol is at the
version an entry without one reads as. The field would cost each queued job 13 bytes of Redis
memory (measured: 88 bytes per job with no result kept, against 75), for nothing it tells."""


class EntryFields(NamedTuple):
    """The field names of an entry as a worker reads them (bytes), by :data:`FIELDS` name."""

    version: bytes
    job_id: bytes
    task: bytes
    payload: bytes
    result_ttl: bytes
    options: bytes
    unique_key: bytes
    key_ttl: bytes
    level: bytes
    expires_at_ms: bytes
    prior_attempts: bytes


ENTRY: Final = EntryFields(**{wire.name: wire.code.encode() for wire in FIELDS})
"""``ENTRY.job_id`` is ``b"j"``: code that reads an entry names fields, not letters (built from
:data:`FIELDS`, so a field added there without a name here fails at import)."""


def reads(fields: Mapping[bytes, bytes]) -> bool:
    """Whether this release reads an entry of these ``fields``: one of a newer protocol
    version (or of a ``v`` no release writes) is left for a worker that reads it, never
    misread (see docs/protocol.md)."""
    return fields.get(ENTRY.version, ABSENT_VERSION) in READ_VERSIONS
