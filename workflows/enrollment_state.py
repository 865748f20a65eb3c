"""Input and state of :class:`workflows.enrollment.EnrollmentWorkflow` (carried over continue-as-new)."""

from __future__ import annotations

from pydantic import Field

from adapters.domain import DomainModel, Enrollment, EnrollmentTerms, Order, UtcDatetime
from adapters.lifecycle import QueuedCommand, ScheduledAction

DEFAULT_PERIODS_PER_RUN = 12
KEPT_PERIODS = 24
"""Periods a run carries over continue-as-new (besides any not billed yet); older ones are in the database."""
KEPT_LOG_ENTRIES = 50


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


class EnrollmentWorkflowInput(DomainModel):
    """How to start (or continue) an enrollment's workflow."""

    enrollment_id: str = Field(min_length=1, max_length=128)
    terms: EnrollmentTerms
    start: UtcDatetime | None = Field(default=None, description="schedule anchor; None means the start time")
    periods_per_run: int = Field(default=DEFAULT_PERIODS_PER_RUN, ge=1, le=1_000)
    state: EnrollmentWorkflowState | None = Field(default=None, description="carried over continue-as-new")


def carried_over(state: EnrollmentWorkflowState) -> EnrollmentWorkflowState:
    """The state to continue as new with: the recent history only, so that a run's input stays small.

    An enrollment on a MINUTES plan makes hundreds of periods a day; carried in full, the state would grow
    until it passed Temporal's payload limit. Kept: the latest :data:`KEPT_PERIODS` periods, every period
    not billed yet (billing in arrears needs it), the orders of the kept periods and the orders of periods
    starting from the oldest kept one, and the latest :data:`KEPT_LOG_ENTRIES` log entries. The database
    keeps everything; the activities read what they decide on from there, never from this state.
    """
    enrollment = state.enrollment
    if enrollment is None:
        return state
    periods = enrollment.periods
    log = enrollment.log
    if len(periods) <= KEPT_PERIODS and len(log) <= KEPT_LOG_ENTRIES:
        return state
    kept_periods, kept_orders = periods, state.orders
    if len(periods) > KEPT_PERIODS:
        oldest_kept = periods[-KEPT_PERIODS].start
        kept_periods = [
            period
            for period in periods
            if period.start >= oldest_kept or (period.order_id is None and period.billed_at is None)
        ]
        kept_order_ids = {period.order_id for period in kept_periods if period.order_id is not None}
        kept_orders = [
            order
            for order in state.orders
            if order.id in kept_order_ids or order.period_start is None or order.period_start >= oldest_kept
        ]
    trimmed = enrollment.model_copy(update={"periods": kept_periods, "log": log[-KEPT_LOG_ENTRIES:]})
    return state.model_copy(update={"enrollment": trimmed, "orders": kept_orders, "history_trimmed": True})
