"""The boundary where redis-py's exceptions become aqueue's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import AqueueError, ConnectionFailed, ServerError

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a lost or unreachable server raises: worth a retry, not a crash."""


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Raise :class:`ConnectionFailed` or :class:`ServerError` for Redis errors in the block."""
    try:
        yield
    except AqueueError:
        raise  # ours already (ResultTimeout is an OSError too, through TimeoutError)
    except REDIS_ERRORS as exc:
        raise ConnectionFailed(
            f"cannot reach Redis at {redact(url)} ({exc}). Is the server running? Set the URL "
            "with App(url) or the AQUEUE_URL environment variable."
        ) from exc
    except RedisError as exc:
        raise ServerError(
            f"Redis at {redact(url)} refused a command: {exc}. Check the ACL user's "
            "permissions, the server's maxmemory, and that no other program writes under "
            "this app's namespace."
        ) from exc
