"""How arguments and results become bytes: JSON through orjson, never pickle by default."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .exceptions import SerializationError

if TYPE_CHECKING:
    from ._typed import ArgumentTypes


class Serializer(Protocol):
    """Turns values into bytes and back. Implement it to plug in another format."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise any exception when it cannot be encoded."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`dumps`."""
        ...


class JsonSerializer:
    """JSON via orjson: fast, safe to decode from an untrusted server, readable in Redis."""

    def dumps(self, value: Any) -> bytes:
        """Encode ``value`` as JSON (datetimes, dataclasses and UUIDs included).

        Raises:
            ValueError: ``value`` holds NaN or an infinity, which JSON cannot carry.
        """
        if value is None:
            return b"null"  # the result of most tasks
        data = orjson.dumps(value)
        # orjson writes NaN and infinities as null: the value would not come back. Only an
        # output with a null can hold one, so other values are not looked through.
        if b"null" in data and _non_finite(value):
            raise ValueError("NaN and infinities have no JSON form (they would read as None)")
        return data

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes."""
        return orjson.loads(data)


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is, or holds in its lists, tuples and dicts, NaN or an infinity."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list | tuple):
        return any(_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    return False


def encode_call(
    serializer: Serializer,
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    types: ArgumentTypes | None = None,
    *,
    first: int = 0,
) -> bytes:
    """Encode a task's arguments as ``[args, kwargs]``, as JSON values where ``types`` (the
    task's annotations) asks for a conversion; ``args`` bind from the ``first`` parameter.

    Raises:
        SerializationError: naming the first argument that cannot be encoded, or that
            would not come back as its annotated type.
    """
    if types is not None:
        try:
            args, kwargs = types.to_wire(args, kwargs, first=first)
        except TypeError as exc:
            raise SerializationError(
                f"cannot enqueue task {task_name!r}: {exc}. Pass a value of the parameter's "
                "annotated type (or its JSON form)"
            ) from None
    try:
        return serializer.dumps([args, kwargs])
    except Exception as exc:
        culprit = _first_unencodable(serializer, args, kwargs)
        raise SerializationError(
            f"cannot encode {culprit} of task {task_name!r}: {exc}. Pass JSON values (str, "
            "int, float, bool, None, list, dict), values of a type the parameter is annotated "
            "with (datetime, UUID, Decimal, enum, dataclass, bytes, ...), or an id to load the "
            "object inside the task."
        ) from exc


def _first_unencodable(
    serializer: Serializer, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str:
    # Only reached on the error path, so encoding each argument again costs nothing normally.
    named = [(f"positional argument {i}", value) for i, value in enumerate(args)]
    named += [(f"argument {name!r}", value) for name, value in kwargs.items()]
    for label, value in named:
        try:
            serializer.dumps(value)
        except Exception:
            return f"{label} ({type(value).__name__})"
    return "the arguments"
