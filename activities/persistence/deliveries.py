"""Webhook deliveries as the dispatcher works them: take new events from the outbox, find what is due, record
what each attempt did, and mark an endpoint failing.

One delivery row per (endpoint, event). Pending rows (``delivered_at`` NULL) are worked per enrollment in
outbox order: only the oldest pending row of an enrollment (its head) may have failed and wait for a retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.events import cursor_of, event_of, events_after
from activities.persistence.models import EventRow, WebhookAttemptRow, WebhookDeliveryRow, WebhookEndpointRow
from activities.persistence.transactions import Transactions
from adapters.events import Event

_RECORD_FAILURE = (
    update(WebhookDeliveryRow)
    .where(WebhookDeliveryRow.id == bindparam("delivery_id"))
    .values(
        attempts=bindparam("new_attempts"),
        first_failed_at=bindparam("new_first_failed_at"),
        next_attempt_at=bindparam("new_next_attempt_at"),
    )
)
"""A delivery's state after a failed attempt (executed for many at once)."""


@dataclass(frozen=True)
class EndpointTarget:
    """Where and how to deliver: the endpoint's URL and secret, and whether it has stopped (failing)."""

    url: str
    secret: str
    failing_since: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class PendingDelivery:
    delivery_id: int
    enrollment_id: str
    attempts: int
    first_failed_at: datetime | None
    next_attempt_at: datetime | None
    event: Event


@dataclass(frozen=True)
class AttemptOutcome:
    """What one POST did, and the delivery's state after it (the dispatcher applies the retry policy)."""

    delivery_id: int
    event: Event
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    delivered: bool
    attempts: int
    first_failed_at: datetime | None
    next_attempt_at: datetime | None


class DeliveryRepository:
    """The dispatcher's side of webhook deliveries; each method is one transaction (or joins its unit of work)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def take_new_events(self, endpoint_id: str, *, limit: int) -> tuple[EndpointTarget | None, bool]:
        """Add deliveries for the endpoint's types among the next ``limit`` committed events after its cursor,
        and move the cursor past them. Returns the endpoint (None: removed) and whether more events wait."""

        async def take(session: AsyncSession) -> tuple[EndpointTarget | None, bool]:
            endpoint = await session.get(WebhookEndpointRow, endpoint_id, with_for_update=True)
            if endpoint is None:
                return None, False
            rows = await events_after(session, (endpoint.cursor_tx, endpoint.cursor_position), limit=limit)
            wanted = None if endpoint.event_types is None else set(endpoint.event_types)
            new = [
                {
                    "endpoint_id": endpoint_id,
                    "event_position": row.position,
                    "enrollment_id": row.enrollment_id,
                    "attempts": 0,
                }
                for row in rows
                if wanted is None or row.type in wanted
            ]
            if new:
                await session.execute(insert(WebhookDeliveryRow), new)
            if rows:
                endpoint.cursor_tx, endpoint.cursor_position = cursor_of(rows[-1])
            target = EndpointTarget(
                url=endpoint.url,
                secret=endpoint.secret,
                failing_since=endpoint.failing_since,
                last_error=endpoint.last_error,
            )
            return target, len(rows) == limit

        return await self._transactions.write(take)

    async def pending(self, endpoint_id: str, *, per_enrollment: int, limit: int) -> list[PendingDelivery]:
        """The endpoint's pending deliveries in outbox order, at most ``per_enrollment`` per enrollment (its
        oldest) and ``limit`` in all, with their events."""
        ranked = (
            select(
                WebhookDeliveryRow.id.label("delivery_id"),
                func.row_number()
                .over(partition_by=WebhookDeliveryRow.enrollment_id, order_by=WebhookDeliveryRow.event_position)
                .label("rank"),
            )
            .where(WebhookDeliveryRow.endpoint_id == endpoint_id, WebhookDeliveryRow.delivered_at.is_(None))
            .subquery()
        )
        query = (
            select(WebhookDeliveryRow, EventRow)
            .join(ranked, ranked.c.delivery_id == WebhookDeliveryRow.id)
            .join(EventRow, EventRow.position == WebhookDeliveryRow.event_position)
            .where(ranked.c.rank <= per_enrollment)
            .order_by(WebhookDeliveryRow.event_position)
            .limit(limit)
        )
        async with self._transactions.read() as session:
            return [
                PendingDelivery(
                    delivery_id=delivery.id,
                    enrollment_id=delivery.enrollment_id,
                    attempts=delivery.attempts,
                    first_failed_at=delivery.first_failed_at,
                    next_attempt_at=delivery.next_attempt_at,
                    event=event_of(event),
                )
                for delivery, event in await session.execute(query)
            ]

    async def record(self, endpoint_id: str, outcomes: Sequence[AttemptOutcome]) -> None:
        """Store the attempts and the deliveries' new state; the endpoint's last error is the latest outcome's."""
        if not outcomes:
            return

        async def record(session: AsyncSession) -> None:
            endpoint = await session.get(WebhookEndpointRow, endpoint_id, with_for_update=True)
            if endpoint is None:  # removed meanwhile: nothing left to record for it
                return
            connection = await session.connection()
            delivered = [outcome for outcome in outcomes if outcome.delivered]
            if delivered:  # the common case, in one statement: delivered as of the batch's latest answer
                await connection.execute(
                    update(WebhookDeliveryRow)
                    .where(WebhookDeliveryRow.id.in_([outcome.delivery_id for outcome in delivered]))
                    .values(
                        attempts=WebhookDeliveryRow.attempts + 1,
                        next_attempt_at=None,
                        delivered_at=max(outcome.at for outcome in delivered),
                    )
                )
            failed = [outcome for outcome in outcomes if not outcome.delivered]
            if failed:
                await connection.execute(
                    _RECORD_FAILURE,
                    [
                        {
                            "delivery_id": outcome.delivery_id,
                            "new_attempts": outcome.attempts,
                            "new_first_failed_at": outcome.first_failed_at,
                            "new_next_attempt_at": outcome.next_attempt_at,
                        }
                        for outcome in failed
                    ],
                )
            await connection.execute(
                insert(WebhookAttemptRow),
                [
                    {
                        "endpoint_id": endpoint_id,
                        "event_id": outcome.event.id,
                        "event_type": outcome.event.type,
                        "at": outcome.at,
                        "status_code": outcome.status_code,
                        "error": outcome.error,
                        "duration_ms": outcome.duration_ms,
                    }
                    for outcome in outcomes
                ],
            )
            latest = max(outcomes, key=lambda outcome: outcome.at)
            endpoint.last_error = None if latest.delivered else latest.error

        await self._transactions.write(record)

    async def mark_failing(self, endpoint_id: str, *, since: datetime, error: str | None) -> None:
        """Stop the endpoint's deliveries until ``redeliver``: retries ran out."""

        async def mark(session: AsyncSession) -> None:
            await session.execute(
                update(WebhookEndpointRow)
                .where(WebhookEndpointRow.id == endpoint_id, WebhookEndpointRow.failing_since.is_(None))
                .values(failing_since=since, last_error=error, updated=since)
            )

        await self._transactions.write(mark)

    async def count_pending(self, endpoint_id: str) -> int:
        async with self._transactions.read() as session:
            count = await session.scalar(
                select(func.count(WebhookDeliveryRow.id)).where(
                    WebhookDeliveryRow.endpoint_id == endpoint_id, WebhookDeliveryRow.delivered_at.is_(None)
                )
            )
            return int(count or 0)
