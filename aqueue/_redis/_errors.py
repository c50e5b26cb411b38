"""The boundary where redis-py's exceptions become aqueue's."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.exceptions
from redis._parsers.base import BaseParser
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    BusyLoadingError,
    ClusterDownError,
    DataError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._settings import DEFAULT_URL
from ..exceptions import AqueueError, ConfigurationError, ConnectionFailed, ServerError

# redis-py 7.1 and later name a cluster where no node answered; older ones say so with the
# RedisClusterException they also raise for misuse, which must not be retried.
_CLUSTER_UNREACHABLE: tuple[type[Exception], ...] = tuple(
    error for error in [getattr(redis.exceptions, "RedisClusterUnreachableError", None)] if error
)
REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    *_CLUSTER_UNREACHABLE,
)
"""What a lost or unreachable server (or cluster: no node answered) raises: worth a retry,
not a crash."""

_PASSING_REFUSALS = (
    ReadOnlyError,  # READONLY: a replica, e.g. the old master during a failover
    OutOfMemoryError,  # OOM: maxmemory with noeviction, until results expire or memory grows
    BusyLoadingError,  # LOADING: a restarted server reading its data back
    MasterDownError,  # MASTERDOWN: a replica cut off from its master
    TryAgainError,  # TRYAGAIN, CLUSTERDOWN: a cluster moving slots or electing
    ClusterDownError,
)
"""Error replies of a server that cannot write now but will."""
_MAXCLIENTS = "max number of clients reached"
"""What a server at its ``maxclients`` answers a new connection (a ConnectionError to
redis-py, as an unreachable server is)."""
_NOREPLICAS = "NOREPLICAS "
_PASSING_CODES = (_NOREPLICAS, "BUSY ")
"""The same, for refusals redis-py gives no class of their own: too few replicas in sync
(min-replicas-to-write), and another script running past lua-time-limit."""


def error_reply(text: bytes) -> ResponseError:
    """The error redis-py raises for an error reply of ``text``, for one a script caught
    (``redis.pcall``) and returned: its class tells a refusal for now (OOM, READONLY...)."""
    parse: Callable[[str], ResponseError] = BaseParser.parse_error  # redis-py's, untyped
    return parse(text.decode(errors="replace"))


def passing_refusal(error: object) -> bool:
    """Whether the server refused a write for now only: worth writing again, after a pause,
    while the worker keeps the entry (and renews its lease)."""
    return isinstance(error, _PASSING_REFUSALS) or (
        type(error) is ResponseError and str(error).startswith(_PASSING_CODES)
    )


def not_master(error: object) -> bool:
    """Whether the server refused a write as one that may no longer be the master: a replica
    (``READONLY``: the old master, demoted), or a master cut off from its replicas
    (``NOREPLICAS`` under ``min-replicas-to-write``: the old master while Sentinel promotes
    its replica). Nothing was written; a connection that got it is worth opening again, so
    that a Sentinel URL asks the sentinels where the master is now."""
    return isinstance(error, ReadOnlyError) or (
        type(error) is ResponseError and str(error).startswith(_NOREPLICAS)
    )


def redact(url: str) -> str:
    """``url`` without its passwords (the server's, and any in the query, such as a Sentinel
    URL's ``sentinel_password``), for messages and logs."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret = [name for name, _ in query if name.endswith("password")]
    if parts.password is None and not secret:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    if secret:
        shown = [(name, "***" if name in secret else value) for name, value in query]
        parts = parts._replace(query=urlencode(shown, safe="*"))
    return urlunsplit(parts._replace(netloc=netloc))


def translate_errors(url: str) -> _Translated:
    """Raise :class:`ConnectionFailed` or :class:`ServerError` for Redis errors in the block
    (:class:`ConfigurationError` for a value redis-py refused to send)."""
    return _Translated(url)


class _Translated:
    # A class, not @contextmanager: entered on every enqueue, where a generator's setup cost
    # more than the rest of the call's bookkeeping.
    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, AqueueError):
            return  # ours already (ResultTimeout is an OSError too, through TimeoutError)
        if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError):
            raise ConnectionFailed(
                f"Redis at {redact(self.url)} refused the credentials ({exc}). Check the user "
                "name and password in the URL (redis://user:password@host:port/db)."
            ) from exc
        if isinstance(exc, RedisConnectionError) and _MAXCLIENTS in str(exc):
            # The server answered, so "is it running?" would mislead: it is full.
            raise ConnectionFailed(
                f"Redis at {redact(self.url)} takes no more connections: it holds its "
                f"maxclients ({exc}). Lower App(max_connections=...) (AQUEUE_MAX_CONNECTIONS) "
                "or the worker processes (-p), or raise the server's maxclients: each worker "
                "process opens up to max_connections + 3."
            ) from exc
        if isinstance(exc, REDIS_ERRORS):
            # Only the default URL means none was given: otherwise the user set one already.
            hint = (
                " No URL was given, so the default was used: give yours with App(url) or the "
                "AQUEUE_URL environment variable."
                if self.url == DEFAULT_URL
                else ""
            )
            raise ConnectionFailed(
                f"cannot reach Redis at {redact(self.url)} ({exc}). Is the server running?{hint}"
            ) from exc
        if isinstance(exc, DataError):
            # Raised by redis-py itself, before anything is sent: the server refused nothing.
            raise ConfigurationError(
                f"a value could not be sent to Redis at {redact(self.url)} ({exc}); nothing "
                "was sent. Pass strings, bytes or numbers where aqueue asks for names, ids and "
                "options."
            ) from exc
        if isinstance(exc, RedisError) and "DB index is out of range" in str(exc):
            # Refused as the connection selects the URL's database: the URL is at fault.
            raise ConfigurationError(
                f"Redis at {redact(self.url)} has no database of that number ({exc}). Use a "
                "database the server has (0 to its `databases` setting minus 1) in the URL."
            ) from exc
        if not_master(exc):
            # Refused before anything was written: an outage to retry, as a lost connection.
            raise ConnectionFailed(
                f"Redis at {redact(self.url)} takes no writes now ({exc}): it is a replica, "
                "or a master cut off from its replicas, as during a failover. Nothing was "
                "written: try again. A redis+sentinel:// URL finds the new master by itself; "
                "a fixed address must be the master's."
            ) from exc
        if isinstance(exc, OutOfMemoryError):
            raise ServerError(
                f"Redis at {redact(self.url)} is at its maxmemory and takes no writes "
                f"({str(exc).rstrip('.')}). Give it more memory, keep results "
                "for less time (result_ttl), or bound the queues (max_queue_length) "
                "so that producers get QueueFull first."
            ) from exc
        if isinstance(exc, RedisError):
            raise ServerError(
                f"Redis at {redact(self.url)} refused a command: {exc}. Check the ACL user's "
                "permissions, the server's maxmemory, and that no other program writes under "
                "this app's namespace."
            ) from exc
