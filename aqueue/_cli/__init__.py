"""The ``aqueue`` command's parts, one concept a module; ``aqueue/cli.py`` is its entry point
(the ``main`` group, the worker command, the options all share). Importing this package
registers the commands on ``main``.

Exit codes: 0 on success, 1 for an error a user can fix (one line on stderr: Redis
unreachable, an unknown job, a queue nothing knows), 2 for a usage error.
"""

from . import _control, _dashboard, _dead_letters, _fleet, _jobs  # noqa: F401  (they register commands)
