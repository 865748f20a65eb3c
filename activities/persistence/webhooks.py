"""Webhook endpoints as operators manage them: add, list, remove, their delivery attempts, redeliver.

An endpoint starts at the head of the outbox: it receives the events committed after it was added (and,
through :meth:`WebhookRepository.redeliver` with ``since``, older ones on request).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.errors import WebhookNotFound
from activities.persistence.events import head
from activities.persistence.models import (
    EventRow,
    WebhookAttemptRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)
from activities.persistence.transactions import Transactions, require_aware
from adapters.events import EventType
from adapters.webhooks import DeliveryAttempt, WebhookEndpoint, WebhookEndpointSpec

MAX_ATTEMPTS_SHOWN = 1_000


def _endpoint_of(row: WebhookEndpointRow, pending: int = 0, delivered: int = 0) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        url=row.url,
        event_types=None if row.event_types is None else [EventType(name) for name in row.event_types],
        failing_since=row.failing_since,
        last_error=row.last_error,
        pending=pending,
        delivered=delivered,
        created=row.created,
    )


async def _endpoint(session: AsyncSession, endpoint_id: str, *, lock: bool = False) -> WebhookEndpointRow:
    row = await session.get(WebhookEndpointRow, endpoint_id, with_for_update=lock)
    if row is None:
        raise WebhookNotFound(endpoint_id)
    return row


class WebhookRepository:
    """Webhook endpoints; each method is one transaction (or joins the unit of work it runs in)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def add(self, spec: WebhookEndpointSpec, *, now: datetime, endpoint_id: str | None = None) -> WebhookEndpoint:
        """Store a validated endpoint that receives the events committed from now on; returns it."""
        require_aware("now", now)
        identifier = endpoint_id or uuid.uuid4().hex

        async def add(session: AsyncSession) -> WebhookEndpoint:
            cursor_tx, cursor_position = await head(session)
            row = WebhookEndpointRow(
                id=identifier,
                url=spec.url,
                secret=spec.secret,
                event_types=None if spec.event_types is None else [event_type.value for event_type in spec.event_types],
                cursor_tx=cursor_tx,
                cursor_position=cursor_position,
                failing_since=None,
                last_error=None,
                created=now,
                updated=now,
            )
            session.add(row)
            await session.flush()
            return _endpoint_of(row)

        return await self._transactions.write(add)

    async def all(self) -> list[WebhookEndpoint]:
        """Every endpoint, oldest first, with its pending and delivered counts."""
        pending = func.count(WebhookDeliveryRow.id).filter(WebhookDeliveryRow.delivered_at.is_(None))
        delivered = func.count(WebhookDeliveryRow.delivered_at)
        query = (
            select(WebhookEndpointRow, pending, delivered)
            .outerjoin(WebhookDeliveryRow, WebhookDeliveryRow.endpoint_id == WebhookEndpointRow.id)
            .group_by(WebhookEndpointRow.id)
            .order_by(WebhookEndpointRow.created, WebhookEndpointRow.id)
        )
        async with self._transactions.read() as session:
            return [_endpoint_of(row, pending, delivered) for row, pending, delivered in await session.execute(query)]

    async def ids(self) -> list[str]:
        async with self._transactions.read() as session:
            return list(await session.scalars(select(WebhookEndpointRow.id).order_by(WebhookEndpointRow.id)))

    async def remove(self, endpoint_id: str) -> None:
        """Delete the endpoint with its deliveries and attempts; :class:`WebhookNotFound` when unknown."""

        async def remove(session: AsyncSession) -> None:
            await _endpoint(session, endpoint_id, lock=True)
            await session.execute(delete(WebhookAttemptRow).where(WebhookAttemptRow.endpoint_id == endpoint_id))
            await session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint_id))
            await session.execute(delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id))

        await self._transactions.write(remove)

    async def attempts(self, endpoint_id: str, *, limit: int = 50) -> list[DeliveryAttempt]:
        """The endpoint's latest delivery attempts, newest first; :class:`WebhookNotFound` when unknown."""
        if not 1 <= limit <= MAX_ATTEMPTS_SHOWN:
            raise ValueError(f"limit must be 1 to {MAX_ATTEMPTS_SHOWN}, got {limit}")
        async with self._transactions.read() as session:
            await _endpoint(session, endpoint_id)
            rows = await session.scalars(
                select(WebhookAttemptRow)
                .where(WebhookAttemptRow.endpoint_id == endpoint_id)
                .order_by(WebhookAttemptRow.id.desc())
                .limit(limit)
            )
            return [
                DeliveryAttempt(
                    at=row.at,
                    event_id=row.event_id,
                    event_type=row.event_type,
                    status_code=row.status_code,
                    error=row.error,
                    duration_ms=row.duration_ms,
                )
                for row in rows
            ]

    async def redeliver(self, endpoint_id: str, *, now: datetime, since: datetime | None = None) -> int:
        """Make the endpoint deliver again: it is no longer failing and every waiting event is due now, with
        a fresh retry window. With ``since``, the events recorded since then are sent again too (delivered or
        not, or from before the endpoint existed), of its event types. Returns how many deliveries wait now."""
        require_aware("now", now)
        if since is not None:
            require_aware("since", since)

        async def redeliver(session: AsyncSession) -> int:
            endpoint = await _endpoint(session, endpoint_id, lock=True)
            endpoint.failing_since = None
            endpoint.last_error = None
            endpoint.updated = now
            ours = WebhookDeliveryRow.endpoint_id == endpoint_id
            fresh = {"attempts": 0, "first_failed_at": None, "next_attempt_at": None}
            await session.execute(
                update(WebhookDeliveryRow).where(ours, WebhookDeliveryRow.delivered_at.is_(None)).values(fresh)
            )
            if since is not None:
                recent = select(EventRow.position).where(EventRow.recorded_at >= since)
                await session.execute(
                    update(WebhookDeliveryRow)
                    .where(ours, WebhookDeliveryRow.event_position.in_(recent))
                    .values({**fresh, "delivered_at": None})
                )
                await _add_missing(session, endpoint, since)
            pending = await session.scalar(
                select(func.count(WebhookDeliveryRow.id)).where(ours, WebhookDeliveryRow.delivered_at.is_(None))
            )
            return int(pending or 0)

        return await self._transactions.write(redeliver)


async def _add_missing(session: AsyncSession, endpoint: WebhookEndpointRow, since: datetime) -> None:
    """Deliveries for the endpoint's events recorded since ``since`` up to its cursor that it never had
    (those after the cursor are the dispatcher's to add)."""
    has_delivery = (
        select(WebhookDeliveryRow.id)
        .where(WebhookDeliveryRow.endpoint_id == endpoint.id, WebhookDeliveryRow.event_position == EventRow.position)
        .exists()
    )
    query = select(EventRow.position, EventRow.enrollment_id).where(
        EventRow.recorded_at >= since,
        tuple_(EventRow.tx_order, EventRow.position) <= tuple_(endpoint.cursor_tx, endpoint.cursor_position),
        ~has_delivery,
    )
    if endpoint.event_types is not None:
        query = query.where(EventRow.type.in_(endpoint.event_types))
    missing = [
        {"endpoint_id": endpoint.id, "event_position": position, "enrollment_id": enrollment_id, "attempts": 0}
        for position, enrollment_id in await session.execute(query)
    ]
    if missing:
        await session.execute(insert(WebhookDeliveryRow), missing)
