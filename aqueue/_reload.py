"""``aqueue worker --reload``: restart the workers when the code changes (development only).

Loaded only with ``--reload``: watchfiles is the optional extra ``reload``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ._version import pip_install

try:
    import watchfiles
except ImportError as exc:  # pragma: no cover - the dev extra installs it
    raise ImportError(f"--reload needs watchfiles: {pip_install('reload')}") from exc


def watch_code(changed: Callable[[], None], done: threading.Event) -> None:
    """Call ``changed`` whenever a Python file under the current directory changes."""
    for _changes in watchfiles.watch(
        os.getcwd(), watch_filter=watchfiles.PythonFilter(), stop_event=done
    ):
        changed()
