"""Which command an enrollment accepts in which state: one pure rule set for update validators and the loop.

``rejection(...)`` returns None when the command is accepted, else the reason, phrased for the caller. Each
command kind has one rule function in :data:`_RULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from adapters.domain import (
        Enrollment,
        EnrollmentStatus,
        Order,
        OrderStatus,
        PauseReason,
        ScheduledAction,
        describe_status,
        isoformat_utc,
        order_status_change_problem,
    )
    from adapters.dunning import OrderDunning, payment_problem
    from adapters.lifecycle import (
        ActivateCommand,
        ChangeCommand,
        ChangeWhen,
        Command,
        OrderStatusCommand,
        PauseCommand,
        PaymentCommand,
        ResumeCommand,
        TerminateCommand,
    )


@dataclass(frozen=True)
class _Situation:
    enrollment: Enrollment
    scheduled: ScheduledAction | None
    orders: list[Order]
    all_orders_known: bool
    dunning: list[OrderDunning]
    at: datetime

    @property
    def name(self) -> str:
        return f"enrollment {self.enrollment.id!r}"

    @property
    def status(self) -> EnrollmentStatus:
        return self.enrollment.status


def _pause(situation: _Situation, command: PauseCommand) -> str | None:
    name, status, scheduled = situation.name, situation.status, situation.scheduled
    if status is EnrollmentStatus.INITIAL:
        return f"cannot pause {name}: it has not started yet (INITIAL); terminate it instead"
    if status is EnrollmentStatus.PAUSED and situation.enrollment.pause_reason is PauseReason.MANUAL:
        return f"{name} is already PAUSED (manual)"
    if scheduled is not None and scheduled.kind == "terminate":
        return f"{name} terminates at period end ({isoformat_utc(scheduled.at)}); resume first to withdraw that"
    if command.at_period_end and scheduled is not None and scheduled.kind == "pause":
        return f"{name} already pauses at period end ({isoformat_utc(scheduled.at)})"
    return None


def _resume(situation: _Situation, command: ResumeCommand) -> str | None:
    name, status = situation.name, situation.status
    if status is EnrollmentStatus.INITIAL:
        return f"cannot resume {name}: it has not started yet (INITIAL)"
    if status is EnrollmentStatus.ACTIVE and situation.scheduled is None:
        return f"{name} is already ACTIVE and has nothing scheduled to withdraw"
    if status is EnrollmentStatus.PAUSED and situation.enrollment.pause_reason is PauseReason.OVERDUE:
        return f"{name} is PAUSED because payment is overdue; it resumes when its order is paid"
    return None


def _activate(situation: _Situation, command: ActivateCommand) -> str | None:
    if situation.status is not EnrollmentStatus.INITIAL:
        enrollment = situation.enrollment
        started = describe_status(enrollment.status, enrollment.pause_reason)
        return f"cannot activate {situation.name}: it has already started ({started})"
    return None


def _terminate(situation: _Situation, command: TerminateCommand) -> str | None:
    scheduled = situation.scheduled
    if command.at_period_end and scheduled is not None and scheduled.kind == "terminate":
        return f"{situation.name} already terminates at period end ({isoformat_utc(scheduled.at)})"
    return None


def _order_status(situation: _Situation, command: OrderStatusCommand) -> str | None:
    order = next((order for order in situation.orders if order.id == command.order_id), None)
    if order is None:
        return f"order {command.order_id!r} is not an order of {situation.name}" if situation.all_orders_known else None
    return order_status_change_problem(order, command.status)


def _payment(situation: _Situation, command: PaymentCommand) -> str | None:
    order = next((order for order in situation.orders if order.id == command.order_id), None)
    if order is None:
        return f"order {command.order_id!r} is not an order of {situation.name}" if situation.all_orders_known else None
    if order.status is not OrderStatus.PENDING:
        return f"order {order.number} ({order.id}) is {order.status}: it has nothing open to pay"
    if command.received is None:
        return None
    running = next((entry for entry in situation.dunning if entry.order_id == order.id), None)
    if running is not None:
        return payment_problem(order, running.open_balance, command.received)
    # Without a schedule the store knows what was paid already; the workflow checks what it can.
    return payment_problem(order, order.total, command.received)


def _change(situation: _Situation, command: ChangeCommand) -> str | None:
    pending, scheduled = situation.enrollment.pending_change, situation.scheduled
    if command.cancel and pending is None:
        return f"{situation.name} has no change pending at period end to withdraw"
    terminating = scheduled is not None and scheduled.kind == "terminate"
    if command.when is ChangeWhen.PERIOD_END and command.plan_changes and terminating and scheduled is not None:
        return (
            f"{situation.name} terminates at period end ({isoformat_utc(scheduled.at)}): a change then would "
            "never take effect; resume first to withdraw the termination"
        )
    return None


def _effective_at_problem(situation: _Situation, command: Command) -> str | None:
    """Why the instant ``command`` names to take effect cannot be (the future, or before the last change)."""
    effective = getattr(command, "at", None)
    if effective is None:
        return None
    if effective > situation.at:
        now = isoformat_utc(situation.at)
        return f"a {command.kind} cannot take effect in the future ({isoformat_utc(effective)}; it is {now})"
    enrollment = situation.enrollment
    # Business times (what the log and the periods say), not when the workflow got round to them.
    latest = enrollment.latest_period
    moments = [*(entry.at for entry in enrollment.log[-1:]), *([latest.start] if latest is not None else [])]
    last_change = max(moments, default=enrollment.anchor)
    if effective < last_change:
        return (
            f"a {command.kind} cannot take effect at {isoformat_utc(effective)}, before {situation.name} last "
            f"changed ({isoformat_utc(last_change)})"
        )
    return None


_RULES: dict[str, Callable[[_Situation, Any], str | None]] = {
    "change": _change,
    "pause": _pause,
    "resume": _resume,
    "activate": _activate,
    "terminate": _terminate,
    "order_status": _order_status,
    "payment": _payment,
}
"""The rule of each command kind; a kind without one (catch_up) is always accepted."""

_ALLOWED_AFTER_TERMINATION = frozenset({"order_status", "catch_up", "payment"})


def rejection(
    enrollment: Enrollment | None,
    scheduled: ScheduledAction | None,
    orders: list[Order],
    command: Command,
    at: datetime,
    *,
    all_orders_known: bool = True,
    dunning: list[OrderDunning] | None = None,
) -> str | None:
    """Why ``command`` cannot be applied to the enrollment now, or None when it can.

    With ``all_orders_known`` False (the workflow carries recent orders only), a status change for an order
    not in ``orders`` is accepted here and checked against the database by the store.
    """
    rule = _RULES.get(command.kind)
    if rule is None:
        return None
    if enrollment is None:
        return "the enrollment is not registered yet"
    situation = _Situation(enrollment, scheduled, orders, all_orders_known, dunning or [], at)
    problem = _effective_at_problem(situation, command)
    if problem is not None:
        return problem
    if situation.status is EnrollmentStatus.TERMINATED and command.kind not in _ALLOWED_AFTER_TERMINATION:
        return f"{situation.name} is TERMINATED; it accepts no {command.kind}"
    return rule(situation, command)
