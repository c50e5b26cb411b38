"""What the commands print: tables, JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
import orjson

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def to_json(value: Any) -> bytes:
    """``value`` as indented JSON, datetimes in ISO format (for ``--json``)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        raise TypeError

    return orjson.dumps(value, default=default, option=orjson.OPT_INDENT_2)


def to_json_line(value: Any) -> str:
    """``value`` as JSON on one line (arguments and results in readable output)."""
    return orjson.dumps(value, default=str).decode()


def format_table(header: list[str], rows: list[list[str]], *, numeric: bool = True) -> str:
    """A plain aligned text table; with ``numeric``, all but the first column align right."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        for cell, width in zip(row[1:], widths[1:], strict=True):
            cells.append(cell.rjust(width) if numeric else cell.ljust(width))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
