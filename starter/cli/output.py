"""How the command line prints for people: aligned tables, times in UTC, one printable line per line.

What customers and callers typed (ids, reasons) is printed with its control characters escaped
(:func:`adapters.text.printable`): a newline in a reason cannot forge a line, an escape sequence in an id
cannot reach the terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import typer

from adapters.domain import isoformat_utc
from adapters.text import printable


def when(value: datetime | None) -> str:
    return "—" if value is None else isoformat_utc(value)


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns aligned on the widest cell (cells printable); the last column is not padded."""
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in cells)]) for index, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

    return [line(headers), *(line(row) for row in cells)]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "\n".join(table_lines(headers, rows))


def echo_lines(lines: Iterable[str]) -> None:
    """Print each line with its control characters escaped (one output line per line given)."""
    typer.echo("\n".join(printable(line) for line in lines))
