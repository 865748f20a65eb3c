"""Domain types the adapter API speaks: plans, products, enrollments, periods, orders.

Pure pydantic v2 models (no I/O), safe to pass through the Temporal workflow sandbox.
Every datetime is timezone-aware; validation errors name the offending field.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapters.dunning_policy import DunningPolicy
from adapters.values import DomainModel as DomainModel
from adapters.values import Identifier as Identifier
from adapters.values import Line as Line
from adapters.values import TimezoneName as TimezoneName
from adapters.values import UtcDatetime as UtcDatetime
from adapters.values import isoformat_utc as isoformat_utc
from adapters.values import known_timezones as known_timezones

MAX_QUANTITY = 1_000_000
"""Most units of a plan an enrollment orders each period (licensed quantity)."""
MAX_STORED_INTEGER = 2**63 - 1
"""The largest integer a database column holds (BIGINT): amounts and usage units above it are refused."""
MAX_UNITS = MAX_STORED_INTEGER
"""Most units one order position can bill, and most usage one metered period can sum to (64-bit)."""
MAX_CONFIGURATION_ENTRIES = 100
MAX_CONFIGURATION_VALUE_LENGTH = 4_096


class UsageCalculationType(StrEnum):
    LICENSED = "LICENSED"
    METERED = "METERED"


class BillingInterval(StrEnum):
    MINUTES = "MINUTES"
    HOURS = "HOURS"
    DAYS = "DAYS"
    WEEKS = "WEEKS"
    MONTHS = "MONTHS"
    YEARS = "YEARS"


class ProductType(StrEnum):
    PLAN_PRODUCT = "PLAN_PRODUCT"
    SIMPLE_PRODUCT = "SIMPLE_PRODUCT"


class EnrollmentStatus(StrEnum):
    INITIAL = "INITIAL"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"


class PauseReason(StrEnum):
    MANUAL = "manual"
    OVERDUE = "overdue"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FULFILLED = "FULFILLED"
    REJECTED = "REJECTED"

    @property
    def is_paid(self) -> bool:
        return self in (OrderStatus.CONFIRMED, OrderStatus.FULFILLED)


ORDER_STATUS_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.FULFILLED, OrderStatus.REJECTED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.FULFILLED, OrderStatus.REJECTED}),
    OrderStatus.FULFILLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}
"""Allowed order status changes; setting the status an order already has is accepted and changes nothing."""


class ConfigurationEntry(DomainModel):
    """One key/value pair of an enrollment's or order position's configuration."""

    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=MAX_CONFIGURATION_VALUE_LENGTH)


Configuration = Annotated[list[ConfigurationEntry], Field(max_length=MAX_CONFIGURATION_ENTRIES)]


class Proration(StrEnum):
    """How a change within a period splits it: by elapsed seconds, or by calendar days in the enrollment's zone."""

    SECONDS = "seconds"
    DAYS = "days"


class Price(DomainModel):
    """A plan's price in one currency: integer minor units (cents) per unit of quantity per period."""

    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CHF")
    amount: int = Field(ge=0, le=MAX_STORED_INTEGER, description="minor units per unit of quantity per period")


class ProductPlan(DomainModel):
    """How a plan product bills: interval, count, an optional trial, and its prices (none: orders without amounts)."""

    usage_calculation_type: UsageCalculationType = UsageCalculationType.LICENSED
    billing_interval: BillingInterval
    billing_interval_count: int = Field(default=1, ge=1, le=1_000)
    trial_interval_count: int = Field(default=0, ge=0, le=1_000)
    # Declared after the count so that its validator sees the count and the error is located here.
    trial_interval: BillingInterval | None = Field(default=None, validate_default=True)
    dunning: DunningPolicy | None = Field(default=None, description="what happens while an order stays unpaid")

    prices: list[Price] = Field(default_factory=list, max_length=200)
    proration: Proration = Proration.SECONDS

    @field_validator("prices")
    @classmethod
    def _one_price_per_currency(cls, value: list[Price]) -> list[Price]:
        currencies = [price.currency for price in value]
        repeated = sorted({currency for currency in currencies if currencies.count(currency) > 1})
        if repeated:
            raise ValueError(f"one price per currency, got several in {', '.join(repeated)}")
        return value

    @field_validator("trial_interval")
    @classmethod
    def _trial_interval_required(cls, value: BillingInterval | None, info: ValidationInfo) -> BillingInterval | None:
        if value is None and info.data.get("trial_interval_count", 0) > 0:
            raise ValueError("is required when trial_interval_count > 0")
        return value

    @model_validator(mode="after")
    def _trial_needs_interval(self) -> Self:  # also guards assignments to trial_interval_count
        if self.trial_interval_count > 0 and self.trial_interval is None:
            raise ValueError("trial_interval is required when trial_interval_count > 0")
        return self

    @property
    def has_trial(self) -> bool:
        return self.trial_interval is not None and self.trial_interval_count > 0


