"""The private parts of aqueue that tests reach into, imported here only.

Tests exercise internals (key names, the worker's parts, the settings table) where a public
door would not say enough; importing them through this one module keeps a rename of a private
module to one change in the tests.
"""

from __future__ import annotations

from aqueue._app import connections_of
from aqueue._checks import MAX_SECONDS
from aqueue._connections import Connections
from aqueue._control import send_command
from aqueue._depend import job_ended, members
from aqueue._limits import Limits
from aqueue._options import CHECKS
from aqueue._redis import _calls as scripts
from aqueue._redis._backoff import pause_after
from aqueue._redis._cluster import command_key
from aqueue._redis._direct import DirectCalls, _Room
from aqueue._redis._errors import translate_errors
from aqueue._redis._keys import CHANNELS, GROUP, Keys, keys_of
from aqueue._redis._scripts import (
    FINISH,
    RENEW,
    Call,
    Script,
    prelude_for,
    prelude_functions,
    run_sync,
    with_wire,
)
from aqueue._redis._wire import (
    ABSENT_VERSION,
    CODES,
    ENTRY,
    FIELDS,
    PROTOCOL_VERSION,
    VERSION_FIELDS,
)
from aqueue._registry import encode_record, registry_index, registry_record
from aqueue._schedule import cron_schedule, last_tick_key
from aqueue._settings import Settings, env_name
from aqueue._task import TaskConfig
from aqueue._typed import UNTYPED
from aqueue._version import DISTRIBUTION, pip_install
from aqueue._worker import _acker
from aqueue._worker import _worker as worker_module
from aqueue._worker._acker import Acker
from aqueue._worker._fetcher import Fetcher, Slots
from aqueue._worker._lease import LeaseKeeper
from aqueue._worker._levels import Levels
from aqueue._worker._outcome import Delivery
from aqueue._worker._reads import BlockingReads
from aqueue._worker._reclaim import (
    PROMPT_GRACE,
    PROMPT_SPREAD,
    TELL_INTERVAL,
    Reclaimer,
    prune_consumers,
)
from aqueue._worker._scheduler import Scheduler

__all__ = [
    "ABSENT_VERSION",
    "CHANNELS",
    "CHECKS",
    "CODES",
    "DISTRIBUTION",
    "ENTRY",
    "FIELDS",
    "FINISH",
    "GROUP",
    "MAX_SECONDS",
    "PROMPT_GRACE",
    "PROMPT_SPREAD",
    "PROTOCOL_VERSION",
    "RENEW",
    "TELL_INTERVAL",
    "UNTYPED",
    "VERSION_FIELDS",
    "Acker",
    "BlockingReads",
    "Call",
    "Connections",
    "Delivery",
    "DirectCalls",
    "Fetcher",
    "Keys",
    "LeaseKeeper",
    "Levels",
    "Limits",
    "Reclaimer",
    "Scheduler",
    "Script",
    "Settings",
    "Slots",
    "TaskConfig",
    "_Room",
    "_acker",
    "command_key",
    "connections_of",
    "cron_schedule",
    "encode_record",
    "env_name",
    "job_ended",
    "keys_of",
    "last_tick_key",
    "members",
    "pause_after",
    "pip_install",
    "prelude_for",
    "prelude_functions",
    "prune_consumers",
    "registry_index",
    "registry_record",
    "run_sync",
    "scripts",
    "send_command",
    "translate_errors",
    "with_wire",
    "worker_module",
]
