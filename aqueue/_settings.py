"""An app's settings, and the one rule for where each comes from.

Each setting is the :class:`aqueue.App` argument when one is given (not None), else its
``AQUEUE_<NAME>`` environment variable when set and not empty, else the default. The
environment is read when the App is created, never at import. Every check of a value names
where it came from, so a message never tells a user to set what they already set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import orjson

from .exceptions import ConfigurationError

DEFAULT_URL = "redis://localhost:6379/0"

DEFAULT_KEPT_ARGUMENTS_SIZE = 1024
"""Bytes of encoded arguments a finished job's record keeps by default: ids and small
values, not documents (every record kept for ``result_ttl`` carries them)."""

DEFAULT_SIZE_LIMIT = 1 << 20
"""Bytes, for an encoded job (``max_payload_size``) and an encoded result
(``max_result_size``): well under what any server takes in one value (``proto-max-bulk-len``
is 512 MiB by default, and never under 1 MiB)."""

ENV_PREFIX = "AQUEUE_"


def _text(value: str) -> str:
    return value


def _number(value: str) -> float:
    return float(value)


def _whole(value: str) -> int:
    return int(value)


def _flag(value: str) -> bool:
    words = {"1": True, "true": True, "yes": True, "on": True}
    words |= {"0": False, "false": False, "no": False, "off": False}
    try:
        return words[value.strip().lower()]
    except KeyError:
        raise ValueError("not a flag") from None


def _mapping(value: str) -> dict[str, Any]:
    parsed = orjson.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    return parsed


def _whole_or_mapping(value: str) -> int | dict[str, Any]:
    return _mapping(value) if value.lstrip().startswith("{") else _whole(value)


# How an environment variable's text becomes each setting, and what to write instead when
# it does not.
_FROM_TEXT: dict[str, tuple[Callable[[str], Any], str]] = {
    "url": (_text, "a Redis URL"),
    "namespace": (_text, "a name"),
    "default_queue": (_text, "a queue name"),
    "result_ttl": (_number, "a number of seconds"),
    "lease": (_number, "a number of seconds"),
    "max_payload_size": (_whole, "a whole number of bytes"),
    "max_result_size": (_whole, "a whole number of bytes"),
    "max_connections": (_whole, "a whole number"),
    "max_deliveries": (_whole, "a whole number"),
    "routes": (_mapping, 'a JSON object of patterns to queues, as {"emails.*": "emails"}'),
    "max_queue_length": (
        _whole_or_mapping,
        'a whole number, or a JSON object of queues to numbers, as {"emails": 1000}',
    ),
    "events": (_flag, "1, true, yes or on (or 0, false, no or off)"),
    "kept_arguments_size": (_whole, "a whole number of bytes"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The settings of an :class:`aqueue.App`, as given, before the App checks them."""

    url: str = DEFAULT_URL
    namespace: str = "aqueue"
    default_queue: str = "default"
    result_ttl: float | timedelta = 3600
    lease: float | timedelta = 30
    max_payload_size: int = DEFAULT_SIZE_LIMIT
    max_result_size: int = DEFAULT_SIZE_LIMIT
    max_connections: int = 64
    max_deliveries: int = 5
    routes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    max_queue_length: int | Mapping[str, int] = 0
    events: bool = False
    kept_arguments_size: int = DEFAULT_KEPT_ARGUMENTS_SIZE
    origins: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)
    """Where each setting not left at its default came from: ``"argument"`` or the name of
    the environment variable."""

    @classmethod
    def resolve(cls, environ: Mapping[str, str] | None = None, **given: Any) -> Settings:
        """Each setting from ``given`` (the App's arguments) when not None, else from the
        environment (``os.environ`` unless ``environ``), else the default.

        Raises:
            ConfigurationError: an environment variable's text is not of the setting's form.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for name, (parse, form) in _FROM_TEXT.items():
            variable = env_name(name)
            if given.get(name) is not None:
                values[name], origins[name] = given[name], "argument"
            elif environ.get(variable):
                text = environ[variable]
                try:
                    values[name] = parse(text)
                except ValueError:
                    raise ConfigurationError(
                        f"the environment variable {variable} must be {form}, not {text!r}"
                    ) from None
                origins[name] = variable
        return cls(**values, origins=MappingProxyType(origins))

    def variable(self, name: str) -> str | None:
        """The environment variable the setting came from; None if it did not."""
        origin = self.origins.get(name, "argument")
        return None if origin == "argument" else origin

    def label(self, name: str) -> str:
        """``name`` for messages about its value: with the variable it came from, if any."""
        variable = self.variable(name)
        return name if variable is None else f"{name} (from {variable})"


def env_name(setting: str) -> str:
    """The environment variable of an App setting: ``AQUEUE_`` and the name in capitals."""
    return ENV_PREFIX + setting.upper()
