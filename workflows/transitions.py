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
        PauseReason,
        ScheduledAction,
        describe_status,
        isoformat_utc,
        order_status_change_problem,
    )
    from adapters.lifecycle import (
        ActivateCommand,
        Command,
        OrderStatusCommand,
        PauseCommand,
        ResumeCommand,
        TerminateCommand,
    )


@dataclass(frozen=True)
class _Situation:
    enrollment: Enrollment
    scheduled: ScheduledAction | None
    orders: list[Order]
    all_orders_known: bool

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


_RULES: dict[str, Callable[[_Situation, Any], str | None]] = {
    "pause": _pause,
    "resume": _resume,
    "activate": _activate,
    "terminate": _terminate,
    "order_status": _order_status,
}
"""The rule of each command kind; a kind without one (catch_up) is always accepted."""

_ALLOWED_AFTER_TERMINATION = frozenset({"order_status", "catch_up"})


def rejection(
    enrollment: Enrollment | None,
    scheduled: ScheduledAction | None,
    orders: list[Order],
    command: Command,
    at: datetime,
    *,
    all_orders_known: bool = True,
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
    situation = _Situation(enrollment, scheduled, orders, all_orders_known)
    if situation.status is EnrollmentStatus.TERMINATED and command.kind not in _ALLOWED_AFTER_TERMINATION:
        return f"{situation.name} is TERMINATED; it accepts no {command.kind}"
    return rule(situation, command)
