"""The ``aqueue`` command's parts; ``aqueue/cli.py`` is its entry point."""
