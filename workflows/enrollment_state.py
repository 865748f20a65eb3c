"""Input and state of :class:`workflows.enrollment.EnrollmentWorkflow` (carried over continue-as-new)."""

from __future__ import annotations

from pydantic import Field

from adapters.domain import DomainModel, Enrollment, EnrollmentTerms, Order, UtcDatetime
from adapters.lifecycle import QueuedCommand, ScheduledAction

DEFAULT_PERIODS_PER_RUN = 12


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


class EnrollmentWorkflowInput(DomainModel):
    """How to start (or continue) an enrollment's workflow."""

    enrollment_id: str = Field(min_length=1, max_length=128)
    terms: EnrollmentTerms
    start: UtcDatetime | None = Field(default=None, description="schedule anchor; None means the start time")
    periods_per_run: int = Field(default=DEFAULT_PERIODS_PER_RUN, ge=1, le=1_000)
    state: EnrollmentWorkflowState | None = Field(default=None, description="carried over continue-as-new")
