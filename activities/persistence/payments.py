"""Dunning steps and payments: each one a log entry and its events, written with the state it changes.

Both run under the enrollment's lock and are idempotent: a step that ran (or was skipped) is returned as it
is, and a payment is recorded once per key (the workflow's command id). The schedules themselves are started
and ended by :mod:`activities.persistence.dunning_rows`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.persistence.billing import change_order_status
from activities.persistence.dunning_rows import dunning_of, open_dunning, running_dunning_row, store_dunning
from activities.persistence.errors import OrderNotFound
from activities.persistence.events import NewEvent, record_events
from activities.persistence.models import EnrollmentLogRow, EnrollmentRow, OrderRow, PaymentRow
from activities.persistence.rows import lock_enrollment, order_of
from activities.persistence.transactions import Transactions, require_aware
from adapters.domain import OrderStatus
from adapters.dunning import (
    OrderDunning,
    PaymentRequest,
    PaymentResult,
    StepStatus,
    describe_step,
    format_amount,
    payment_problem,
)
from adapters.dunning_policy import DunningAction
from adapters.events import (
    DunningPaymentRetryDue,
    DunningReminderDue,
    DunningStepTaken,
    EventType,
    PaymentFailed,
    PaymentReceived,
)


class DunningRepository:
    """Orders' dunning schedules and payments; each method is one transaction (or joins the unit of work it runs in)."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def open_for(self, enrollment_id: str) -> list[OrderDunning]:
        """The enrollment's running schedules, oldest due first."""
        async with self._transactions.read() as session:
            return await open_dunning(session, enrollment_id)

    async def run_step(self, enrollment_id: str, order_id: str, index: int, *, now: datetime) -> OrderDunning | None:
        """Run step ``index`` of the order's schedule: its log entry, ``dunning.step`` and, for ``remind`` and
        ``retry_payment``, the event the mail or payment service acts on. Returns the schedule after it; None when
        the schedule has ended (the order was paid meanwhile). A step that ran or was skipped changes nothing.
        """
        require_aware("now", now)

        async def run(session: AsyncSession) -> OrderDunning | None:
            enrollment = await lock_enrollment(session, enrollment_id)
            order_row = await _order_of_enrollment(session, enrollment_id, order_id)
            row = await running_dunning_row(session, order_id)
            if row is None:
                return None
            dunning = dunning_of(row, order_row.number)
            if not 0 <= index < len(dunning.steps):
                raise ValueError(f"order {order_row.number} has no dunning step {index}")
            step = dunning.steps[index]
            if step.status is not StepStatus.PENDING:
                return dunning
            done = dunning.with_step_done(index, now)
            store_dunning(row, done, now)
            key = f"dunning:{order_id}:{index}"
            _log(session, enrollment, key, now, describe_step(dunning, step))
            data = DunningStepTaken(
                order_id=order_id,
                order_number=order_row.number,
                index=index,
                action=step.action,
                scheduled_at=step.at,
                open_balance=dunning.open_balance,
                currency=dunning.currency,
            ).model_dump()
            events = [NewEvent(EventType.DUNNING_STEP, key, now, DunningStepTaken.model_validate(data))]
            if step.action is DunningAction.REMIND:
                events.append(
                    NewEvent(EventType.DUNNING_REMINDER_DUE, key, now, DunningReminderDue.model_validate(data))
                )
            elif step.action is DunningAction.RETRY_PAYMENT:
                retry = DunningPaymentRetryDue.model_validate(data)
                events.append(NewEvent(EventType.DUNNING_PAYMENT_RETRY_DUE, key, now, retry))
            await session.flush()
            await record_events(session, enrollment_id, *events)
            return done

        return await self._transactions.write(run)

    async def record_payment(self, request: PaymentRequest) -> PaymentResult:
        """Record a payment received or failed for an order of the enrollment, once per ``request.key``.

        A payment lowers the open balance; paying all of it makes the order CONFIRMED, which ends its dunning. A
        hard decline skips the schedule's remaining ``retry_payment`` steps; a soft one changes no step. Raises
        :class:`OrderNotFound` for an order that is not the enrollment's and ``ValueError`` for a payment above
        the open balance or for an order that has nothing open; nothing is written then.
        """
        require_aware("now", request.now)

        async def record(session: AsyncSession) -> PaymentResult:
            enrollment = await lock_enrollment(session, request.enrollment_id)
            order_row = await _order_of_enrollment(session, request.enrollment_id, request.order_id)
            row = await running_dunning_row(session, request.order_id)
            dunning = None if row is None else dunning_of(row, order_row.number)
            order = order_of(order_row)
            recorded = await session.scalar(
                select(PaymentRow.id).where(PaymentRow.order_id == order.id, PaymentRow.key == request.key)
            )
            if recorded is not None:
                return PaymentResult(order=order, dunning=dunning, info="payment recorded before")
            payment = PaymentRow(
                order_id=order.id,
                enrollment_id=request.enrollment_id,
                key=request.key,
                amount=request.received,
                decline=None if request.failed is None else request.failed.value,
                code=request.code,
                at=request.now,
            )
            key = f"payment:{request.key}"
            left: int | None = None
            if request.received is not None:
                balance = await _open_balance(session, order_row)
                problem = payment_problem(order, balance, request.received)
                if problem is not None:
                    raise ValueError(problem)
                assert balance is not None
                left = balance - request.received
                info = (
                    f"payment of {format_amount(request.received, order_row.currency)} for order {order.number}: "
                    f"{format_amount(left, order_row.currency)} open"
                )
                received = PaymentReceived(
                    order_id=order.id,
                    order_number=order.number,
                    amount=request.received,
                    currency=order_row.currency,
                    open_balance=left,
                )
                event = NewEvent(EventType.ORDER_PAYMENT_RECEIVED, key, request.now, received)
                if row is not None and dunning is not None:
                    dunning = dunning.model_copy(update={"open_balance": left})
                    store_dunning(row, dunning, request.now)
            else:
                assert request.failed is not None
                if order.status is not OrderStatus.PENDING:
                    raise ValueError(f"order {order.number} ({order.id}) is {order.status}: it has nothing open to pay")
                code = f", code {request.code}" if request.code else ""
                info = f"payment for order {order.number} declined ({request.failed}{code})"
                if request.failed == "hard" and row is not None and dunning is not None:
                    dunning = dunning.after_hard_decline()
                    store_dunning(row, dunning, request.now)
                    info += ": its remaining retry_payment steps are skipped"
                failed = PaymentFailed(
                    order_id=order.id, order_number=order.number, decline=request.failed, code=request.code
                )
                event = NewEvent(EventType.ORDER_PAYMENT_FAILED, key, request.now, failed)
            session.add(payment)
            _log(session, enrollment, key, request.now, info)
            await session.flush()
            await record_events(session, request.enrollment_id, event)
            if request.received is not None and left == 0:  # paid in full: the order is paid, its dunning ends
                order = await change_order_status(
                    session, request.enrollment_id, order_row, OrderStatus.CONFIRMED, request.now
                )
                dunning = None
            return PaymentResult(order=order, dunning=dunning, info=info)

        return await self._transactions.write(record)

    async def open_balance(self, order_id: str) -> int | None:
        """What is left to pay of the order (None: it has no amount); :class:`OrderNotFound` when unknown."""
        async with self._transactions.read() as session:
            row = await session.get(OrderRow, order_id)
            if row is None:
                raise OrderNotFound(order_id)
            return await _open_balance(session, row)


def _log(session: AsyncSession, enrollment: EnrollmentRow, key: str, at: datetime, info: str) -> None:
    """The enrollment's log entry for a step or a payment, under its key, with the status it has."""
    session.add(
        EnrollmentLogRow(enrollment_id=enrollment.id, event_key=key, at=at, status=enrollment.status, info=info)
    )


async def _order_of_enrollment(session: AsyncSession, enrollment_id: str, order_id: str) -> OrderRow:
    row = await session.get(OrderRow, order_id, populate_existing=True)
    if row is None:
        raise OrderNotFound(order_id)
    if row.enrollment_id != enrollment_id:
        raise ValueError(f"order {row.number} ({order_id}) is not an order of enrollment {enrollment_id!r}")
    return row


async def _open_balance(session: AsyncSession, row: OrderRow) -> int | None:
    if row.total is None:
        return None
    paid = await session.scalar(
        select(func.coalesce(func.sum(PaymentRow.amount), 0)).where(PaymentRow.order_id == row.id)
    )
    return int(row.total) - int(paid or 0)
