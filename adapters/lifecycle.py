"""The enrollment lifecycle's messages: workflow ⇄ activity contracts and workflow commands and views.

They sit below both the workflow and the activities (pure pydantic, sandbox-safe) so that the workflow
never imports the activities' I/O code: it calls activities by name with these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from adapters.domain import (
    MAX_QUANTITY,
    MAX_STORED_INTEGER,
    Address,
    Contact,
    DomainModel,
    Enrollment,
    EnrollmentStatus,
    EnrollmentTerms,
    Identifier,
    Line,
    Order,
    OrderStatus,
    PauseReason,
    Period,
    ProviderRef,
    ScheduledAction,
    StatusChange,
    UtcDatetime,
)
from adapters.dunning import Decline, OrderDunning

TASK_QUEUE = "enrollments"
WORKFLOW_ID_PREFIX = "enrollment-"


STATUS_ATTRIBUTE = "EnrollmentStatus"
"""Search attribute (keyword) with an enrollment's status, set by its workflow."""
HEALTH_ATTRIBUTE = "EnrollmentHealth"
"""Search attribute (keyword): ``ATTENTION`` while an enrollment cannot make progress, unset otherwise."""
ATTENTION = "ATTENTION"

ENROLLMENT_WORKFLOW_TYPE = "EnrollmentWorkflow"
"""Workflow type name of :class:`workflows.enrollment.EnrollmentWorkflow` (activities start it by name)."""
GENERATOR_WORKFLOW_TYPE = "GenerateEnrollmentOrders"
"""Workflow type name of the order generator: start it by this name from the CLI, a schedule or the Web UI."""


def generator_task_queue(task_queue: str) -> str:
    """The order generator's own task queue beside an enrollment task queue: a pass never takes the slots
    (workflow tasks, activities) the enrollments' renewals need."""
    return f"{task_queue}-generator"


def workflow_id_for(enrollment_id: str) -> str:
    """The id of an enrollment's workflow: ``enrollment-<enrollment id>``."""
    return f"{WORKFLOW_ID_PREFIX}{enrollment_id}"


KEPT_PERIODS = 24
"""Periods an enrollment's workflow carries (besides any not billed yet); older ones are in the database only."""
KEPT_LOG_ENTRIES = 50


def recent_history(enrollment: Enrollment) -> Enrollment:
    """``enrollment`` with the history its workflow carries: the latest :data:`KEPT_PERIODS` periods, every
    period not billed yet (billing in arrears needs it) and the latest :data:`KEPT_LOG_ENTRIES` log entries.

    A MINUTES plan makes hundreds of periods a day; carried in full, the history would outgrow Temporal's payload
    limit. The database keeps everything; the activities read what they decide on from there.
    """
    periods, log = enrollment.periods, enrollment.log
    if len(periods) <= KEPT_PERIODS and len(log) <= KEPT_LOG_ENTRIES:
        return enrollment
    kept = periods
    if len(periods) > KEPT_PERIODS:
        oldest_kept = periods[-KEPT_PERIODS].start
        kept = [
            period
            for period in periods
            if period.start >= oldest_kept or (period.order_id is None and period.billed_at is None)
        ]
    return enrollment.model_copy(update={"periods": kept, "log": log[-KEPT_LOG_ENTRIES:]})


class ActivityName(StrEnum):
    """Activity names, shared by the workflow (which calls by name) and the activities (which register)."""

    CHANGE = "change_enrollment"
    REGISTER = "register_enrollment"
    ADVANCE = "advance_enrollment"
    CHANGE_STATUS = "change_enrollment_status"
    SET_SCHEDULED = "set_scheduled_action"
    APPLY_ORDER_STATUS = "apply_order_status"
    PROCESS_ENROLLMENT_PAGE = "process_enrollment_page"
    DUNNING_STEP = "run_dunning_step"
    RECORD_PAYMENT = "record_payment"


