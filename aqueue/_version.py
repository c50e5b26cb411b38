"""What is installed: the version, and the name to install it under."""

__version__ = "0.1.0"

DISTRIBUTION = "aqueue-redis"
"""The name on PyPI. It differs from the import name because ``aqueue`` there is another
project. pyproject.toml's ``name`` is the same (a test keeps the two equal)."""


def pip_install(extra: str) -> str:
    """The command that installs aqueue with ``extra``, for messages that need one."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
