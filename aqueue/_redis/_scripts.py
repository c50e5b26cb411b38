"""Lua scripts shipped as package data, and a call of one: a script with its KEYS and ARGV.

Calls are made by the builders in :mod:`._calls` (one per script: its contract's one home) and
run by EVALSHA in one way only: loaded once per connection, on the async hot path
(:class:`~._direct.DirectCalls`) and on the lease thread's synchronous client
(:func:`run_sync`) alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

from redis import Redis as SyncRedis
from redis.exceptions import NoScriptError

from ._wire import CODES, VERSION_FIELDS

_LUA = resources.files(__package__).joinpath("lua")


_WIRE = re.compile(rb"\bFIELD\.(\w+)|\bVERSION_FIELDS\b")


def with_wire(lua: bytes) -> bytes:
    """``lua`` with the wire format's names put in place: each ``FIELD.<name>`` replaced by
    the code of that entry field, quoted, and ``VERSION_FIELDS`` by the version field an
    entry of this release opens with (:data:`._wire.VERSION_FIELDS`), as the first items of
    a table, each followed by a comma (nothing while there is none).

    So the scripts name a job's entry fields (``FIELD.task``) from the one table,
    :data:`._wire.FIELDS`, and no ``.lua`` file spells a code or a version. Put in place
    once, when the scripts load: a Lua table of the codes would be built anew in every
    call, and the version would be one more argument of every enqueue."""

    def value(match: re.Match[bytes]) -> bytes:
        if match[1] is None:
            return "".join(
                f"'{code}', '{value}', " for code, value in VERSION_FIELDS.items()
            ).encode()
        name = match[1].decode()
        if name not in CODES:
            raise LookupError(
                f"FIELD.{name} is no entry field: name one of FIELDS in aqueue/_redis/_wire.py"
            )
        return f"'{CODES[name]}'".encode()

    return _WIRE.sub(value, lua)


_FUNCTION = re.compile(rb"^local function (\w+)\(", re.MULTILINE)
_COMMENT = re.compile(rb"--[^\n]*")


def prelude_functions(prelude: bytes) -> dict[bytes, bytes]:
    """Each function of the prelude (which holds nothing else but comments) by name."""
    functions: dict[bytes, bytes] = {}
    starts = [match.start() for match in _FUNCTION.finditer(prelude)]
    for start, end in zip(starts, [*starts[1:], len(prelude)], strict=True):
        text, _, after = prelude[start:end].partition(b"\nend\n")
        if any(line and not line.startswith(b"--") for line in after.splitlines()):
            raise ValueError(f"lua/_prelude.lua holds only functions and comments, not {after!r}")
        name = _FUNCTION.match(text)
        assert name is not None  # the text starts where the pattern matched
        functions[name[1]] = text + b"\nend\n"
    return functions


def prelude_for(body: bytes, functions: dict[bytes, bytes]) -> bytes:
    """The prelude functions ``body`` calls, and those they call, in the prelude's order.

    Lua makes a closure for each function a script defines, on each call of the script: a
    script that carried the whole prelude would pay for every function it never calls."""
    needed: set[bytes] = set()
    todo = [body]
    while todo:
        text = _COMMENT.sub(b"", todo.pop())
        for name, function in functions.items():
            if name not in needed and re.search(rb"(?<![.:\w])%s\s*\(" % name, text):
                needed.add(name)
                todo.append(function)
    return b"".join(function for name, function in functions.items() if name in needed)


_PRELUDE = prelude_functions(_LUA.joinpath("_prelude.lua").read_bytes())


class Script:
    """One Lua script from ``aqueue/_redis/lua``, with the prelude in front of it.

    Lua scripts cannot import, so the functions of ``lua/_prelude.lua`` (the idioms scripts
    share) that a script calls are put in front of it; a shebang line (``#!lua flags=...``)
    must stay first, so it goes before.
    Entry fields named as ``FIELD.<name>`` are replaced by their codes (:func:`with_wire`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        body = _LUA.joinpath(f"{name}.lua").read_bytes()
        shebang = b""
        if body.startswith(b"#!"):
            line, _, body = body.partition(b"\n")
            shebang = line + b"\n"
        self.source = with_wire(shebang + prelude_for(body, _PRELUDE) + body)
        self.sha = hashlib.sha1(self.source).hexdigest()

    def __repr__(self) -> str:
        return f"<Script {self.name}>"


class Call(NamedTuple):
    """One call of a script: what its builder in :mod:`._calls` made."""

    script: Script
    keys: list[bytes]
    args: list[Any]


def run_sync(client: SyncRedis, calls: Sequence[Call]) -> list[Any]:
    """Run ``calls`` in one round trip on a synchronous client; each reply, errors in place.

    The lease thread's calls (registrations, renewals) do not depend on each
    other, so a call the server refuses with NOSCRIPT (it restarted, or was flushed) runs again
    after the script is loaded, behind the others. Connection errors are raised.
    """
    replies = _evalsha(client, calls, [])
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        scripts = {calls[i].script.sha: calls[i].script for i in missing}
        again = _evalsha(client, [calls[i] for i in missing], list(scripts.values()))
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


def _evalsha(client: SyncRedis, calls: Sequence[Call], loads: list[Script]) -> list[Any]:
    for script in loads:
        # Not in the pipeline: a cluster client refuses SCRIPT LOAD there, and loads a
        # script on every master when it is sent alone.
        client.script_load(script.source)
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    replies: list[Any] = pipe.execute(raise_on_error=False)
    return replies


ENQUEUE = Script("enqueue")
START = Script("start")
FINISH = Script("finish")
REQUEUE = Script("requeue")
REGISTER = Script("register")
POLL = Script("poll")
RENEW = Script("renew")
REPLAY = Script("replay")
PRUNE = Script("prune")
PURGE = Script("purge")
CANCEL = Script("cancel")
PROGRESS = Script("progress")
STATS = Script("stats")
WAIT = Script("wait")
DEPEND = Script("depend")
RESOLVE = Script("resolve")
FETCH = Script("fetch")
RELEASE = Script("release")
UNBLOCK = Script("unblock")
LEAD = Script("lead")
RESIGN = Script("resign")
MOVED = Script("moved")