class MessageName(StrEnum):
    """Signal, update and query names of the enrollment workflow (clear of Temporal's own Terminate)."""

    PAUSE_SIGNAL = "pause_enrollment"
    RESUME_SIGNAL = "resume_enrollment"
    TERMINATE_SIGNAL = "terminate_enrollment"
    ORDER_STATUS_SIGNAL = "order_status_changed"
    CATCH_UP_SIGNAL = "catch_up"
    PAYMENT_SIGNAL = "payment_reported"
    PAUSE_UPDATE = "pause"
    RESUME_UPDATE = "resume"
    TERMINATE_UPDATE = "terminate"
    ORDER_STATUS_UPDATE = "change_order_status"
    ACTIVATE_UPDATE = "activate"
    PAYMENT_UPDATE = "report_payment"
    CHANGE_SIGNAL = "change_enrollment"
    CHANGE_UPDATE = "change"
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
    INVALID_START = "InvalidStart"
    INVALID_SCHEDULE = "InvalidSchedule"
    ENROLLMENT_TERMINATED = "EnrollmentTerminated"
    NO_PRICE = "NoPrice"
    INVALID_CHANGE = "InvalidChange"


# --- activity contracts ----------------------------------------------------------------------------


class RegisterRequest(DomainModel):
    enrollment_id: str
    terms: EnrollmentTerms
    anchor: UtcDatetime
    now: UtcDatetime
    backdate: bool = Field(default=False, description="a start more than a period in the past is intended")


class RegisterResult(DomainModel):
    """The registered enrollment (its recent history when it existed already), or why it was refused."""

    enrollment: Enrollment | None = None
    adapter_key: str | None = None
    refused: str | None = Field(default=None, description="why the enrollment cannot be registered")
    refused_type: str | None = None
    dunning: list[OrderDunning] = Field(default_factory=list, description="its orders in dunning, from the database")


class AdvanceRequest(DomainModel):
    """Create every period due by ``now`` (when ``create_periods``) and report what the adapter sees."""

    enrollment_id: str
    now: UtcDatetime
    create_periods: bool
    first_period_only: bool = Field(
        default=False, description="make the first period only (an enrollment that waits for its first payment)"
    )
    known_through: UtcDatetime | None = Field(
        default=None, description="start of the latest period the workflow knows; newer ones are returned"
    )
    open_since: UtcDatetime | None = Field(
        default=None,
        description="start of the earliest period the workflow knows as not billed (no order, no billed_at); "
        "periods from there through known_through that are billed now are returned in `billed`",
    )
    status: EnrollmentStatus | None = Field(
        default=None, description="the workflow's status: the store is brought in line with it (after a reset)"
    )
    pause_reason: PauseReason | None = None
    reconcile: bool = Field(
        default=True, description="False while commands wait to be applied: they decide the status first"
    )
    dunning_at: UtcDatetime | None = Field(
        default=None, description="when the workflow's next dunning step is due (stored with the next wake-up)"
    )


class AdvanceResult(DomainModel):
    periods: list[Period] = Field(description="periods after known_through, oldest first, with their orders")
    orders: list[Order]
    next_period_start: UtcDatetime | None = Field(description="when the next period is due; None when none")
    overdue: bool
    deadline: UtcDatetime | None = Field(description="next time (besides a boundary) overdue may change")
    billed: list[Period] = Field(
        default_factory=list,
        description="periods from open_since through known_through that are billed in arrears by now (by this "
        "call or by an attempt whose result was lost); their orders are in orders",
    )
    billing_due: UtcDatetime | None = Field(
        default=None,
        description="when the next period billed in arrears ends: the workflow advances then, even when it is "
        "paused or terminated; None when nothing is left to bill",
    )
    terminated: UtcDatetime | None = Field(
        default=None, description="the store has the enrollment TERMINATED (final), with this expiry: nothing was made"
    )
    dunning: list[OrderDunning] | None = Field(
        default=None, description="its orders in dunning after this advance (None: not reported, keep what is known)"
    )


class StatusChangeRequest(StatusChange):
    """Store a status change of an enrollment (the change itself, whole, plus whose it is)."""

    enrollment_id: str


class ScheduledActionRequest(DomainModel):
    """Store the pause or termination scheduled at period end (None: none is any more)."""

    enrollment_id: str
    scheduled: ScheduledAction | None = None


class OrderStatusRequest(DomainModel):
    enrollment_id: str
    order_id: str
    status: OrderStatus
    now: UtcDatetime


# --- workflow commands: one model per command, for its signal, its update, the client and the simulator ---


def _effective_at() -> Any:
    return Field(
        default=None,
        description="when it takes effect (default: when the workflow receives it): a past instant, not before the "
        "enrollment last changed; a script's commands land exactly on their times, a preview meets its change",
    )


class PauseCommand(DomainModel):
    kind: Literal["pause"] = "pause"
    at: UtcDatetime | None = _effective_at()
    reason: Line | None = Field(default=None, max_length=500)
    at_period_end: bool = False


