"""Input and state of :class:`workflows.enrollment.EnrollmentWorkflow` (carried over continue-as-new)."""

from __future__ import annotations

from pydantic import Field

from adapters.domain import DomainModel, Enrollment, EnrollmentTerms, Identifier, Order, ScheduledAction, UtcDatetime
from adapters.dunning import OrderDunning
from adapters.lifecycle import KEPT_PERIODS, QueuedCommand, recent_history

DEFAULT_PERIODS_PER_RUN = 50
"""Periods a run makes before it continues as new (sooner when the server suggests it): the history stays a few
hundred events, and continue-as-new, a billable action, is paid once per 50 periods."""


class CommandOutcome(DomainModel):
    """The result an update handler waits for: None error means applied."""

    error: str | None = None
    error_type: str | None = None


class EnrollmentWorkflowState(DomainModel):
    """Everything the workflow knows; the single source of its queries, details and search attributes."""

    enrollment: Enrollment | None = Field(default=None, description="None until registered")
    orders: list[Order] = Field(default_factory=list)
    failure: str | None = None
    failure_type: str | None = None
    next_period_start: UtcDatetime | None = None
    deadline: UtcDatetime | None = None
    billing_due: UtcDatetime | None = None
    scheduled: ScheduledAction | None = None
    needs_advance: bool = True
    commands: list[QueuedCommand] = Field(default_factory=list)
    outcomes: dict[str, CommandOutcome] = Field(default_factory=dict)
    periods_this_run: int = 0
    history_trimmed: bool = Field(
        default=False, description="older periods, orders or log entries were left to the database"
    )
    attention: str | None = Field(
        default=None, description="why the enrollment cannot make progress (None: it can); it still obeys commands"
    )
    attention_type: str | None = None
    dunning: list[OrderDunning] = Field(default_factory=list, description="its unpaid orders' running schedules")


class EnrollmentWorkflowInput(DomainModel):
    """How to start (or continue) an enrollment's workflow."""

    enrollment_id: Identifier = Field(min_length=1, max_length=128)
    terms: EnrollmentTerms
    start: UtcDatetime | None = Field(default=None, description="schedule anchor; None means the start time")
    backdate: bool = Field(default=False, description="a start more than a period in the past is intended")
    periods_per_run: int = Field(default=DEFAULT_PERIODS_PER_RUN, ge=1, le=1_000)
    next_period_attribute: bool | None = Field(
        default=None,
        description="keep the EnrollmentNextPeriodAt search attribute current (costs a Temporal action a period); "
        "None: a run started before this was a choice (it keeps it current until it continues as new)",
    )
    state: EnrollmentWorkflowState | None = Field(default=None, description="carried over continue-as-new")


def carried_over(state: EnrollmentWorkflowState) -> EnrollmentWorkflowState:
    """The state to continue as new with: the recent history only, so that a run's input stays small.

    The enrollment's recent history (:func:`adapters.lifecycle.recent_history`), the orders of the kept periods
    and the orders of periods starting from the oldest kept one. The database keeps everything.
    """
    enrollment = state.enrollment
    if enrollment is None:
        return state
    trimmed = recent_history(enrollment)
    if trimmed is enrollment:
        return state
    kept_orders = state.orders
    if len(trimmed.periods) < len(enrollment.periods):
        oldest_kept = enrollment.periods[-KEPT_PERIODS].start
        kept_order_ids = {period.order_id for period in trimmed.periods if period.order_id is not None}
        kept_orders = [
            order
            for order in state.orders
            if order.id in kept_order_ids or order.period_start is None or order.period_start >= oldest_kept
        ]
    return state.model_copy(update={"enrollment": trimmed, "orders": kept_orders, "history_trimmed": True})
