"""Arguments and results as their annotated types, over a JSON wire.

A task's annotations are read once, when it is decorated (or at first use, when they name a
class defined later in its module). A value whose annotation JSON
carries as is (int, str, float, bool, None, Any, lists and str-keyed dicts of those, no
annotation) is passed through untouched, so untyped tasks pay nothing. Other annotations get
a :class:`Conversion`: at enqueue the value is turned into JSON values and checked to come
back as its type (or refused, naming the argument, before anything is written); on the
worker the JSON values are turned back into the annotated type. ``await job.result()`` does
the same with the return annotation.

msgspec does the conversion (``to_builtins``/``convert``): one C pass each way, and it
knows datetime/date/time, UUID, Decimal, enums, dataclasses, TypedDict, NamedTuple, tuples,
sets, bytes (as base64) and optional and nested forms of them. An annotation that names a
pydantic model, or a dataclass, TypedDict or NamedTuple with a model in its fields, goes
through pydantic's own ``TypeAdapter`` instead, which knows its models' validators and
serializers.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ._version import pip_install

_JSON_TYPES: frozenset[object] = frozenset(
    {int, str, float, bool, type(None), None, Any, object, list, dict, inspect.Parameter.empty}
)


class Conversion(Protocol):
    """How the values of one annotation go to JSON values and back."""

    def to_wire(self, value: Any) -> Any:
        """JSON values for ``value``; raise unless they convert back into the annotation."""
        ...

    def from_wire(self, value: Any) -> Any:
        """The annotated type's value for JSON values written by :meth:`to_wire`."""
        ...


class _Msgspec:
    __slots__ = ("_annotation", "_convert", "_to_builtins")

    def __init__(self, annotation: Any) -> None:
        import msgspec

        self._annotation = annotation
        self._convert = msgspec.convert
        self._to_builtins = msgspec.to_builtins

    def to_wire(self, value: Any) -> Any:
        wire = self._to_builtins(value, str_keys=True)
        self.from_wire(wire)  # refused here, not on a worker, when it would not come back
        return wire

    def from_wire(self, value: Any) -> Any:
        return self._convert(value, self._annotation, str_keys=True)


@dataclasses.dataclass(frozen=True, slots=True)
class _Pydantic:
    adapter: Any
    """A ``pydantic.TypeAdapter`` of the annotation."""

    def to_wire(self, value: Any) -> Any:
        # Validated first: dumping a value of another type only warns, and would send it.
        valid = self.adapter.validate_python(value)
        try:
            return self.adapter.dump_python(valid, mode="json")
        except UnicodeDecodeError as exc:
            # pydantic's default for bytes in JSON is UTF-8 text, not base64.
            raise ValueError(
                f"{exc}: pydantic sends bytes as UTF-8 text; for other bytes, give the model "
                'model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")'
            ) from exc

    def from_wire(self, value: Any) -> Any:
        return self.adapter.validate_python(value)


