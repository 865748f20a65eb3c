"""Changes of plan, quantity and terms inside the enrollment workflow: applied through the change activity.

The activity decides and stores the change (:func:`adapters.changes.plan_change`); the workflow takes the
stored result over: the enrollment's product, quantity, anchor, terms and pending change, the periods that
changed, the order the change made. A change pending at period end is applied when that boundary is reached,
before the next period is made, so that period and its order are on the new plan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from adapters.changes import ChangeRequest, ChangeResult
    from adapters.domain import Enrollment, EnrollmentLogEntry, EnrollmentStatus, Order, PendingChange, Period
    from adapters.lifecycle import ChangeCommand, ChangeProration, ChangeWhen, TermsChange
    from workflows import activity_calls
    from workflows.enrollment_state import EnrollmentWorkflowState


class EnrollmentMachine(Protocol):
    """What a change needs of :class:`workflows.enrollment_machine.EnrollmentMachine`."""

    state: EnrollmentWorkflowState

    @property
    def enrollment(self) -> Enrollment: ...

    def merge(self, periods: list[Period], orders: list[Order]) -> None: ...


TAKEN_OVER = (
    "product_id",
    "quantity",
    "plan_version",
    "currency_code",
    "anchor",
    "pending_change",
    *TermsChange.model_fields,
)
"""The enrollment fields a change may set: taken over from the stored enrollment after it."""


async def apply_change(machine: EnrollmentMachine, body: ChangeCommand, at: datetime) -> None:
    """Apply ``body`` at ``at`` (a refusal raises the activity's non-retryable error: nothing was written)."""
    request = ChangeRequest(enrollment_id=machine.enrollment.id, command=body, at=at, event_key=str(workflow.uuid4()))
    take_over(machine, await activity_calls.change(request), at)


async def apply_pending(machine: EnrollmentMachine, pending: PendingChange) -> None:
    """The change pending at period end, at that end; one that can no longer be made is withdrawn and logged."""
    if machine.enrollment.status is EnrollmentStatus.TERMINATED:
        await apply_change(machine, ChangeCommand(cancel=True), pending.at)
        return
    command = ChangeCommand(
        product_id=pending.product_id,
        quantity=pending.quantity,
        plan_version=pending.plan_version,
        when=ChangeWhen.NOW,
        proration=ChangeProration.NONE,
    )
    try:
        await apply_change(machine, command, pending.at)
    except ActivityError as error:
        workflow.logger.warning("the change at period end cannot be made, withdrawn: %s", error.cause or error)
        await apply_change(machine, ChangeCommand(cancel=True), pending.at)


def take_over(machine: EnrollmentMachine, result: ChangeResult, at: datetime) -> None:
    enrollment, stored = machine.enrollment, result.enrollment
    for name in TAKEN_OVER:
        setattr(enrollment, name, getattr(stored, name))
    enrollment.updated = stored.updated
    machine.merge(stored.periods, [] if result.order is None else [result.order])
    info = result.outcome.info if result.outcome is not None else "withdrew the change at period end"
    enrollment.log.append(EnrollmentLogEntry(at=at, status=enrollment.status, info=info))
    machine.state.needs_advance = enrollment.status is not EnrollmentStatus.TERMINATED