class Product(DomainModel):
    """A sellable product; only ``PLAN_PRODUCT`` with a plan can be enrolled in."""

    id: Identifier = Field(min_length=1, max_length=128)
    type: ProductType = ProductType.PLAN_PRODUCT
    plan: ProductPlan | None = Field(default=None, validate_default=True)
    title: str | None = Field(default=None, max_length=256)
    price_amount: int | None = Field(default=None, ge=0, le=MAX_STORED_INTEGER, description="minor units, e.g. cents")
    price_currency: str | None = Field(default=None, min_length=3, max_length=3)
    version: int = Field(default=1, ge=1, description="the version of its plan; a change of the plan makes the next")

    @field_validator("plan")
    @classmethod
    def _plan_required(cls, value: ProductPlan | None, info: ValidationInfo) -> ProductPlan | None:
        if value is None and info.data.get("type") is ProductType.PLAN_PRODUCT:
            raise ValueError("is required for a PLAN_PRODUCT")
        return value

    @model_validator(mode="after")
    def _plan_product_needs_plan(self) -> Self:  # also guards assignments to type
        if self.type is ProductType.PLAN_PRODUCT and self.plan is None:
            raise ValueError("plan is required for a PLAN_PRODUCT")
        return self

    def require_plan(self) -> ProductPlan:
        """The plan of an enrollable product; raises ``ValueError`` naming the product otherwise."""
        if self.type is not ProductType.PLAN_PRODUCT or self.plan is None:
            raise ValueError(f"product {self.id!r} is not a PLAN_PRODUCT with a plan")
        return self.plan


class Address(DomainModel):
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    address_line: str | None = None
    address_line2: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region_code: str | None = None
    country_code: str | None = Field(default=None, min_length=2, max_length=2)


class Contact(DomainModel):
    email_address: str | None = None
    telephone: str | None = None


class ProviderRef(DomainModel):
    """A payment or delivery provider chosen for the enrollment, with its context."""

    provider_id: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)


class PeriodWindow(DomainModel):
    """A computed billing window: ``[start, end)``; ``is_trial`` periods create no order."""

    start: UtcDatetime
    end: UtcDatetime
    is_trial: bool = False

    @field_validator("end")
    @classmethod
    def _end_after_start_field(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError(f"must be after start {isoformat_utc(start)}, got {isoformat_utc(value)}")
        return value

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:  # also guards assignments to start or end
        if self.end <= self.start:
            raise ValueError(f"period end {isoformat_utc(self.end)} must be after start {isoformat_utc(self.start)}")
        return self

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


class Period(PeriodWindow):
    """A period of an enrollment, with the order that bills it (none for trials and empty meters)."""

    order_id: str | None = None
    order_status: OrderStatus | None = None
    billed_at: UtcDatetime | None = Field(
        default=None, description="when a period billed in arrears was closed and billed (None: in advance or open)"
    )


class OrderPosition(DomainModel):
    """One line of an order. Priced lines carry ``unit_amount`` and ``amount`` (minor units; a credit is
    negative); lines of a plan without prices carry neither."""

    product_id: str = Field(min_length=1)
    original_product_id: str = Field(min_length=1)
    quantity: int = Field(ge=0, le=MAX_UNITS)
    configuration: Configuration = Field(default_factory=list)
    unit_amount: int | None = Field(default=None, ge=0, le=MAX_STORED_INTEGER, description="price per unit a period")
    amount: int | None = Field(
        default=None, ge=-MAX_STORED_INTEGER, le=MAX_STORED_INTEGER, description="what the line bills (minor units)"
    )
    description: Line | None = Field(default=None, max_length=500, description="what a prorated line covers")


class OrderConfiguration(DomainModel):
    """What an adapter wants ordered for a period (``configuration_for_order``)."""

    period: PeriodWindow
    order_context: dict[str, Any] = Field(default_factory=dict)
    order_position_templates: list[OrderPosition] = Field(min_length=1)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="of its priced positions")


class Order(DomainModel):
    id: str
    number: str
    enrollment_id: str | None = None
    period_start: UtcDatetime | None = None
    period_end: UtcDatetime | None = None
    status: OrderStatus = OrderStatus.PENDING
    positions: list[OrderPosition] = Field(default_factory=list)
    context: dict[str, Any] = Field(default_factory=dict)
    created: UtcDatetime | None = None
    currency: str | None = None
    total: int | None = Field(default=None, description="sum of its positions' amounts; None when unpriced")


def order_status_change_problem(order: Order, status: OrderStatus) -> str | None:
    """Why ``order`` cannot take ``status`` (see :data:`ORDER_STATUS_TRANSITIONS`), or None when it can."""
    if status is order.status or status in ORDER_STATUS_TRANSITIONS[order.status]:
        return None
    return f"order {order.number} ({order.id}) is {order.status} and cannot become {status}"


def describe_status(status: EnrollmentStatus, pause_reason: PauseReason | None) -> str:
    """``ACTIVE``, ``PAUSED (overdue)``, …: how people read a status (CLI, details, refusals)."""
    return f"{status} ({pause_reason})" if status is EnrollmentStatus.PAUSED and pause_reason else str(status)


