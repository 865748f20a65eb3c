"""Rows as domain models, and the queries several repositories run inside their transactions.

Terms are stored as their JSON form, so a read-back equals what was written. Nothing here opens a session:
every function takes the session of the transaction it runs in.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from activities.persistence.errors import EnrollmentNotFound
from activities.persistence.models import EnrollmentLogRow, EnrollmentRow, OrderRow, PeriodRow, ProductRow
from activities.persistence.numbers import candidate_numbers
from activities.persistence.transactions import require_aware
from adapters.domain import (
    Enrollment,
    EnrollmentLogEntry,
    EnrollmentStatus,
    EnrollmentTerms,
    Order,
    OrderPosition,
    OrderStatus,
    Period,
    Product,
    ProductPlan,
    ProductType,
    ScheduledAction,
)
from adapters.lifecycle import KEPT_PERIODS

_ORDER_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:durable-enrollments:order")


def order_id_for(enrollment_id: str, period_start: datetime) -> str:
    """The id of the order that bills the period of ``enrollment_id`` starting at ``period_start``.

    Derived from the period's key, so every attempt to create that order names the same order.
    """
    start = require_aware("period_start", period_start).astimezone(UTC)
    return str(uuid.uuid5(_ORDER_ID_NAMESPACE, f"{enrollment_id}@{start.isoformat()}"))


# Row ⇄ domain


def product_of(row: ProductRow) -> Product:
    return Product(
        id=row.id,
        type=ProductType(row.type),
        plan=None if row.plan is None else ProductPlan.model_validate(row.plan),
        title=row.title,
        price_amount=row.price_amount,
        price_currency=row.price_currency,
        version=row.version,
    )


def terms_json(terms: EnrollmentTerms) -> dict[str, Any]:
    return terms.model_dump(mode="json")


def stored_terms_json(row: EnrollmentRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in EnrollmentTerms.model_fields}


def order_of(row: OrderRow) -> Order:
    return Order(
        id=row.id,
        number=row.number,
        enrollment_id=row.enrollment_id,
        period_start=row.period_start,
        period_end=row.period_end,
        status=OrderStatus(row.status),
        positions=[
            OrderPosition(
                product_id=position.product_id,
                original_product_id=position.original_product_id,
                quantity=position.quantity,
                configuration=position.configuration,
                unit_amount=position.unit_amount,
                amount=position.amount,
                description=position.description,
            )
            for position in row.positions
        ],
        context=row.context,
        created=row.created,
        currency=row.currency,
        total=row.total,
    )


def period_of(row: PeriodRow, order_status: str | None) -> Period:
    return Period(
        start=row.start,
        end=row.end,
        is_trial=row.is_trial,
        order_id=row.order_id,
        order_status=None if order_status is None else OrderStatus(order_status),
        billed_at=row.billed_at,
    )


def scheduled_of(row: EnrollmentRow) -> ScheduledAction | None:
    if row.scheduled_kind is None or row.scheduled_at is None:
        return None
    return ScheduledAction.model_validate(
        {"kind": row.scheduled_kind, "at": row.scheduled_at, "reason": row.scheduled_reason}
    )


def enrollment_of(row: EnrollmentRow, periods: list[Period], log: list[EnrollmentLogEntry]) -> Enrollment:
    return Enrollment.model_validate(
        {
            **stored_terms_json(row),
            "id": row.id,
            "number": row.number,
            "status": row.status,
            "pause_reason": row.pause_reason,
            "anchor": row.anchor,
            "expires": row.expires,
            "adapter_key": row.adapter_key,
            "scheduled": scheduled_of(row),
            "pending_change": row.pending_change,
            "plan_version": row.plan_version,
            "next_wake_up": row.next_wake_up,
            "created": row.created,
            "updated": row.updated,
            "periods": periods,
            "log": log,
        }
    )


# Queries inside a transaction


async def lock_enrollment(session: AsyncSession, enrollment_id: str) -> EnrollmentRow:
    """The enrollment's row, locked until the transaction ends; :class:`EnrollmentNotFound` when unknown.

    PostgreSQL ``FOR NO KEY UPDATE`` serialises writers of one enrollment without blocking inserts that only
    reference it; SQLite serialises every writer with ``BEGIN IMMEDIATE`` anyway.
    """
    row = await session.scalar(
        select(EnrollmentRow)
        .where(EnrollmentRow.id == enrollment_id)
        .with_for_update(key_share=True)
        # In a unit of work the row may have been read before: the locked row is the one to decide on.
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise EnrollmentNotFound(enrollment_id)
    return row


async def period_row(session: AsyncSession, enrollment_id: str, start: datetime) -> PeriodRow | None:
    return await session.scalar(
        select(PeriodRow).where(PeriodRow.enrollment_id == enrollment_id, PeriodRow.start == start)
    )


async def free_number(session: AsyncSession, column: InstrumentedAttribute[str], prefix: str, entity_id: str) -> str:
    """The first candidate number for ``entity_id`` that no row holds yet (one query for all candidates)."""
    candidates = list(candidate_numbers(prefix, entity_id))
    taken = set(await session.scalars(select(column).where(column.in_(candidates))))
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"all {len(candidates)} candidate numbers for {entity_id!r} are taken")


async def snapshots(session: AsyncSession, rows: Sequence[EnrollmentRow], *, with_log: bool) -> list[Enrollment]:
    """Snapshots of ``rows`` with two more queries in all (periods, log), not two per enrollment."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    periods: dict[str, list[Period]] = defaultdict(list)
    period_rows = await session.execute(
        select(PeriodRow, OrderRow.status)
        .outerjoin(OrderRow, OrderRow.id == PeriodRow.order_id)
        .where(PeriodRow.enrollment_id.in_(ids))
        .order_by(PeriodRow.enrollment_id, PeriodRow.start)
    )
    for stored, order_status in period_rows:
        periods[stored.enrollment_id].append(period_of(stored, order_status))
    logs: dict[str, list[EnrollmentLogEntry]] = defaultdict(list)
    if with_log:
        log_rows = await session.scalars(
            select(EnrollmentLogRow).where(EnrollmentLogRow.enrollment_id.in_(ids)).order_by(EnrollmentLogRow.id)
        )
        for log_row in log_rows:
            logs[log_row.enrollment_id].append(
                EnrollmentLogEntry(at=log_row.at, status=EnrollmentStatus(log_row.status), info=log_row.info)
            )
    return [enrollment_of(row, periods[row.id], logs[row.id]) for row in rows]


