"""The enrollment lifecycle's messages: workflow ⇄ activity contracts and workflow commands and views.

They sit below both the workflow and the activities (pure pydantic, sandbox-safe) so that the workflow
never imports the activities' I/O code: it calls activities by name with these types.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from adapters.domain import (
    DomainModel,
    Enrollment,
    EnrollmentStatus,
    EnrollmentTerms,
    Order,
    OrderStatus,
    PauseReason,
    Period,
    UtcDatetime,
)

TASK_QUEUE = "enrollments"
WORKFLOW_ID_PREFIX = "enrollment-"


def workflow_id_for(enrollment_id: str) -> str:
    """The id of an enrollment's workflow: ``enrollment-<enrollment id>``."""
    return f"{WORKFLOW_ID_PREFIX}{enrollment_id}"


class ActivityName(StrEnum):
    """Activity names, shared by the workflow (which calls by name) and the activities (which register)."""

    REGISTER = "register_enrollment"
    ADVANCE = "advance_enrollment"
    CHANGE_STATUS = "change_enrollment_status"
    APPLY_ORDER_STATUS = "apply_order_status"


class MessageName(StrEnum):
    """Signal, update and query names of the enrollment workflow (clear of Temporal's own Terminate)."""

    PAUSE_SIGNAL = "pause_enrollment"
    RESUME_SIGNAL = "resume_enrollment"
    TERMINATE_SIGNAL = "terminate_enrollment"
    ORDER_STATUS_SIGNAL = "order_status_changed"
    CATCH_UP_SIGNAL = "catch_up"
    PAUSE_UPDATE = "pause"
    RESUME_UPDATE = "resume"
    TERMINATE_UPDATE = "terminate"
    ORDER_STATUS_UPDATE = "change_order_status"
    REGISTRATION_UPDATE = "registration"
    STATE_QUERY = "state"
    ACCESS_QUERY = "is_valid_for_activation"


class ErrorType(StrEnum):
    """``ApplicationError.type`` of failures that retrying cannot fix (non-retryable)."""

    PRODUCT_NOT_FOUND = "ProductNotFound"
    NOT_A_PLAN_PRODUCT = "NotAPlanProduct"
    INVALID_PLAN = "InvalidPlan"
    NO_ADAPTER = "NoAdapterForPlan"
    UNKNOWN_ADAPTER = "UnknownAdapter"
    ENROLLMENT_CONFLICT = "EnrollmentConflict"
    ENROLLMENT_NOT_FOUND = "EnrollmentNotFound"
    ORDER_NOT_FOUND = "OrderNotFound"
    INVALID_TRANSITION = "InvalidTransition"
    INVALID_INPUT = "InvalidInput"


# --- activity contracts ----------------------------------------------------------------------------


class RegisterRequest(DomainModel):
    enrollment_id: str
    terms: EnrollmentTerms
    anchor: UtcDatetime
    now: UtcDatetime


class RegisterResult(DomainModel):
    enrollment: Enrollment
    adapter_key: str


class AdvanceRequest(DomainModel):
    """Create every period due by ``now`` (when ``create_periods``) and report what the adapter sees."""

    enrollment_id: str
    now: UtcDatetime
    create_periods: bool
    known_through: UtcDatetime | None = Field(
        default=None, description="start of the latest period the workflow knows; newer ones are returned"
    )


class AdvanceResult(DomainModel):
    periods: list[Period] = Field(description="periods after known_through, oldest first, with their orders")
    orders: list[Order]
    next_period_start: UtcDatetime | None = Field(description="when the next period is due; None when none")
    overdue: bool
    deadline: UtcDatetime | None = Field(description="next time (besides a boundary) overdue may change")


class StatusChangeRequest(DomainModel):
    enrollment_id: str
    status: EnrollmentStatus
    event_key: str
    at: UtcDatetime
    info: str
    pause_reason: PauseReason | None = None
    expires: UtcDatetime | None = None
    anchor: UtcDatetime | None = None


class OrderStatusRequest(DomainModel):
    enrollment_id: str
    order_id: str
    status: OrderStatus
    now: UtcDatetime


# --- workflow commands (signals and updates) --------------------------------------------------------


class PauseRequest(DomainModel):
    reason: str | None = Field(default=None, max_length=500)
    at_period_end: bool = False


class ResumeRequest(DomainModel):
    reason: str | None = Field(default=None, max_length=500)


class TerminateRequest(DomainModel):
    reason: str | None = Field(default=None, max_length=500)
    at_period_end: bool = False
    immediately: bool = False

    @model_validator(mode="after")
    def _one_moment(self) -> Self:
        if self.at_period_end and self.immediately:
            raise ValueError("at_period_end and immediately exclude each other")
        return self


class OrderStatusChange(DomainModel):
    order_id: str = Field(min_length=1)
    status: OrderStatus


class PauseCommand(PauseRequest):
    kind: Literal["pause"] = "pause"


class ResumeCommand(ResumeRequest):
    kind: Literal["resume"] = "resume"


class TerminateCommand(TerminateRequest):
    kind: Literal["terminate"] = "terminate"


class OrderStatusCommand(OrderStatusChange):
    kind: Literal["order_status"] = "order_status"


class CatchUpCommand(DomainModel):
    kind: Literal["catch_up"] = "catch_up"


CommandBody = Annotated[
    PauseCommand | ResumeCommand | TerminateCommand | OrderStatusCommand | CatchUpCommand,
    Field(discriminator="kind"),
]


class QueuedCommand(DomainModel):
    """A received message waiting for the workflow's main loop; ``at`` is when it arrived."""

    id: str
    at: UtcDatetime
    body: CommandBody
    from_update: bool = False


class ScheduledAction(DomainModel):
    """A pause or termination that takes effect when the current period ends."""

    kind: Literal["pause", "terminate"]
    at: UtcDatetime
    reason: str | None = None


class EnrollmentView(Enrollment):
    """The full state of an enrollment as its workflow sees it (the ``state`` query, ``status --json``)."""

    orders: list[Order] = Field(default_factory=list)
    next_wake_up: UtcDatetime | None = None
    scheduled: ScheduledAction | None = None


class AccessCheck(DomainModel):
    at: datetime
    valid: bool
