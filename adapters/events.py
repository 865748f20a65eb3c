"""The engine's events: what happened to an enrollment, as services receive it (pull API and webhooks).

An event is ``{"id", "type", "enrollment_id", "sequence", "occurred_at", "data"}``. Its id is a UUID derived
from the business key of the change (:func:`event_id_for`), so a retried write names the same event; its
sequence counts the enrollment's events from 1 without gaps; ``occurred_at`` is the business time. Each
type's ``data`` is one model below; ``docs/events.md`` shows their JSON schemas (a test keeps it current).
Pure pydantic, sandbox-safe.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from adapters.domain import (
    DomainModel,
    EnrollmentStatus,
    OrderPosition,
    OrderStatus,
    PauseReason,
    PendingChange,
    UtcDatetime,
    isoformat_utc,
)
from adapters.dunning import Decline
from adapters.dunning_policy import DunningAction


class EventType(StrEnum):
    ENROLLMENT_CREATED = "enrollment.created"
    ENROLLMENT_ACTIVATED = "enrollment.activated"
    ENROLLMENT_STATUS_CHANGED = "enrollment.status_changed"
    ENROLLMENT_PERIOD_STARTED = "enrollment.period_started"
    ORDER_CREATED = "order.created"
    ORDER_STATUS_CHANGED = "order.status_changed"
    USAGE_BILLED = "usage.billed"
    DUNNING_STEP = "dunning.step"
    DUNNING_REMINDER_DUE = "dunning.reminder_due"
    DUNNING_PAYMENT_RETRY_DUE = "dunning.payment_retry_due"
    ORDER_PAYMENT_RECEIVED = "order.payment_received"
    ORDER_PAYMENT_FAILED = "order.payment_failed"
    ENROLLMENT_CHANGED = "enrollment.changed"
    ENROLLMENT_CHANGE_SCHEDULED = "enrollment.change_scheduled"


class EventData(DomainModel):
    """Base of every event's data: fields named as in JSON (from is from_ in Python). Later versions may add
    fields: reading ignores the ones it does not know."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class EnrollmentCreated(EventData):
    """A new enrollment was stored (INITIAL, or ACTIVE when it starts at once)."""

    number: str
    user_id: str
    product_id: str
    quantity: int
    status: EnrollmentStatus
    anchor: UtcDatetime = Field(description="where its schedule starts")
    timezone: str
    origin_order_id: str | None = Field(default=None, description="the checkout order that created it")


class EnrollmentActivated(EventData):
    """The enrollment became ACTIVE for the first time: at creation, at its scheduled start or by activate."""

    anchor: UtcDatetime = Field(description="where its schedule starts")
    reason: str


class EnrollmentStatusChanged(EventData):
    """A status change with its reason; the enrollment's expiry after it."""

    from_: EnrollmentStatus = Field(alias="from")
    to: EnrollmentStatus
    reason: str
    pause_reason: PauseReason | None = None
    expires: UtcDatetime | None = None


class PeriodStarted(EventData):
    """A period was stored, with the order that bills it in advance (None: a trial, or billed in arrears)."""

    start: UtcDatetime
    end: UtcDatetime
    is_trial: bool
    order_id: str | None = None


class EventPeriod(EventData):
    """A billing period: from start (included) to end (excluded)."""

    start: UtcDatetime
    end: UtcDatetime


class OrderCreated(EventData):
    """An order the engine generated for a period (or a change within one): its lines with their amounts."""

    id: str
    number: str
    status: OrderStatus
    period: EventPeriod
    positions: list[OrderPosition]
    context: dict[str, Any]
    currency: str | None = Field(default=None, description="of its priced lines; None on a plan without prices")
    total: int | None = Field(
        default=None, description="sum of the lines' amounts in minor units (negative: a credit note); None unpriced"
    )


class OrderStatusChanged(EventData):
    """An order of the enrollment changed status (paid, fulfilled, rejected)."""

    id: str
    number: str
    from_: OrderStatus = Field(alias="from")
    to: OrderStatus


class UsageBilled(EventData):
    """A period billed in arrears was closed: the units used in it and their order (None: nothing used)."""

    period: EventPeriod
    units: int = Field(ge=0)
    order_id: str | None = None


class DunningStepTaken(EventData):
    """A step of an unpaid order's dunning schedule ran (every step, whatever its action)."""

    order_id: str
    order_number: str
    index: int = Field(ge=0, description="the step's position in the policy, from 0")
    action: DunningAction
    scheduled_at: UtcDatetime = Field(description="when it was due (it runs then, or right after a late previous step)")
    open_balance: int | None = Field(
        default=None, description="minor units still to pay; None: the order has no amount"
    )
    currency: str | None = None