class ResumeCommand(DomainModel):
    kind: Literal["resume"] = "resume"
    at: UtcDatetime | None = _effective_at()
    reason: Line | None = Field(default=None, max_length=500)


class TerminateCommand(DomainModel):
    kind: Literal["terminate"] = "terminate"
    at: UtcDatetime | None = _effective_at()
    reason: Line | None = Field(default=None, max_length=500)
    at_period_end: bool = False
    immediately: bool = False

    @model_validator(mode="after")
    def _one_moment(self) -> Self:
        if self.at_period_end and self.immediately:
            raise ValueError("at_period_end and immediately exclude each other")
        return self


class OrderStatusCommand(DomainModel):
    kind: Literal["order_status"] = "order_status"
    order_id: Identifier = Field(min_length=1)
    status: OrderStatus


class PaymentCommand(DomainModel):
    """A payment for an order (``received``, minor units) or a failed attempt (``failed`` soft or hard)."""

    kind: Literal["payment"] = "payment"
    at: UtcDatetime | None = _effective_at()
    order_id: Identifier = Field(min_length=1)
    received: int | None = Field(default=None, ge=1, le=MAX_STORED_INTEGER)
    failed: Decline | None = None
    code: Line | None = Field(default=None, max_length=100, description="the provider's decline code")

    @model_validator(mode="after")
    def _one_outcome(self) -> Self:
        if (self.received is None) == (self.failed is None):
            raise ValueError("give either received (an amount) or failed (soft or hard)")
        if self.code is not None and self.failed is None:
            raise ValueError("code goes with a failed payment")
        return self


class CatchUpCommand(DomainModel):
    kind: Literal["catch_up"] = "catch_up"


class ActivateCommand(DomainModel):
    """Start an INITIAL (scheduled) enrollment now instead of at its start."""

    kind: Literal["activate"] = "activate"
    reason: Line | None = Field(default=None, max_length=500)


class ChangeWhen(StrEnum):
    NOW = "now"
    PERIOD_END = "period_end"


class ChangeProration(StrEnum):
    """A change now: credit the unused part and charge the remainder (``prorate``), or bill nothing (``none``)."""

    PRORATE = "prorate"
    NONE = "none"


class TermsChange(DomainModel):
    """Terms a change replaces at once: each one given (not None) replaces the enrollment's."""

    billing_address: Address | None = None
    contact: Contact | None = None
    payment: ProviderRef | None = None
    delivery: ProviderRef | None = None
    meta: dict[str, Any] | None = None

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


class ChangeCommand(DomainModel):
    """Change the plan (product), quantity or terms: now or at period end; or withdraw a pending change."""

    kind: Literal["change"] = "change"
    product_id: Identifier | None = Field(default=None, max_length=128)
    quantity: int | None = Field(default=None, ge=1, le=MAX_QUANTITY)
    terms: TermsChange | None = None
    when: ChangeWhen = ChangeWhen.NOW
    proration: ChangeProration | None = Field(default=None, description="for changes now; default prorate")
    cancel: bool = Field(default=False, description="withdraw the change pending at period end")
    plan_version: int | None = Field(
        default=None, ge=1, description="the product's plan version to move to (default: the latest)"
    )
    at: UtcDatetime | None = _effective_at()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        changes = self.product_id is not None or self.quantity is not None or bool(self.terms and self.terms.given())
        if self.cancel and (changes or self.proration is not None):
            raise ValueError("cancel withdraws the pending change: it takes no product, quantity, terms or proration")
        if not self.cancel and not changes:
            raise ValueError("names nothing to change: give a product_id, a quantity or terms")
        if self.when is ChangeWhen.PERIOD_END and self.proration is not None:
            raise ValueError("proration applies to changes now, not to changes at period end")
        return self

    @property
    def plan_changes(self) -> bool:
        return self.product_id is not None or self.quantity is not None


Command = (
    PauseCommand
    | ResumeCommand
    | TerminateCommand
    | OrderStatusCommand
    | CatchUpCommand
    | ActivateCommand
    | PaymentCommand
    | ChangeCommand
)
CommandBody = Annotated[Command, Field(discriminator="kind")]


@dataclass(frozen=True)
class CommandMessages:
    """How one command reaches an enrollment's workflow: its signal and its update (None: not offered)."""

    signal: MessageName | None
    signal_description: str
    update: MessageName | None
    update_description: str


