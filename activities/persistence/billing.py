"""Periods and the orders that bill them, written together: one period and its order per transaction.

Keyed by ``(enrollment_id, period start)``: a retried write finds the period (and order) it made and writes
nothing twice. Writes lock the enrollment's row, so checks such as "no overlapping period" see every
committed period.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.dunning_rows import end_dunning, start_dunning_row
from activities.persistence.errors import OrderNotFound
from activities.persistence.events import NewEvent, record_events
from activities.persistence.models import OrderPositionRow, OrderRow, PeriodRow, UsageRecordRow
from activities.persistence.numbers import ORDER_PREFIX
from activities.persistence.rows import free_number, lock_enrollment, order_id_for, order_of, period_of, period_row
from activities.persistence.transactions import Transactions, require_aware
from adapters.base import EnrollmentServices
from adapters.domain import (
    EnrollmentStatus,
    Order,
    OrderConfiguration,
    OrderStatus,
    Period,
    PeriodWindow,
    isoformat_utc,
    order_status_change_problem,
    service_end,
)
from adapters.dunning import ends_dunning
from adapters.dunning_policy import DunningPolicy
from adapters.events import (
    EventPeriod,
    EventType,
    OrderCreated,
    OrderStatusChanged,
    PeriodStarted,
    UsageBilled,
    time_key,
)
from adapters.pricing import order_total
from adapters.rules import describe_window, new_period_problem

MakeOrder = Callable[[PeriodWindow, EnrollmentServices], Awaitable[OrderConfiguration | None]]
"""Makes the order of a period billed in arrears, reading what it needs through the given services."""


class SessionServices:
    """The adapter services (:class:`adapters.base.EnrollmentServices`) on the caller's open transaction.

    Billing in arrears asks the adapter for the order while the enrollment's row is locked; reading the usage
    through this same session (not a second pooled connection) sees what the lock protects and cannot wait
    for a connection the lock holder itself keeps busy.
    """

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find_order(self, order_id: str) -> Order | None:
        row = await self._session.get(OrderRow, order_id)
        return None if row is None else order_of(row)

    async def usage_units(self, enrollment_id: str, start: datetime, end: datetime) -> int:
        return await usage_total(self._session, enrollment_id, start, end)


async def usage_total(session: AsyncSession, enrollment_id: str, start: datetime, end: datetime) -> int:
    """Units used by ``enrollment_id`` with ``start <= at < end``."""
    require_aware("start", start)
    require_aware("end", end)
    total = await session.scalar(
        select(func.coalesce(func.sum(UsageRecordRow.units), 0)).where(
            UsageRecordRow.enrollment_id == enrollment_id,
            UsageRecordRow.at >= start,
            UsageRecordRow.at < end,
        )
    )
    return int(total or 0)


class BillingRepository:
    """Periods and orders; each method is one transaction (or joins the unit of work it runs in)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def add_period(
        self,
        enrollment_id: str,
        period: PeriodWindow,
        order: OrderConfiguration | None,
        *,
        now: datetime,
        order_status: OrderStatus = OrderStatus.PENDING,
        dunning: DunningPolicy | None = None,
    ) -> tuple[Period, Order | None]:
        """Store ``period`` and, if given, the order that bills it (with ``order_status``), in one transaction.

        An unpaid order on a ``dunning`` policy gets its schedule, due at the period's start, in the same
        transaction.

        Keyed by ``(enrollment_id, period.start)``: when that period exists it is returned with its order
        (possibly None) and nothing is created. Raises ``ValueError`` when ``period`` overlaps another period
        of the enrollment (a different end for the same start counts), when the order is for another window,
        or when the enrollment is TERMINATED; :class:`EnrollmentNotFound` for an unknown enrollment.
        """
        require_aware("now", now)
        if order is not None:
            _check_order_window(enrollment_id, period, order)

        async def add(session: AsyncSession) -> tuple[Period, Order | None]:
            enrollment = await lock_enrollment(session, enrollment_id)
            # The latest period starting before this one ends: this one itself (made already), one it would
            # overlap, or, as stored periods never overlap, proof that none does (one index row, however old).
            latest_before = await session.scalar(
                select(PeriodRow)
                .where(PeriodRow.enrollment_id == enrollment_id, PeriodRow.start < period.end)
                .order_by(PeriodRow.start.desc())
                .limit(1)
            )
            overlapping = latest_before if latest_before is not None and latest_before.end > period.start else None
            if overlapping is not None and overlapping.start == period.start:
                if overlapping.end != period.end or overlapping.is_trial != period.is_trial:
                    raise ValueError(
                        f"period {_window(period)} of enrollment {enrollment_id!r} conflicts with the stored period "
                        f"{describe_window(overlapping.start, overlapping.end)} (trial={overlapping.is_trial})"
                    )
                order_row = None if overlapping.order_id is None else await session.get(OrderRow, overlapping.order_id)
                return _with_order(overlapping, order_row)
            problem = new_period_problem(enrollment_id, EnrollmentStatus(enrollment.status))
            if problem is not None:
                raise ValueError(problem)
            if overlapping is not None:
                raise ValueError(
                    f"period {_window(period)} overlaps period {describe_window(overlapping.start, overlapping.end)} "
                    f"of enrollment {enrollment_id!r}"
                )
            order_row = (
                None
                if order is None
                else await insert_order(session, enrollment_id, period, order, now, status=order_status)
            )
            stored = PeriodRow(
                enrollment_id=enrollment_id,
                start=period.start,
                end=period.end,
                is_trial=period.is_trial,
                order_id=None if order_row is None else order_row.id,
            )
            session.add(stored)
            await session.flush()
            if order_row is not None and dunning is not None and order_status is OrderStatus.PENDING:
                await _start_dunning(session, enrollment_id, dunning, order_row, period.start, now)
            started = PeriodStarted(
                start=period.start, end=period.end, is_trial=period.is_trial, order_id=stored.order_id
            )
            events = [] if order_row is None else [order_created_event(order_row, period.start)]
            events.append(NewEvent(EventType.ENROLLMENT_PERIOD_STARTED, time_key(period.start), period.start, started))
            await record_events(session, enrollment_id, *events)
            # Flushed at commit, with whatever else this unit of work changes on the row (its next wake-up).
            enrollment.updated = now
            return _with_order(stored, order_row)

        return await self._transactions.write(add)

    async def bill_period(
        self,
        enrollment_id: str,
        period_start: datetime,
        make_order: MakeOrder,
        *,
        now: datetime,
        dunning: DunningPolicy | None = None,
    ) -> tuple[Period, Order | None]:
        """Close the period starting at ``period_start`` for billing in arrears, with the order ``make_order`` makes.

        ``make_order`` gets the period's window and services on this transaction, and returns the order (None:
        nothing to bill, e.g. no usage). The order, if any, and ``billed_at = now`` are stored in one
        transaction. While ``make_order`` runs, the enrollment's row stays locked, so no usage of the enrollment
        can be recorded in between (:meth:`UsageRepository.record` takes the same lock): every unit is either
        in the total ``make_order`` read or refused as late afterwards. Idempotent: a period that is billed
        already (or has an order) is returned as it is and ``make_order`` is not called. Works on TERMINATED
        enrollments (their last period is billed after they end). Raises ``ValueError`` when there is no such
        period or the order is for another window, :class:`EnrollmentNotFound` for an unknown enrollment. An
        order on a ``dunning`` policy gets its schedule, due now (the billing time), in the same transaction.
        """
        require_aware("period_start", period_start)
        require_aware("now", now)

        async def bill(session: AsyncSession) -> tuple[Period, Order | None]:
            enrollment = await lock_enrollment(session, enrollment_id)
            stored = await period_row(session, enrollment_id, period_start)
            if stored is None:
                missing = f"enrollment {enrollment_id!r} has no period starting at {isoformat_utc(period_start)}"
                raise ValueError(missing)
            if stored.billed_at is not None or stored.order_id is not None:
                order_row = None if stored.order_id is None else await session.get(OrderRow, stored.order_id)
                return _with_order(stored, order_row)
            window = PeriodWindow(start=stored.start, end=stored.end, is_trial=stored.is_trial)
            order = await make_order(window, SessionServices(session))
            order_row = None
            if order is not None:
                _check_order_window(enrollment_id, window, order)
                order_row = await insert_order(session, enrollment_id, window, order, now)
                stored.order_id = order_row.id
                if dunning is not None and enrollment.status != EnrollmentStatus.TERMINATED.value:
                    await _start_dunning(session, enrollment_id, dunning, order_row, now, now)
            stored.billed_at = now
            enrollment.updated = now
            await session.flush()
            # Business time: when the period's service ended (its end, or the expiry of an enrollment that ended early).
            ended = service_end(stored.start, stored.end, enrollment.expires)
            billed = UsageBilled(
                period=EventPeriod(start=stored.start, end=stored.end),
                units=await usage_total(session, enrollment_id, stored.start, ended),
                order_id=stored.order_id,
            )
            events = [] if order_row is None else [order_created_event(order_row, ended)]
            events.append(NewEvent(EventType.USAGE_BILLED, time_key(stored.start), ended, billed))
            await record_events(session, enrollment_id, *events)
            return _with_order(stored, order_row)

        return await self._transactions.write(bill)

    async def set_order_status(self, order_id: str, status: OrderStatus, *, now: datetime) -> Order:
        """Record the order's new status (e.g. paid), if the order allows it.

        :class:`OrderNotFound` when it does not exist; ``ValueError`` for a change the order's status does
        not allow (:func:`adapters.domain.order_status_change_problem`); the same status again changes nothing.
        """
        require_aware("now", now)

        async def set_status(session: AsyncSession) -> Order:
            enrollment_id = await session.scalar(select(OrderRow.enrollment_id).where(OrderRow.id == order_id))
            if enrollment_id is None:
                raise OrderNotFound(order_id)
            # The enrollment's lock first, as every writer of its rows and events takes it.
            await lock_enrollment(session, enrollment_id)
            row = await session.get(OrderRow, order_id, with_for_update=True, populate_existing=True)
            if row is None:
                raise OrderNotFound(order_id)
            return await change_order_status(session, enrollment_id, row, status, now)

        return await self._transactions.write(set_status)

    async def get_order(self, order_id: str) -> Order | None:
        async with self._transactions.read() as session:
            row = await session.get(OrderRow, order_id)
            return None if row is None else order_of(row)

    async def order_id_for_number(self, number: str) -> str | None:
        """The id of the order with ``number`` (as stored, e.g. ``O-B0730H0Z``), or None."""
        async with self._transactions.read() as session:
            found: str | None = await session.scalar(select(OrderRow.id).where(OrderRow.number == number))
            return found

    async def list_orders(self, enrollment_id: str) -> list[Order]:
        """The enrollment's orders in creation order (by period start)."""
        async with self._transactions.read() as session:
            rows = await session.scalars(
                select(OrderRow).where(OrderRow.enrollment_id == enrollment_id).order_by(OrderRow.period_start)
            )
            return [order_of(row) for row in rows]