async def recent_snapshot(session: AsyncSession, row: EnrollmentRow) -> Enrollment:
    """One enrollment with the periods a period's work decides on, read in bounded time however old it is.

    Its latest :data:`~adapters.lifecycle.KEPT_PERIODS` periods, the first period of its current schedule
    (whether that is a trial shapes the schedule) and every open period (no order, not billed: billing in
    arrears needs them), each found through an index; no log.
    """
    latest = (
        select(PeriodRow.id)
        .where(PeriodRow.enrollment_id == row.id)
        .order_by(PeriodRow.start.desc())
        .limit(KEPT_PERIODS)
    )
    first_in_schedule = (
        select(PeriodRow.id)
        .where(PeriodRow.enrollment_id == row.id, PeriodRow.start >= row.anchor)
        .order_by(PeriodRow.start)
        .limit(1)
    )
    still_open = select(PeriodRow.id).where(
        PeriodRow.enrollment_id == row.id, PeriodRow.order_id.is_(None), PeriodRow.billed_at.is_(None)
    )
    wanted = union(latest.subquery().select(), first_in_schedule.subquery().select(), still_open).subquery()
    found = await session.execute(
        select(PeriodRow, OrderRow.status)
        .outerjoin(OrderRow, OrderRow.id == PeriodRow.order_id)
        .where(PeriodRow.id.in_(select(wanted.c.id)))
        .order_by(PeriodRow.start)
    )
    return enrollment_of(row, [period_of(stored, order_status) for stored, order_status in found], [])


async def snapshot(session: AsyncSession, row: EnrollmentRow) -> Enrollment:
    """The full snapshot of one enrollment: terms, lifecycle, periods by start and the log."""
    (found,) = await snapshots(session, [row], with_log=True)
    return found