@dataclasses.dataclass(frozen=True, slots=True)
class ArgumentTypes:
    """The conversions of a task's parameters (None where JSON carries the value as is)."""

    positional: tuple[tuple[int, str, Conversion], ...]
    """The parameters that take positional arguments and need converting: index, name."""
    plain_positional: int
    """How many parameters take positional arguments (``*args`` takes those after)."""
    by_name: Mapping[str, Conversion | None]
    """Parameters that take keyword arguments."""
    var_positional: Conversion | None
    var_keyword: Conversion | None

    def to_wire(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], *, first: int = 0
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments as JSON values; ``args`` from the ``first`` parameter on (a chain's
        step has its first argument, the previous result, filled in later).

        Raises:
            TypeError: naming the first argument that does not convert.
        """
        return self._each(args, kwargs, first, outbound=True)

    def from_wire(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """The arguments as their annotated types.

        Raises:
            TypeError: naming the first argument that does not convert.
        """
        return self._each(args, kwargs, 0, outbound=False)

    def _each(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], first: int, *, outbound: bool
    ) -> tuple[list[Any], dict[str, Any]]:
        # On every enqueue and every run of a typed task: only the parameters that need a
        # conversion are visited.
        converted = list(args)
        for index, name, conversion in self.positional:
            at = index - first
            if 0 <= at < len(args):
                converted[at] = _convert(conversion, args[at], name, outbound)
        if self.var_positional is not None:
            for at in range(max(self.plain_positional - first, 0), len(args)):
                name = f"*args[{at + first - self.plain_positional}]"
                converted[at] = _convert(self.var_positional, args[at], name, outbound)
        converted_kwargs = dict(kwargs)
        for name, value in kwargs.items():
            by_name = self.by_name.get(name, self.var_keyword)
            if by_name is not None:
                converted_kwargs[name] = _convert(by_name, value, name, outbound)
        return converted, converted_kwargs


def _convert(conversion: Conversion, value: Any, name: str, outbound: bool) -> Any:
    try:
        return conversion.to_wire(value) if outbound else conversion.from_wire(value)
    except Exception as exc:
        raise TypeError(f"argument {name!r} ({type(value).__name__}): {exc}") from exc


class TaskTypes:
    """What a task's annotations ask of its arguments and its result, worked out once.

    Annotations that name a class defined further down the task's module (a forward
    reference, ``-> "Report"`` or any annotation under ``from __future__ import
    annotations``) cannot be evaluated when the task is decorated: then they are worked out
    at first use (the first enqueue, run or result), once the module has been imported.
    """

    __slots__ = ("_pending", "arguments", "result")

    arguments: ArgumentTypes | None
    """None when every parameter takes JSON values as they are: nothing to convert."""
    result: Conversion | None
    """None when the return annotation takes JSON values as they are."""

    def __init__(
        self,
        arguments: ArgumentTypes | None,
        result: Conversion | None,
        *,
        pending: Callable[[], tuple[ArgumentTypes | None, Conversion | None]] | None = None,
    ) -> None:
        self._pending = pending
        if pending is None:
            self.arguments = arguments
            self.result = result

    def __getattr__(self, name: str) -> Any:
        # Reached only while the slots are unset, at first use of deferred annotations: read
        # on every enqueue and run, the slots then cost what a plain attribute does.
        pending = self._pending
        if pending is None or name not in ("arguments", "result"):
            raise AttributeError(name)
        self.arguments, self.result = pending()  # an ImportError is raised at each use
        self._pending = None
        return getattr(self, name)


UNTYPED = TaskTypes(None, None)
"""A task whose arguments and result are JSON as they are (or are not known here)."""


def task_types(fn: Callable[..., Any], task_name: str) -> TaskTypes:
    """The conversions ``fn``'s annotations need (:data:`UNTYPED` when JSON carries all).

    Raises:
        ImportError: an annotation needs msgspec, which is not installed (raised at first
            use instead when the annotations can only be evaluated then).
    """
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        # Most often a class defined later in the module: evaluated at first use, when the
        # module has been imported whole.
        return TaskTypes(None, None, pending=lambda: _conversions(fn, task_name, _hints(fn)))
    arguments, result = _conversions(fn, task_name, hints)
    if arguments is None and result is None:
        return UNTYPED
    return TaskTypes(arguments, result)


def _conversions(
    fn: Callable[..., Any], task_name: str, hints: Mapping[str, Any]
) -> tuple[ArgumentTypes | None, Conversion | None]:
    """The conversions of ``fn``'s parameters and of its result, from its ``hints``."""
    signature = inspect.signature(fn)
    conversions = {
        name: _conversion(hints.get(name, Any), task_name) for name in signature.parameters
    }
    result = _conversion(hints.get("return", Any), task_name)
    if all(conversion is None for conversion in conversions.values()):
        return None, result
    kinds = inspect.Parameter
    params = signature.parameters.values()
    positional = [
        p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    arguments = ArgumentTypes(
        positional=tuple(
            (index, name, conversion)
            for index, name in enumerate(positional)
            if (conversion := conversions[name]) is not None
        ),
        plain_positional=len(positional),
        by_name={
            p.name: conversions[p.name]
            for p in params
            if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        },
        var_positional=next(
            (conversions[p.name] for p in params if p.kind is kinds.VAR_POSITIONAL), None
        ),
        var_keyword=next(
            (conversions[p.name] for p in params if p.kind is kinds.VAR_KEYWORD), None
        ),
    )
    return arguments, result


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s annotations, evaluated; one that names what is not defined (an import under
    ``TYPE_CHECKING``) is left out: its values stay JSON."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    namespace = getattr(fn, "__globals__", {})
    for name, annotation in inspect.get_annotations(fn).items():
        try:
            hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation
        except Exception:
            continue
    return hints


def _conversion(annotation: Any, task_name: str) -> Conversion | None:
    if _json_native(annotation):
        return None
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and _names_model(annotation, pydantic.BaseModel):
        return _Pydantic(pydantic.TypeAdapter(annotation))
    try:
        import msgspec  # noqa: F401  (checked now, so a missing one fails at decoration)
    except ImportError:
        raise ImportError(
            f"task {task_name} takes or returns {annotation!r}, which JSON does not carry as "
            f"is; converting it needs msgspec: {pip_install('typed')}"
        ) from None
    return _Msgspec(annotation)


def _json_native(annotation: Any) -> bool:
    """Whether a JSON value decoded by orjson already is a value of ``annotation``."""
    try:
        if annotation in _JSON_TYPES:
            return True
    except TypeError:  # an unhashable annotation: no JSON type
        return False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, typing.Union, types.UnionType):
        return all(_json_native(arg) for arg in args)
    if origin is dict:
        return args[0] is str and _json_native(args[1])
    if origin is typing.Literal:
        return all(arg is None or type(arg) in (str, int, bool) for arg in args)
    return False


def _names_model(annotation: Any, base: type, seen: frozenset[int] = frozenset()) -> bool:
    """Whether ``annotation`` names a subclass of ``base`` anywhere: in its arguments, or in
    the fields of a dataclass, TypedDict or NamedTuple it names (msgspec cannot encode a
    pydantic model held in a dataclass's field; pydantic handles the dataclass too)."""
    if id(annotation) in seen:  # a class whose fields name itself
        return False
    seen |= {id(annotation)}
    if isinstance(annotation, type):
        if issubclass(annotation, base):
            return True
        if dataclasses.is_dataclass(annotation) or _fields_typed(annotation):
            try:
                fields = typing.get_type_hints(annotation)
            except Exception:  # a field naming what is not defined: no model known there
                return False
            return any(_names_model(field, base, seen) for field in fields.values())
    return any(_names_model(arg, base, seen) for arg in typing.get_args(annotation))


def _fields_typed(cls: type) -> bool:
    """A TypedDict or a NamedTuple: classes whose annotated fields are its values."""
    return typing.is_typeddict(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
