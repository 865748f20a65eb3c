"""Which command an enrollment accepts in which state: one pure rule set for update validators and the loop.

``rejection(...)`` returns None when the command is accepted, else the reason, phrased for the caller.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from adapters.domain import (
        Enrollment,
        EnrollmentStatus,
        Order,
        PauseReason,
        isoformat_utc,
        order_status_change_problem,
    )
    from adapters.lifecycle import (
        ActivateCommand,
        CatchUpCommand,
        CommandBody,
        OrderStatusCommand,
        PauseCommand,
        ResumeCommand,
        ScheduledAction,
        TerminateCommand,
    )


def _describe(enrollment: Enrollment) -> str:
    if enrollment.status is EnrollmentStatus.PAUSED and enrollment.pause_reason is not None:
        return f"PAUSED ({enrollment.pause_reason})"
    return str(enrollment.status)


def rejection(
    enrollment: Enrollment | None,
    scheduled: ScheduledAction | None,
    orders: list[Order],
    command: CommandBody,
    at: datetime,
    *,
    all_orders_known: bool = True,
) -> str | None:
    """Why ``command`` cannot be applied to the enrollment now, or None when it can.

    With ``all_orders_known`` False (the workflow carries recent orders only), a status change for an order
    not in ``orders`` is accepted here and checked against the database by the activity.
    """
    if isinstance(command, CatchUpCommand):
        return None
    if enrollment is None:
        return "the enrollment is not registered yet"
    name = f"enrollment {enrollment.id!r}"
    status = enrollment.status
    if isinstance(command, OrderStatusCommand):
        return _order_status_rejection(name, orders, command, all_orders_known=all_orders_known)
    if status is EnrollmentStatus.TERMINATED:
        return f"{name} is TERMINATED; it accepts no {command.kind}"
    if isinstance(command, PauseCommand):
        if status is EnrollmentStatus.INITIAL:
            return f"cannot pause {name}: it has not started yet (INITIAL); terminate it instead"
        if status is EnrollmentStatus.PAUSED and enrollment.pause_reason is PauseReason.MANUAL:
            return f"{name} is already PAUSED (manual)"
        if scheduled is not None and scheduled.kind == "terminate":
            return f"{name} terminates at period end ({isoformat_utc(scheduled.at)}); resume first to withdraw that"
        if command.at_period_end and scheduled is not None and scheduled.kind == "pause":
            return f"{name} already pauses at period end ({isoformat_utc(scheduled.at)})"
        return None
    if isinstance(command, ResumeCommand):
        if status is EnrollmentStatus.INITIAL:
            return f"cannot resume {name}: it has not started yet (INITIAL)"
        if status is EnrollmentStatus.ACTIVE and scheduled is None:
            return f"{name} is already ACTIVE and has nothing scheduled to withdraw"
        if status is EnrollmentStatus.PAUSED and enrollment.pause_reason is PauseReason.OVERDUE:
            return f"{name} is PAUSED because payment is overdue; it resumes when its order is paid"
        return None
    if isinstance(command, ActivateCommand):
        if status is not EnrollmentStatus.INITIAL:
            return f"cannot activate {name}: it has already started ({_describe(enrollment)})"
        return None
    if isinstance(command, TerminateCommand):
        if command.at_period_end and scheduled is not None and scheduled.kind == "terminate":
            return f"{name} already terminates at period end ({isoformat_utc(scheduled.at)})"
        return None
    raise TypeError(f"unknown command {command!r}")  # pragma: no cover - CommandBody is a closed union


def _order_status_rejection(
    name: str, orders: list[Order], command: OrderStatusCommand, *, all_orders_known: bool
) -> str | None:
    order = next((order for order in orders if order.id == command.order_id), None)
    if order is None:
        return f"order {command.order_id!r} is not an order of {name}" if all_orders_known else None
    return order_status_change_problem(order, command.status)


def describe_status(enrollment: Enrollment) -> str:
    """``ACTIVE``, ``PAUSED (overdue)``, … for summaries and details."""
    return _describe(enrollment)
