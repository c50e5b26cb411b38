"""``python -m aqueue``: the same as the ``aqueue`` command."""

from .cli import main

main(prog_name="aqueue")
