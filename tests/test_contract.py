"""Each Lua script's contract has one home: its builder in ``aqueue._redis._calls``, whose names
stand at the top of the ``.lua`` file in the order the builder emits them."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.internals import Call, scripts

LUA = Path(scripts.__file__).parent / "lua"

_SCALAR = re.compile(r"local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?")
_BLOCK = re.compile(r"local \w+ = (\d+)  -- (KEYS|ARGV)\[(\d+)\.\.\.\]: (\w+(?:, \w+)*)")

BUILDERS: dict[str, Callable[..., Call]] = {
    name: builder
    for name, builder in vars(scripts).items()
    if inspect.isfunction(builder)
    and builder.__module__ == scripts.__name__
    and not name.startswith("_")
}


class Header(NamedTuple):
    """What a script's top says it takes, in each of KEYS and ARGV."""

    scalars: list[tuple[str, int]]
    """(name, 1-based index) of each single value."""
    blocks: list[tuple[list[str], int]]
    """(the builder parameters it holds, first index) of each block or tail."""


def _header(script: str, where: str) -> Header:
    text = (LUA / f"{script}.lua").read_text()
    scalars = [(m[1], int(m[3])) for m in _SCALAR.finditer(text) if m[2] == where]
    blocks = []
    for m in _BLOCK.finditer(text):
        if m[2] == where:
            assert m[1] == m[3], f"{script}.lua: {m[0]!r} names two different indexes"
            blocks.append((m[4].split(", "), int(m[1])))
    return Header(scalars, blocks)


def _sentinel(name: str, hint: Any) -> Any:
    """A value of type ``hint`` that tells where it went: each parameter gets its own."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        return _sentinel(name, next(arg for arg in args if arg is not type(None)))
    if name == "entry_id":  # the start and finish builders find their batch's least and greatest
        return b"1-0"
    if hint is bytes:
        return f"key:{name}".encode()
    if hint is bool:
        return True
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        fields = typing.get_type_hints(hint)
        return hint(*(_sentinel(field, fields[field]) for field in hint._fields))
    if origin is Sequence:
        [item] = args
        if item is bytes:
            return tuple(f"key:{name}:{i}".encode() for i in range(10))
        if typing.get_origin(item) is tuple:
            return [(f"arg:{name}", f"arg:{name}:value")]
        return [_sentinel(name, item)]
    return f"arg:{name}"


def _sentinels(builder: Callable[..., Call]) -> dict[str, Any]:
    hints = typing.get_type_hints(builder)
    return {name: _sentinel(name, hints[name]) for name in inspect.signature(builder).parameters}


def _is_group(value: Any) -> bool:
    """Whether ``value`` is a NamedTuple of parameters, named field by field in Lua."""
    return isinstance(value, tuple) and hasattr(value, "_fields")


def _named(values: dict[str, Any]) -> dict[str, Any]:
    """Each value by the name the Lua header gives it: a group's fields by their own names."""
    named = dict(values)
    for value in values.values():
        if _is_group(value):
            named.update(value._asdict())
    return named


def _sent(value: Any) -> Any:
    return "1" if value is True else value


@pytest.mark.parametrize("script", sorted(BUILDERS))
def test_each_script_has_a_lua_file_named_after_its_builder(script: str) -> None:
    assert (LUA / f"{script}.lua").is_file()


def test_each_lua_script_has_a_builder() -> None:
    files = {path.stem for path in LUA.glob("*.lua") if not path.stem.startswith("_")}
    assert files == set(BUILDERS)


@pytest.mark.parametrize("script", sorted(BUILDERS))
@pytest.mark.parametrize("where", ["KEYS", "ARGV"])
def test_the_lua_header_names_each_value_where_the_builder_puts_it(script: str, where: str) -> None:
    builder = BUILDERS[script]
    values = _sentinels(builder)
    named = _named(values)
    call = builder(**values)
    sent = call.keys if where == "KEYS" else call.args
    header = _header(script, where)
    for name, index in header.scalars:
        assert name in named, f"{script}.lua names {where}[{index}] {name!r}: no such parameter"
        assert sent[index - 1] == _sent(named[name]), f"{script}.lua: {where}[{index}] {name}"
    for names, first in header.blocks:
        unknown = [name for name in names if name not in named]
        assert not unknown, f"{script}.lua names {where}[{first}...] {unknown}: no such parameter"
        value = named[names[0]]
        if isinstance(value, tuple):  # the ten level streams
            assert sent[first - 1 : first - 1 + len(value)] == list(value), f"{script}.lua"


@pytest.mark.parametrize("script", sorted(BUILDERS))
@pytest.mark.parametrize("where", ["KEYS", "ARGV"])
def test_the_lua_header_numbers_its_values_without_a_gap(script: str, where: str) -> None:
    header = _header(script, where)
    indexes = [index for _, index in header.scalars]
    assert indexes == list(range(1, len(indexes) + 1))
    # A block of ten level streams, then at most a tail, right after the single values.
    expected = len(indexes) + 1
    for _, first in header.blocks:
        assert first == expected, f"{script}.lua: a block of {where} starts at {first}"
        expected = first + 10


@pytest.mark.parametrize("script", sorted(BUILDERS))
def test_the_lua_header_names_every_parameter_of_the_builder(script: str) -> None:
    builder = BUILDERS[script]
    values = _sentinels(builder)
    in_header = set()
    for where in ("KEYS", "ARGV"):
        header = _header(script, where)
        in_header |= {name for name, _ in header.scalars}
        in_header |= {name for names, _ in header.blocks for name in names}
    groups = {
        name
        for name, value in values.items()
        if isinstance(value, tuple)
        and hasattr(value, "_fields")
        and set(value._fields) <= in_header
    }
    assert set(values) - in_header - groups == set()
