"""The activities the enrollment workflow runs, each with its timeout, retry policy and timeline summary.

Called by name with the contracts of :mod:`adapters.lifecycle`, so workflow code never imports the
activities' I/O code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from adapters.changes import ChangeRequest, ChangeResult
    from adapters.domain import DomainModel, Order
    from adapters.dunning import DunningStepRequest, DunningStepResult, PaymentRequest, PaymentResult
    from adapters.lifecycle import (
        ActivityName,
        AdvanceRequest,
        AdvanceResult,
        OrderStatusRequest,
        RegisterRequest,
        RegisterResult,
        ScheduledActionRequest,
        StatusChangeRequest,
    )

ACTIVITY_TIMEOUT = timedelta(seconds=60)
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1)
)


T = TypeVar("T")


async def _execute(
    name: ActivityName, request: DomainModel, result_type: type[T], summary: str, *, local: bool = False
) -> T:
    # ``local``: a local activity runs in the workflow task that asks for it: one marker event instead of six
    # task events and no round trip through the server's task queues.
    execute = workflow.execute_local_activity if local else workflow.execute_activity
    result: T = await execute(
        name,
        request,
        result_type=result_type,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
        summary=summary,
    )
    return result


async def register(request: RegisterRequest, *, local: bool) -> RegisterResult:
    """Persist the enrollment and resolve its adapter (``local``: as a local activity, in the workflow task that
    starts the workflow, so the first period follows in the same task)."""
    summary = f"register enrollment {request.enrollment_id}"
    return await _execute(ActivityName.REGISTER, request, RegisterResult, summary, local=local)


async def advance(request: AdvanceRequest) -> AdvanceResult:
    """Create the periods and orders due by ``request.now``; the next boundary and overdue state."""
    summary = f"advance to {request.now.isoformat()}"
    return await _execute(ActivityName.ADVANCE, request, AdvanceResult, summary, local=True)


async def store_status_change(request: StatusChangeRequest) -> None:
    """Store a status change with its log entry (idempotent by its event key)."""
    await _execute(ActivityName.CHANGE_STATUS, request, type(None), f"{request.status}: {request.info}")


async def store_scheduled_action(request: ScheduledActionRequest) -> None:
    """Store the pause or termination scheduled at period end (or that none is)."""
    what = "nothing" if request.scheduled is None else f"{request.scheduled.kind} at {request.scheduled.at.isoformat()}"
    await _execute(ActivityName.SET_SCHEDULED, request, type(None), f"scheduled: {what}")


async def apply_order_status(request: OrderStatusRequest) -> Order:
    """Store an order's new status; returns the order."""
    return await _execute(
        ActivityName.APPLY_ORDER_STATUS, request, Order, f"order {request.order_id} → {request.status}"
    )


async def run_dunning_step(request: DunningStepRequest) -> DunningStepResult:
    """Run one step of an order's dunning schedule (its log entry and events)."""
    summary = f"dunning step {request.index + 1} of order {request.order_id}"
    return await _execute(ActivityName.DUNNING_STEP, request, DunningStepResult, summary)


async def record_payment(request: PaymentRequest) -> PaymentResult:
    """Record a payment received or failed for an order."""
    what = f"{request.received} received" if request.received is not None else f"{request.failed} decline"
    summary = f"payment of order {request.order_id}: {what}"
    return await _execute(ActivityName.RECORD_PAYMENT, request, PaymentResult, summary)


async def change(request: ChangeRequest) -> ChangeResult:
    """Decide and store a change of plan, quantity or terms (idempotent by its event key)."""
    command = request.command
    what = "withdraw the pending change" if command.cancel else f"change {command.when}"
    return await _execute(ActivityName.CHANGE, request, ChangeResult, what)
