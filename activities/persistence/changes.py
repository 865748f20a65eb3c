"""Changes of plan, quantity and terms: what a change is decided on, and the change stored in one transaction.

:meth:`ChangeRepository.inputs` reads what :func:`adapters.changes.plan_change` needs; :meth:`ChangeRepository.
apply` stores its outcome — the enrollment's product, quantity, anchor and terms, the period that ends early,
the period and order that start, the log line and the events — keyed by the change's event key, so a retry
finds the change made and writes nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.billing import insert_order, order_created_event, usage_total
from activities.persistence.errors import EnrollmentNotFound
from activities.persistence.events import NewEvent, record_events
from activities.persistence.models import EnrollmentLogRow, EnrollmentRow, OrderRow, PeriodRow
from activities.persistence.products import product_at
from activities.persistence.rows import (
    lock_enrollment,
    order_id_for,
    order_of,
    period_row,
    recent_snapshot,
)
from activities.persistence.transactions import Transactions, require_aware
from adapters.calendar import CalendarRangeError
from adapters.changes import ChangeInputs, ChangeOutcome, ChangeRefused, ChangeResult, plan_change
from adapters.domain import EnrollmentStatus, Order
from adapters.events import (
    ChangeScheduled,
    EnrollmentChanged,
    EventPeriod,
    EventType,
    PeriodStarted,
    UsageBilled,
    time_key,
)
from adapters.lifecycle import ChangeCommand, ErrorType
from adapters.metered import USAGE_UNITS
from adapters.rules import stored_plan_problem


class ChangeRepository:
    """Changes of enrollments; each method is one transaction (or joins the unit of work it runs in)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def decide(self, enrollment_id: str, command: ChangeCommand, at: datetime) -> ChangeOutcome:
        """What ``command`` at ``at`` would do, from the stored state (a preview; the change activity stores it).

        Raises :class:`~adapters.changes.ChangeRefused` for a change the enrollment cannot take and
        :class:`EnrollmentNotFound` for an unknown enrollment.
        """
        try:
            inputs = await self.inputs(enrollment_id, command.product_id, at, command.plan_version)
        except ValidationError as error:  # a stored plan written by another tool
            raise ChangeRefused(*stored_plan_problem(command.product_id or enrollment_id, error)) from None
        try:
            return plan_change(inputs, command, at)
        except (CalendarRangeError, OverflowError) as error:
            message = f"enrollment {enrollment_id!r}: the change cannot be made: {error}"
            raise ChangeRefused(ErrorType.INVALID_CHANGE, message) from None

    async def made(self, enrollment_id: str, event_key: str, at: datetime) -> ChangeResult | None:
        """The result of the change stored under ``event_key`` (a retry), or None when it was not made."""
        async with self._transactions.read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            if row is None or not await _logged(session, enrollment_id, event_key):
                return None
            return await _result(session, row, order_id_for(enrollment_id, at))

    async def inputs(
        self, enrollment_id: str, product_id: str | None, at: datetime, plan_version: int | None = None
    ) -> ChangeInputs:
        """What a change to ``product_id`` (None: the same product and plan version) at ``at`` is decided on.

        A product named moves the enrollment to its plan version ``plan_version`` (None: the latest).

        :class:`EnrollmentNotFound` for an unknown enrollment; an unknown new product comes back as None; a
        stored plan that does not validate raises pydantic's ``ValidationError``.
        """
        require_aware("at", at)
        async with self._transactions.read() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
            if row is None:
                raise EnrollmentNotFound(enrollment_id)
            enrollment = await recent_snapshot(session, row)
            product = await product_at(session, enrollment.product_id, enrollment.plan_version)
            if product is None:
                raise ValueError(f"enrollment {enrollment_id!r}: its product {enrollment.product_id!r} is gone")
            new_product = product if product_id is None else await product_at(session, product_id, plan_version)
            current = enrollment.period_at(at)
            orders: list[Order] = []
            if current is not None:
                rows = await session.scalars(
                    select(OrderRow)
                    .where(
                        OrderRow.enrollment_id == enrollment_id,
                        OrderRow.period_start >= current.start,
                        OrderRow.period_start < current.end,
                    )
                    .order_by(OrderRow.period_start)
                )
                orders = [order_of(order_row) for order_row in rows]
            units = 0
            if current is not None and product.plan is not None and product.plan.usage_calculation_type == "METERED":
                units = await usage_total(session, enrollment_id, current.start, at)
            return ChangeInputs(
                enrollment=enrollment, product=product, new_product=new_product, orders=orders, usage_units=units
            )

    async def apply(self, enrollment_id: str, outcome: ChangeOutcome, event_key: str, *, now: datetime) -> ChangeResult:
        """Store ``outcome`` (a change taking effect at ``outcome.at``) under ``event_key``; idempotent by that key.

        A change left pending at period end is stored as such (terms given with it apply at once). Raises
        ``ValueError`` when the enrollment is TERMINATED or a period it would write exists with another end.
        """
        require_aware("now", now)

        async def apply(session: AsyncSession) -> ChangeResult:
            row = await lock_enrollment(session, enrollment_id)
            if await _logged(session, enrollment_id, event_key):
                return await _result(session, row, order_id_for(row.id, outcome.at))
            if row.status == EnrollmentStatus.TERMINATED.value:
                raise ValueError(f"enrollment {enrollment_id!r} is TERMINATED; it accepts no change")
            if outcome.terms is not None:
                for name, value in outcome.terms.model_dump(mode="json", exclude_none=True).items():
                    setattr(row, name, value)
            row.updated = now
            session.add(
                EnrollmentLogRow(
                    enrollment_id=enrollment_id,
                    event_key=event_key,
                    at=outcome.at,
                    status=row.status,
                    info=outcome.info,
                )
            )
            if outcome.pending is not None:
                row.pending_change = outcome.pending.model_dump(mode="json")
                await session.flush()
                scheduled = ChangeScheduled(pending=outcome.pending)
                event = NewEvent(EventType.ENROLLMENT_CHANGE_SCHEDULED, event_key, outcome.at, scheduled)
                await record_events(session, enrollment_id, event)
                return await _result(session, row, None)
            order_id, events = await _switch(session, row, outcome)
            changed = EnrollmentChanged(
                from_product_id=outcome.from_product_id,
                product_id=outcome.product_id,
                from_quantity=outcome.from_quantity,
                quantity=outcome.quantity,
                terms=[] if outcome.terms is None else list(outcome.terms.given()),
                anchor=outcome.anchor,
                order_id=order_id,
                info=outcome.info,
            )
            events.insert(0, NewEvent(EventType.ENROLLMENT_CHANGED, event_key, outcome.at, changed))
            await session.flush()
            await record_events(session, enrollment_id, *events)
            return await _result(session, row, order_id)

        return await self._transactions.write(apply)

    async def withdraw(self, enrollment_id: str, event_key: str, *, at: datetime, info: str) -> ChangeResult:
        """Withdraw the change pending at period end, logged under ``event_key`` (idempotent)."""
        require_aware("at", at)

        async def withdraw(session: AsyncSession) -> ChangeResult:
            row = await lock_enrollment(session, enrollment_id)
            if not await _logged(session, enrollment_id, event_key):
                row.pending_change = None
                session.add(
                    EnrollmentLogRow(
                        enrollment_id=enrollment_id, event_key=event_key, at=at, status=row.status, info=info
                    )
                )
                await session.flush()
                scheduled = ChangeScheduled(pending=None)
                await record_events(
                    session, enrollment_id, NewEvent(EventType.ENROLLMENT_CHANGE_SCHEDULED, event_key, at, scheduled)
                )
            return await _result(session, row, None)

        return await self._transactions.write(withdraw)