COMMAND_MESSAGES: dict[type[DomainModel], CommandMessages] = {
    PauseCommand: CommandMessages(
        MessageName.PAUSE_SIGNAL,
        "Pause now, or at the end of the current period.",
        MessageName.PAUSE_UPDATE,
        "Pause and wait for the result; invalid transitions are rejected.",
    ),
    ResumeCommand: CommandMessages(
        MessageName.RESUME_SIGNAL,
        "Resume a manual pause, or withdraw a pause/termination at period end.",
        MessageName.RESUME_UPDATE,
        "Resume and wait for the result; invalid transitions are rejected.",
    ),
    TerminateCommand: CommandMessages(
        MessageName.TERMINATE_SIGNAL,
        "End the subscription: access until the paid period ends, `immediately`, or `at_period_end`.",
        MessageName.TERMINATE_UPDATE,
        "Terminate and wait for the result; invalid transitions are rejected.",
    ),
    OrderStatusCommand: CommandMessages(
        MessageName.ORDER_STATUS_SIGNAL,
        "An order of this enrollment changed status.",
        MessageName.ORDER_STATUS_UPDATE,
        "Apply an order status change and wait for it.",
    ),
    PaymentCommand: CommandMessages(
        MessageName.PAYMENT_SIGNAL,
        "A payment for an order was received (an amount) or failed (a soft or hard decline).",
        MessageName.PAYMENT_UPDATE,
        "Record a payment or a failed one and wait for it; an amount above the open balance is rejected.",
    ),
    CatchUpCommand: CommandMessages(
        MessageName.CATCH_UP_SIGNAL, "Re-check due periods and deadlines now (order generator).", None, ""
    ),
    ChangeCommand: CommandMessages(
        MessageName.CHANGE_SIGNAL,
        "Change plan, quantity or terms: now (prorated or not) or at period end; `cancel` withdraws a pending one.",
        MessageName.CHANGE_UPDATE,
        "Change and wait for the result; refused changes (unknown product, no price, …) change nothing.",
    ),
    ActivateCommand: CommandMessages(
        None,
        "",
        MessageName.ACTIVATE_UPDATE,
        "Start an INITIAL (scheduled) enrollment now; refused once it has started or terminated.",
    ),
}
"""Every command's messages: the workflow declares its handlers from this table, the client sends by it."""


class QueuedCommand(DomainModel):
    """A received message waiting for the workflow's main loop; ``at`` is when it arrived."""

    id: str
    at: UtcDatetime
    body: CommandBody
    from_update: bool = False


class EnrollmentView(Enrollment):
    """The full state of an enrollment as its workflow sees it (the ``state`` query, ``status --json``)."""

    orders: list[Order] = Field(default_factory=list)
    attention: str | None = Field(
        default=None, description="why the enrollment cannot make progress (None: it can); see docs/operators.md"
    )
    history_trimmed: bool = Field(
        default=False,
        description="the workflow carries the latest periods, orders and log entries only; the database has all",
    )
    dunning: list[OrderDunning] = Field(
        default_factory=list, description="its unpaid orders in dunning: open balance, steps done, the next step"
    )


class AccessCheck(DomainModel):
    at: datetime
    valid: bool


# --- the order generator (GenerateEnrollmentOrders) ------------------------------------------------


class GeneratorLogEntry(DomainModel):
    """One enrollment the order generator could not process: an error class name and a message naming it."""

    name: str = Field(min_length=1)
    message: str


class EnrollmentPageRequest(DomainModel):
    """Process the next page of open enrollments: those with id > ``after_id``, by id."""

    after_id: str | None = None
    limit: int = Field(ge=1, le=1_000)
    concurrency: int = Field(ge=1, le=200)
    # Only those whose stored next wake-up is at or before ``due_by`` (None: all); of those, the ones whose wake-up
    # is before ``late_before`` are late and examined, the others signalled (None: every one is examined).
    due_by: UtcDatetime | None = None
    late_before: UtcDatetime | None = None


class EnrollmentPageResult(DomainModel):
    processed: int = Field(ge=0, description="enrollments of the page (caught up or failed)")
    restarted: int = Field(default=0, ge=0, description="enrollments whose workflow was not running and was started")
    errors: list[GeneratorLogEntry] = Field(default_factory=list)
    next_after_id: str | None = Field(description="cursor of the next page; None when this was the last")
