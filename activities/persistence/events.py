"""The outbox: events written in the transaction of the change they report, read back in commit-safe order.

Writers call :func:`record_events` inside their transaction, holding the enrollment's row lock (or having just
inserted the enrollment), so the enrollment's ``sequence`` is gapless: the next number is read and used under
the lock, and a rolled-back transaction takes its numbers with it.

Readers page by a cursor over ``(tx_order, position)``. ``position`` is the insertion order, but on PostgreSQL
transactions commit in another order than they insert, so a plain ``position > cursor`` could skip an event
that commits after a later one was read. Each event therefore carries the id of the transaction that wrote it
(``tx_order``), and a read returns only events of transactions older than every transaction still running
(``pg_snapshot_xmin``): whatever commits later sorts after everything already returned. SQLite runs one
writer at a time, so insertion order is commit order there (``tx_order`` is 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, func, insert, literal_column, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.models import EventRow
from activities.persistence.transactions import Transactions
from adapters.events import Event, EventData, EventPage, EventType, event_id_for

MAX_PAGE = 1_000

Cursor = tuple[int, int]
"""``(tx_order, position)`` of the last event read; ``(0, 0)`` is before the first."""


@dataclass(frozen=True)
class NewEvent:
    """An event to record: its type, the business key that names it, the business time and its data."""

    type: EventType
    key: str
    occurred_at: datetime
    data: EventData


def _postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def record_events(session: AsyncSession, enrollment_id: str, *events: NewEvent) -> None:
    """Append ``events`` to the enrollment's stream in the caller's transaction, numbered after its last one.

    The caller holds the enrollment's lock (:func:`activities.persistence.rows.lock_enrollment`) or has just
    inserted the enrollment. Ids come from the business keys: recording a change twice is a unique-key error,
    which the repositories never reach because they find the change itself first.
    """
    if not events:
        return
    last = await session.scalar(select(func.max(EventRow.sequence)).where(EventRow.enrollment_id == enrollment_id))
    recorded_at = datetime.now(UTC)
    rows = [
        {
            "id": event_id_for(enrollment_id, event.type, event.key),
            "enrollment_id": enrollment_id,
            "sequence": (last or 0) + index,
            "type": event.type.value,
            "occurred_at": event.occurred_at,
            "recorded_at": recorded_at,
            "data": event.data.model_dump(mode="json"),
        }
        for index, event in enumerate(events, start=1)
    ]
    tx_order: ColumnElement[int] = literal_column("pg_current_xact_id()::text::bigint" if _postgres(session) else "0")
    connection = await session.connection()
    await connection.execute(insert(EventRow).values(tx_order=tx_order), rows)


def committed(session: AsyncSession) -> ColumnElement[bool]:
    """Events every later commit sorts after: written by transactions older than any still running."""
    if not _postgres(session):
        return true()
    return EventRow.tx_order < literal_column("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor[0]}-{cursor[1]}"


def parse_cursor(text: str | None) -> Cursor:
    """A cursor from :func:`format_cursor` (None or empty: the beginning); ``ValueError`` when malformed."""
    if text is None or not text.strip():
        return (0, 0)
    tx_order, separator, position = text.strip().partition("-")
    if not separator or not tx_order.isdigit() or not position.isdigit():
        raise ValueError(f"cursor {text!r} is not one this engine returned (like 812345-1042)")
    return (int(tx_order), int(position))


def cursor_of(row: EventRow) -> Cursor:
    return (row.tx_order, row.position)


def event_of(row: EventRow) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        enrollment_id=row.enrollment_id,
        sequence=row.sequence,
        occurred_at=row.occurred_at,
        data=row.data,
    )


async def events_after(
    session: AsyncSession,
    cursor: Cursor,
    *,
    limit: int,
    types: Sequence[str] | None = None,
    enrollment_id: str | None = None,
) -> list[EventRow]:
    """Up to ``limit`` committed events after ``cursor`` in cursor order, of ``types`` and ``enrollment_id``."""
    query = (
        select(EventRow)
        .where(tuple_(EventRow.tx_order, EventRow.position) > tuple_(*cursor), committed(session))
        .order_by(EventRow.tx_order, EventRow.position)
        .limit(limit)
    )
    if types:
        query = query.where(EventRow.type.in_(list(types)))
    if enrollment_id is not None:
        query = query.where(EventRow.enrollment_id == enrollment_id)
    return list(await session.scalars(query))


async def head(session: AsyncSession) -> Cursor:
    """The cursor of the newest committed event: reading after it returns only events to come."""
    row = await session.execute(
        select(EventRow.tx_order, EventRow.position)
        .where(committed(session))
        .order_by(EventRow.tx_order.desc(), EventRow.position.desc())
        .limit(1)
    )
    found = row.first()
    return (0, 0) if found is None else (int(found[0]), int(found[1]))


class EventRepository:
    """The pull side of the outbox; each method is one read."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def page(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        types: Sequence[EventType | str] | None = None,
        enrollment_id: str | None = None,
    ) -> EventPage:
        """Events after the cursor ``after`` (None: from the first), oldest first, of the given types and
        enrollment; ``next_cursor`` continues after the last one (``after`` again when there is none yet)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
        names = [EventType(name).value for name in types] if types else None
        cursor = parse_cursor(after)
        async with self._transactions.read() as session:
            rows = await events_after(session, cursor, limit=limit, types=names, enrollment_id=enrollment_id)
        last = cursor_of(rows[-1]) if rows else cursor
        return EventPage(events=[event_of(row) for row in rows], next_cursor=format_cursor(last))