async def change_order_status(
    session: AsyncSession, enrollment_id: str, row: OrderRow, status: OrderStatus, now: datetime
) -> Order:
    """Set the order's status in the caller's transaction (it holds the enrollment's lock), with its event.

    ``ValueError`` for a change the order's status does not allow; the same status again changes nothing. An
    order that is paid or rejected is no longer chased: its dunning ends.
    """
    order = order_of(row)
    problem = order_status_change_problem(order, status)
    if problem is not None:
        raise ValueError(problem)
    if row.status != status.value:
        row.status = status.value
        row.updated = now
        changed = OrderStatusChanged(id=order.id, number=order.number, from_=order.status, to=status)
        key = f"{order.id}:{status.value}"  # each status is reached once: the transitions form no cycle
        await session.flush()
        await record_events(session, enrollment_id, NewEvent(EventType.ORDER_STATUS_CHANGED, key, now, changed))
        if ends_dunning(status):
            await end_dunning(session, order.id, status.value.lower(), now)
    return order.model_copy(update={"status": status})


async def _start_dunning(
    session: AsyncSession, enrollment_id: str, policy: DunningPolicy, row: OrderRow, due_at: datetime, now: datetime
) -> None:
    await start_dunning_row(
        session, enrollment_id, policy, order_of(row), due_at, open_balance=row.total, currency=row.currency, now=now
    )


