"""Dunning in the enrollment workflow: each unpaid order's steps at their times, and payments.

The schedules live in the workflow's state (``state.dunning``, carried over continue-as-new) and in the database
(a rebuilt workflow reads them back at registration). Every step and payment is stored through an activity
first — its log entry and events in one transaction — then applied here. The rules are pure, in
:mod:`adapters.dunning`.

Order of things at one instant: the loop applies the messages that have arrived before it reaches dunning
steps, so a payment that is there when a ``pause`` or ``terminate`` step falls due wins — the step does not
happen. Steps are never reached in the pass that precedes a command (``before_command``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from adapters.domain import Enrollment, EnrollmentLogEntry, EnrollmentStatus, Order, PauseReason, StatusChange
    from adapters.dunning import DunningStepRequest, OrderDunning, PaymentRequest, describe_step, due_step
    from adapters.dunning_policy import DunningAction
    from adapters.lifecycle import PaymentCommand, TerminateCommand
    from workflows import activity_calls
    from workflows.enrollment_state import EnrollmentWorkflowState

UNPAID = "unpaid"
"""The reason of a termination by a dunning step."""


class EnrollmentMachine(Protocol):
    """What dunning uses of :class:`workflows.enrollment_machine.EnrollmentMachine` (which imports this module)."""

    state: EnrollmentWorkflowState

    @property
    def enrollment(self) -> Enrollment: ...

    @staticmethod
    def _key() -> str: ...

    async def _change_status(self, change: StatusChange) -> None: ...

    async def terminate(self, body: TerminateCommand, at: datetime) -> None: ...

    def order_changed(self, updated: Order) -> None: ...


def _replace(dunning: list[OrderDunning], order_id: str, updated: OrderDunning | None) -> list[OrderDunning]:
    """``dunning`` with the order's schedule replaced by ``updated`` (None: removed, it ended)."""
    kept = [entry for entry in dunning if entry.order_id != order_id]
    return kept if updated is None else sorted([*kept, updated], key=lambda entry: (entry.due_at, entry.order_id))


def forget(machine: EnrollmentMachine, order_id: str) -> None:
    """The order's schedule ended in the database (paid, rejected): drop it here."""
    machine.state.dunning = _replace(machine.state.dunning, order_id, None)


async def run_due_steps(machine: EnrollmentMachine, now: datetime) -> None:
    """Run every step due by ``now``, earliest first, each order's in order; a late step runs right after the
    previous one. ``pause`` makes an ACTIVE enrollment PAUSED (overdue); ``terminate`` ends it (``unpaid``)."""
    state = machine.state
    ran = False
    while state.dunning and (found := due_step(state.dunning, now)) is not None:
        entry, step = found
        enrollment = machine.enrollment
        request = DunningStepRequest(enrollment_id=enrollment.id, order_id=entry.order_id, index=step.index, now=now)
        result = await activity_calls.run_dunning_step(request)
        state.dunning = _replace(state.dunning, entry.order_id, result.dunning)
        if result.dunning is None:
            continue  # ended in the database meanwhile (paid): the step did not run
        ran = True
        enrollment.log.append(EnrollmentLogEntry(at=now, status=enrollment.status, info=describe_step(entry, step)))
        if step.action is DunningAction.PAUSE and enrollment.status is EnrollmentStatus.ACTIVE:
            overdue = StatusChange(
                status=EnrollmentStatus.PAUSED,
                event_key=machine._key(),
                at=now,
                info="payment overdue",
                pause_reason=PauseReason.OVERDUE,
            )
            await machine._change_status(overdue)
        elif step.action is DunningAction.TERMINATE and enrollment.status is not EnrollmentStatus.TERMINATED:
            await machine.terminate(TerminateCommand(reason=UNPAID, immediately=True), now)
            return
    if ran:
        state.needs_advance = True  # the advance stores the next wake-up (the next step's time)


async def apply_payment(machine: EnrollmentMachine, body: PaymentCommand, at: datetime) -> None:
    """Store a payment (or a failed one) for an order, then apply it: the open balance, skipped retries, and,
    paid in full, the order CONFIRMED and its schedule ended — the enrollment ACTIVE again when no schedule
    holds it paused (the advance decides, with the adapter)."""
    enrollment = machine.enrollment
    request = PaymentRequest(
        enrollment_id=enrollment.id,
        order_id=body.order_id,
        key=str(workflow.uuid4()),
        received=body.received,
        failed=body.failed,
        code=body.code,
        now=at,
    )
    result = await activity_calls.record_payment(request)
    machine.state.dunning = _replace(machine.state.dunning, body.order_id, result.dunning)
    enrollment.log.append(EnrollmentLogEntry(at=at, status=enrollment.status, info=result.info))
    machine.order_changed(result.order)