async def _switch(
    session: AsyncSession, row: EnrollmentRow, outcome: ChangeOutcome
) -> tuple[str | None, list[NewEvent]]:
    """Put the enrollment on its new product and quantity: its anchor, the period ending early, the period and
    order starting; returns the order's id and the events to record."""
    enrollment_id = row.id
    row.product_id, row.quantity, row.plan_version = outcome.product_id, outcome.quantity, outcome.plan_version
    row.currency_code = outcome.currency_code
    row.pending_change = None  # a change now replaces one pending at period end
    if outcome.anchor is not None:
        row.anchor = outcome.anchor
    events: list[NewEvent] = []
    ended = None if outcome.ended is None else await period_row(session, enrollment_id, outcome.ended.start)
    if outcome.ended is not None:
        if ended is None:
            raise ValueError(f"enrollment {enrollment_id!r} has no period starting {outcome.ended.start}")
        ended.end = outcome.ended.end
    order_row = None
    if outcome.order is not None:
        order_row = await insert_order(session, enrollment_id, outcome.order.period, outcome.order, outcome.at)
        events.append(order_created_event(order_row, outcome.at))
    order_id = period_order_id = None if order_row is None else order_row.id
    if ended is not None and outcome.usage_billed:
        # Usage to the change is billed now; a unit recorded since the change was decided means deciding again.
        units = await usage_total(session, enrollment_id, ended.start, ended.end)
        if units != int(outcome.order.order_context.get(USAGE_UNITS, 0) if outcome.order is not None else 0):
            raise RuntimeError(f"enrollment {enrollment_id!r}: usage was recorded while the change was decided")
        ended.billed_at, ended.order_id = outcome.at, order_id
        billed = UsageBilled(period=EventPeriod(start=ended.start, end=ended.end), units=units, order_id=order_id)
        events.append(NewEvent(EventType.USAGE_BILLED, time_key(ended.start), ended.end, billed))
        period_order_id = None  # it bills the period that ended, not the one that starts
    if outcome.period is not None:
        period = outcome.period
        if await period_row(session, enrollment_id, period.start) is not None:
            raise ValueError(f"enrollment {enrollment_id!r} has a period starting {period.start} already")
        session.add(
            PeriodRow(
                enrollment_id=enrollment_id,
                start=period.start,
                end=period.end,
                is_trial=False,
                order_id=period_order_id,
            )
        )
        started = PeriodStarted(start=period.start, end=period.end, is_trial=False, order_id=period_order_id)
        events.append(NewEvent(EventType.ENROLLMENT_PERIOD_STARTED, time_key(period.start), period.start, started))
    return order_id, events


async def _logged(session: AsyncSession, enrollment_id: str, event_key: str) -> bool:
    found = await session.scalar(
        select(EnrollmentLogRow.id).where(
            EnrollmentLogRow.enrollment_id == enrollment_id, EnrollmentLogRow.event_key == event_key
        )
    )
    return found is not None


async def _result(session: AsyncSession, row: EnrollmentRow, order_id: str | None) -> ChangeResult:
    order_row = None if order_id is None else await session.get(OrderRow, order_id)
    return ChangeResult(
        enrollment=await recent_snapshot(session, row), order=None if order_row is None else order_of(order_row)
    )
