"""How the command line prints for people: aligned tables, times in UTC, statuses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters.domain import isoformat_utc


def when(value: datetime | None) -> str:
    return "—" if value is None else isoformat_utc(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    widths = [max([len(header), *(len(row[index]) for row in rows)]) for index, header in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])
