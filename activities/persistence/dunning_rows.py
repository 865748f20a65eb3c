"""Dunning schedules as rows, inside the caller's transaction: started with their order, ended with it.

A schedule is stored when its order is made (:func:`start_dunning`, in the period's or the billing's own
transaction) and ended when the order no longer is chased (:func:`end_dunning`: paid, rejected) or the
enrollment terminates (:func:`end_all_dunning`). Each function takes the session of the transaction it runs in;
the caller holds the enrollment's lock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.models import OrderDunningRow, OrderRow
from adapters.domain import Order
from adapters.dunning import DunningStepState, OrderDunning, start_dunning
from adapters.dunning_policy import DunningPolicy


def dunning_of(row: OrderDunningRow, order_number: str) -> OrderDunning:
    return OrderDunning(
        order_id=row.order_id,
        order_number=order_number,
        due_at=row.due_at,
        currency=row.currency,
        open_balance=row.open_balance,
        steps=[DunningStepState.model_validate(step) for step in row.steps],
        paused=row.paused,
    )


def store_dunning(row: OrderDunningRow, dunning: OrderDunning, now: datetime) -> None:
    """Write ``dunning``'s balance, steps and hold onto its row."""
    row.open_balance = dunning.open_balance
    row.steps = [step.model_dump(mode="json") for step in dunning.steps]
    row.paused = dunning.paused
    row.updated = now


async def start_dunning_row(
    session: AsyncSession,
    enrollment_id: str,
    policy: DunningPolicy,
    order: Order,
    due_at: datetime,
    *,
    open_balance: int | None,
    currency: str | None,
    now: datetime,
) -> OrderDunning:
    """Store the schedule of the unpaid ``order`` (made in this transaction), due at ``due_at``."""
    dunning = start_dunning(policy, order, due_at, open_balance=open_balance, currency=currency)
    row = OrderDunningRow(
        order_id=order.id,
        enrollment_id=enrollment_id,
        due_at=due_at,
        currency=currency,
        created=now,
        steps=[],
        paused=False,
    )
    store_dunning(row, dunning, now)
    session.add(row)
    await session.flush()
    return dunning


async def open_dunning(session: AsyncSession, enrollment_id: str) -> list[OrderDunning]:
    """The enrollment's running schedules, oldest due first."""
    rows = await session.execute(
        select(OrderDunningRow, OrderRow.number)
        .join(OrderRow, OrderRow.id == OrderDunningRow.order_id)
        .where(OrderDunningRow.enrollment_id == enrollment_id, OrderDunningRow.ended_at.is_(None))
        .order_by(OrderDunningRow.due_at, OrderDunningRow.order_id)
    )
    return [dunning_of(row, number) for row, number in rows]


async def running_dunning_row(session: AsyncSession, order_id: str) -> OrderDunningRow | None:
    """The order's schedule while it runs (None: it has none, or it ended)."""
    row = await session.get(OrderDunningRow, order_id)
    return row if row is not None and row.ended_at is None else None


async def end_dunning(session: AsyncSession, order_id: str, reason: str, now: datetime) -> None:
    """End the order's schedule (if one runs): its remaining steps will not run."""
    await session.execute(
        update(OrderDunningRow)
        .where(OrderDunningRow.order_id == order_id, OrderDunningRow.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason, paused=False, updated=now)
    )


async def end_all_dunning(session: AsyncSession, enrollment_id: str, reason: str, now: datetime) -> None:
    """End every running schedule of the enrollment (it terminated)."""
    await session.execute(
        update(OrderDunningRow)
        .where(OrderDunningRow.enrollment_id == enrollment_id, OrderDunningRow.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason, paused=False, updated=now)
    )
