"""Key names. Every key starts with the namespace; all keys of one queue share its hash tag.

A job id carries its queue (``"<queue>:<hex>"``) so that a job's record lives in the same
Cluster slot as the queue's stream: the ack script writes both atomically, and any process can
find a job's record from the id alone, without a lookup round trip.

Channels: what workers would otherwise poll for is announced on a sharded pub/sub channel
(SPUBLISH) named after the key that changed, so it needs no name of its own and shares the
key's hash slot: on a Cluster it reaches the nodes of that slot only. A new earliest due time
in ``delayed`` (in ms; "" when none is left), told for a job due before every other and after
each promotion, a new level in ``levels`` (the level), a running job's cancel in
``cancelled`` (its id), a pause or resume in ``paused``, a leader that resigned in ``leader``
(its name), and entries whose lease lapsed while the leader has no room to claim them in
``stream`` (the level's stream). :data:`CHANNELS` lists them.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from functools import cached_property

from ..exceptions import ConfigurationError, JobNotFound

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")

GROUP = "aqueue"
"""The consumer group every worker of a queue joins."""

DEFAULT_PRIORITY = 5
"""The level of jobs that set none. Its entries live in the queue's own stream, so users who
never set a priority read and write exactly the keys they would without priorities."""
PRIORITIES = range(10)
"""Job priorities, lowest first: a worker with a backlog on several levels runs higher first."""

DEAD_LETTER_LIMIT = 10_000
"""Approximate length the dead-letter stream is trimmed to. It is not a work stream: trimming
it keeps a flood of bad input from filling the server's memory."""


EVENTS_LIMIT = 10_000
"""Approximate number of events each queue's event stream is trimmed to (see App.events)."""

FOLLOWED_TTL = 24 * 3600
"""Seconds the set of followed jobs (:attr:`Keys.followed`) outlives its last follower's
arrival: a count a follower left behind (gone without leaving) goes with it."""


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid namespace or queue name, else raise ConfigurationError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"invalid {kind} {name!r}: use 1 to 100 letters, digits, '_', '.' or '-'"
        )
    return name


def new_job_id(queue: str) -> str:
    """A fresh job id for ``queue``."""
    return f"{queue}:{os.urandom(16).hex()}"


def queue_of(job_id: str) -> str:
    """The queue a job id belongs to.

    Raises:
        JobNotFound: ``job_id`` was not made by aqueue, so no job has it.
    """
    if not isinstance(job_id, str):
        raise JobNotFound(
            f"a job id is a string ('<queue>:<hex>', as job.id gives), not {job_id!r}"
        )
    queue, sep, rest = job_id.partition(":")
    if not sep or not rest or not _NAME.fullmatch(queue):
        raise JobNotFound(
            f"{job_id!r} is not an aqueue job id (expected '<queue>:<hex>', as job.id gives)"
        )
    return queue


@dataclass(frozen=True)
class Keys:
    """The keys of one queue in one namespace."""

    namespace: str
    queue: str

    @cached_property
    def prefix(self) -> str:
        return f"{self.namespace}:{{{self.queue}}}"

    @cached_property
    def stream(self) -> bytes:
        """The work stream: entries not finished yet (queued or running)."""
        return f"{self.prefix}:stream".encode()

    def stream_at(self, priority: int) -> bytes:
        """The work stream of one priority level (the queue's own stream for the default)."""
        if priority == DEFAULT_PRIORITY:
            return self.stream
        return self.stream + f":{priority}".encode()

    @cached_property
    def streams(self) -> tuple[bytes, ...]:
        """The work streams of every priority level, lowest first (index = level).

        Scripts that may meet any level take all of them in KEYS (see ``level_stream`` in
        ``lua/_prelude.lua``): a key named inside Lua is one Redis Cluster cannot check."""
        return tuple(self.stream_at(level) for level in PRIORITIES)

    @cached_property
    def levels(self) -> bytes:
        """Set of the priority levels besides the default that were ever used on the queue.

        Workers read it to learn which streams to read; enqueueing at a level adds it.
        """
        return f"{self.prefix}:levels".encode()

    @cached_property
    def dead(self) -> bytes:
        """The dead-letter stream: entries that could not be run, with the reason."""
        return f"{self.prefix}:dead".encode()

    @cached_property
    def delayed(self) -> bytes:
        """Sorted set of jobs waiting for their time (retries, delays), scored by due ms."""
        return f"{self.prefix}:delayed".encode()

    @cached_property
    def cancelled(self) -> bytes:
        """Sorted set of running jobs cancelled lately, scored by cancel time (ms): the
        workers of the queue read it to stop those runs."""
        return f"{self.prefix}:cancelled".encode()

    @cached_property
    def followed(self) -> bytes:
        """Sorted set of the queue's jobs that someone follows with ``job.events()``, scored by
        how many follow each: only those are told when they start running (a result waiter
        wakes only at the end)."""
        return f"{self.prefix}:followed".encode()

    @cached_property
    def leader(self) -> bytes:
        """The name of the worker that promotes and reclaims the queue's jobs for the fleet,
        expiring unless that worker renews it (see ``lua/poll.lua``)."""
        return f"{self.prefix}:leader".encode()

    @cached_property
    def paused(self) -> bytes:
        """Set while the queue is paused: workers read none of its streams (see Queue.pause)."""
        return f"{self.prefix}:paused".encode()

    @cached_property
    def events(self) -> bytes:
        """Bounded stream of what happened to the queue's jobs (see ``App.events``)."""
        return f"{self.prefix}:events".encode()

    def unique(self, key: str) -> bytes:
        """The key a job with ``options(key=...)`` holds while it waits or runs."""
        return f"{self.prefix}:unique:{key}".encode()

    def job(self, job_id: str) -> bytes:
        """The hash holding a job's status, timestamps, progress and outcome."""
        return f"{self.prefix}:job:{job_id.partition(':')[2]}".encode()

    def queued(self, job_id: str) -> bytes:
        """The small hash holding the status of a queued job that has no record yet.

        Field: the id's hex part; value: the job's stream entry id, then ``" <level>"`` when
        it waits in a priority level's stream. The queue's jobs spread over 4,096 such hashes
        by the id's first three hex digits, so each stays small enough for Redis's compact
        (listpack) encoding up to about half a million queued jobs: about 55 bytes per job,
        where a record key with a TTL costs about 230.
        """
        return f"{self.prefix}:queued:{job_id.partition(':')[2][:3]}".encode()

    def wait(self, job_id: str) -> bytes:
        """Hash of a job that waits for others: how to enqueue or finish it once they ended."""
        return f"{self.prefix}:wait:{job_id.partition(':')[2]}".encode()

    def pending(self, job_id: str) -> bytes:
        """Set of the dependencies a waiting job still waits for."""
        return f"{self.prefix}:pending:{job_id.partition(':')[2]}".encode()

    def dependents(self, job_id: str) -> bytes:
        """Set of the jobs that wait for this job (told when it ends)."""
        return f"{self.prefix}:dependents:{job_id.partition(':')[2]}".encode()

    def members(self, job_id: str) -> bytes:
        """List of a workflow parent's member job ids (chain steps, group members, chord)."""
        return f"{self.prefix}:members:{job_id.partition(':')[2]}".encode()


CHANNELS = ("delayed", "levels", "cancelled", "paused", "leader", "stream")
"""The keys of a queue whose changes are announced on the channel of the key's name."""


@functools.lru_cache(maxsize=1024)
def keys_of(namespace: str, queue: str) -> Keys:
    """The keys of ``queue``, made once per queue: their names are on every hot path."""
    return Keys(namespace, queue)