class StatusChange(DomainModel):
    """A status change and why: decided by the workflow, applied to its state, stored and logged as one.

    ``event_key`` makes storing it idempotent; ``expires`` and ``anchor`` change only when given; the pause
    reason is required for PAUSED and cleared for every other status.
    """

    status: EnrollmentStatus
    event_key: str = Field(min_length=1, max_length=255)
    at: UtcDatetime
    info: str
    pause_reason: PauseReason | None = None
    expires: UtcDatetime | None = None
    anchor: UtcDatetime | None = None

    @model_validator(mode="after")
    def _pause_needs_reason(self) -> Self:
        if self.status is EnrollmentStatus.PAUSED and self.pause_reason is None:
            raise ValueError("a change to PAUSED needs a pause_reason (manual or overdue)")
        return self

    def changed_fields(self) -> dict[str, Any]:
        """The enrollment fields this change sets, by name (the workflow's state and the stored row alike)."""
        fields: dict[str, Any] = {
            "status": self.status,
            "pause_reason": self.pause_reason if self.status is EnrollmentStatus.PAUSED else None,
        }
        if self.expires is not None:
            fields["expires"] = self.expires
        if self.anchor is not None:
            fields["anchor"] = self.anchor
        return fields


def service_end(start: datetime, end: datetime, expires: datetime | None) -> datetime:
    """When the service of the period ``[start, end)`` ends for an enrollment expiring at ``expires``."""
    if expires is not None and expires < end:
        return max(expires, start)
    return end


class ScheduledAction(DomainModel):
    """A pause or termination that takes effect when the current period ends."""

    kind: Literal["pause", "terminate"]
    at: UtcDatetime
    reason: Line | None = None


class PendingChange(DomainModel):
    """A plan or quantity change that takes effect when the current period ends (at ``at``)."""

    at: UtcDatetime
    product_id: Identifier = Field(min_length=1, max_length=128)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)
    plan_version: int | None = Field(default=None, ge=1, description="the product's plan version it moves to")


class EnrollmentLogEntry(DomainModel):
    """One line of an enrollment's append-only history: what happened and why."""

    at: UtcDatetime
    status: EnrollmentStatus
    info: str


class EnrollmentPlan(DomainModel):
    """What an order position becomes when it turns into an enrollment."""

    product_id: str = Field(min_length=1)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    configuration: Configuration = Field(default_factory=list)


class EnrollmentTerms(DomainModel):
    """Everything a caller chooses when creating an enrollment (the enrollment less its lifecycle)."""

    user_id: Identifier = Field(min_length=1, max_length=128)
    product_id: Identifier = Field(min_length=1, max_length=128)
    quantity: int = Field(default=1, ge=1, le=MAX_QUANTITY)
    configuration: Configuration = Field(default_factory=list)
    timezone: TimezoneName = "UTC"
    country_code: str | None = Field(default=None, min_length=2, max_length=2)
    currency_code: str | None = Field(default=None, min_length=3, max_length=3)
    billing_address: Address | None = None
    contact: Contact | None = None
    payment: ProviderRef | None = None
    delivery: ProviderRef | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    origin_order_id: str | None = Field(default=None, description="checkout order that created it")
    activate_on_payment: bool = Field(
        default=False,
        description="stays INITIAL, its first period and order made, until that order is paid (or it is activated)",
    )


class Enrollment(EnrollmentTerms):
    """The enrollment snapshot: terms plus lifecycle state, periods and log.

    This is what adapters see. ``anchor`` is where the current schedule starts (the start time, or
    the resume time after a pause that outlived its period); periods are computed from it.
    """

    id: Identifier = Field(min_length=1, max_length=128)
    number: str | None = None
    status: EnrollmentStatus = EnrollmentStatus.INITIAL
    pause_reason: PauseReason | None = None
    anchor: UtcDatetime
    periods: list[Period] = Field(default_factory=list)
    expires: UtcDatetime | None = None
    adapter_key: str | None = Field(default=None, description="key of the adapter resolved at registration")
    scheduled: ScheduledAction | None = Field(default=None, description="a pause or termination at period end")
    pending_change: PendingChange | None = Field(default=None, description="a plan change at period end")
    plan_version: int | None = Field(default=None, description="the version of its product's plan it is billed on")
    next_wake_up: UtcDatetime | None = Field(
        default=None, description="when its workflow next acts on its own (a period, a deadline, the start)"
    )
    created: UtcDatetime | None = None
    updated: UtcDatetime | None = None
    log: list[EnrollmentLogEntry] = Field(default_factory=list)

    @property
    def latest_period(self) -> Period | None:
        return self.periods[-1] if self.periods else None

    def period_at(self, at: datetime) -> Period | None:
        """The period containing ``at`` (end exclusive), if any."""
        for period in reversed(self.periods):
            if period.contains(at):
                return period
        return None

    def service_end(self, period: PeriodWindow) -> datetime:
        """When the service of ``period`` ends: its end, or ``expires`` when the enrollment ended earlier.

        Billing in arrears bills a period once the period has ended, for the usage before this moment.
        """
        return service_end(period.start, period.end, self.expires)

    @property
    def periods_in_schedule(self) -> list[Period]:
        """The periods of the current schedule (those starting at or after the anchor)."""
        return [period for period in self.periods if period.start >= self.anchor]