class DunningReminderDue(DunningStepTaken):
    """A ``remind`` step: the mail service should remind the customer of the unpaid order."""


class DunningPaymentRetryDue(DunningStepTaken):
    """A ``retry_payment`` step: the payment service should charge the order again."""


class PaymentReceived(EventData):
    """A payment for an order was recorded; the order is paid (CONFIRMED) when nothing is left open."""

    order_id: str
    order_number: str
    amount: int = Field(ge=1, description="minor units")
    currency: str | None = None
    open_balance: int = Field(ge=0, description="minor units still to pay after it")


class PaymentFailed(EventData):
    """A payment attempt for an order failed; a hard decline skips its remaining retry_payment steps."""

    order_id: str
    order_number: str
    decline: Decline
    code: str | None = Field(default=None, description="the payment provider's decline code")


class EnrollmentChanged(EventData):
    """Plan (product), quantity or terms changed; the anchor when the schedule moved, the order the change made."""

    from_product_id: str
    product_id: str
    from_quantity: int
    quantity: int
    terms: list[str] = Field(default_factory=list, description="names of the terms replaced")
    anchor: UtcDatetime | None = Field(default=None, description="the new anchor, when the schedule moved")
    order_id: str | None = Field(default=None, description="the adjustment order or the new period's order")
    info: str


class ChangeScheduled(EventData):
    """A change was scheduled for period end (``pending``), or the pending one was withdrawn (``pending`` None)."""

    pending: PendingChange | None


EVENT_DATA: dict[EventType, type[EventData]] = {
    EventType.ENROLLMENT_CREATED: EnrollmentCreated,
    EventType.ENROLLMENT_ACTIVATED: EnrollmentActivated,
    EventType.ENROLLMENT_STATUS_CHANGED: EnrollmentStatusChanged,
    EventType.ENROLLMENT_PERIOD_STARTED: PeriodStarted,
    EventType.ORDER_CREATED: OrderCreated,
    EventType.ORDER_STATUS_CHANGED: OrderStatusChanged,
    EventType.USAGE_BILLED: UsageBilled,
    EventType.DUNNING_STEP: DunningStepTaken,
    EventType.DUNNING_REMINDER_DUE: DunningReminderDue,
    EventType.DUNNING_PAYMENT_RETRY_DUE: DunningPaymentRetryDue,
    EventType.ORDER_PAYMENT_RECEIVED: PaymentReceived,
    EventType.ORDER_PAYMENT_FAILED: PaymentFailed,
    EventType.ENROLLMENT_CHANGED: EnrollmentChanged,
    EventType.ENROLLMENT_CHANGE_SCHEDULED: ChangeScheduled,
}
"""The ``data`` model of each event type."""


class Event(DomainModel):
    """One event as services receive it: the webhook body and an item of the pull API."""

    id: str
    type: str = Field(description="an EventType; receivers should ignore types they do not know")
    enrollment_id: str
    sequence: int = Field(ge=1, description="the enrollment's events counted from 1, without gaps")
    occurred_at: UtcDatetime = Field(description="business time: the period start, when a command took effect")
    data: dict[str, Any]

    def typed_data(self) -> EventData:
        """``data`` as its type's model; ``ValueError`` for a type this version does not know."""
        try:
            model = EVENT_DATA[EventType(self.type)]
        except ValueError:
            raise ValueError(f"unknown event type {self.type!r}") from None
        return model.model_validate(self.data)


class EventPage(DomainModel):
    """Events oldest first and the cursor to pass as ``after`` for the next ones (the same when none are new)."""

    events: list[Event]
    next_cursor: str | None


_EVENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:durable-enrollments:event")


def event_id_for(enrollment_id: str, event_type: EventType, key: str) -> str:
    """The id of the ``event_type`` event of ``enrollment_id`` keyed by ``key`` (a period start, an order id…).

    Every attempt to record the same change names the same event.
    """
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{enrollment_id}|{event_type.value}|{key}"))


def time_key(value: datetime) -> str:
    """A moment as an event key (``2031-01-31T00:00:00Z``)."""
    return isoformat_utc(value)


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema of each type's ``data``, by type name (``docs/events.md`` shows them)."""
    return {event_type.value: model.model_json_schema(by_alias=True) for event_type, model in EVENT_DATA.items()}