async def insert_order(
    session: AsyncSession,
    enrollment_id: str,
    period: PeriodWindow,
    order: OrderConfiguration,
    now: datetime,
    *,
    status: OrderStatus = OrderStatus.PENDING,
) -> OrderRow:
    order_id = order_id_for(enrollment_id, period.start)
    payload = order.model_dump(mode="json")
    row = OrderRow(
        id=order_id,
        number=await free_number(session, OrderRow.number, ORDER_PREFIX, order_id),
        enrollment_id=enrollment_id,
        period_start=period.start,
        period_end=period.end,
        status=status.value,
        context=payload["order_context"],
        created=now,
        updated=now,
        currency=order.currency,
        total=order_total(order.order_position_templates),
        positions=[
            OrderPositionRow(
                position=index,
                product_id=position["product_id"],
                original_product_id=position["original_product_id"],
                quantity=position["quantity"],
                configuration=position["configuration"],
                unit_amount=position["unit_amount"],
                amount=position["amount"],
                description=position["description"],
            )
            for index, position in enumerate(payload["order_position_templates"])
        ],
    )
    session.add(row)
    await session.flush()
    return row


def order_created_event(row: OrderRow, occurred_at: datetime) -> NewEvent:
    order = order_of(row)
    created = OrderCreated(
        id=order.id,
        number=order.number,
        status=order.status,
        period=EventPeriod(start=row.period_start, end=row.period_end),
        positions=order.positions,
        context=order.context,
        currency=order.currency,
        total=order.total,
    )
    return NewEvent(EventType.ORDER_CREATED, order.id, occurred_at, created)


def _check_order_window(enrollment_id: str, period: PeriodWindow, order: OrderConfiguration) -> None:
    if order.period.start != period.start or order.period.end != period.end:
        raise ValueError(
            f"order for {_window(order.period)} does not bill period {_window(period)} of enrollment {enrollment_id!r}"
        )


def _window(period: PeriodWindow) -> str:
    return describe_window(period.start, period.end)


def _with_order(row: PeriodRow, order_row: OrderRow | None) -> tuple[Period, Order | None]:
    period = period_of(row, None if order_row is None else order_row.status)
    return period, None if order_row is None else order_of(order_row)
