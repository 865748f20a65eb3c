"""Domain types the adapter API speaks: plans, products, enrollments, periods, orders.

Pure pydantic v2 models (no I/O), safe to pass through the Temporal workflow sandbox.
Every datetime is timezone-aware; validation errors name the offending field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adapters.text import control_characters

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


def _check_timezone(name: str) -> str:
    if name in ("", "localtime") or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"unknown IANA time zone {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA time zone {name!r}") from error
    return name


TimezoneName = Annotated[str, AfterValidator(_check_timezone)]


def _check_identifier(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    if value != value.strip():
        raise ValueError(f"must not start or end with white space, got {value!r}")
    controls = control_characters(value)
    if controls:
        raise ValueError(f"must not contain control characters ({', '.join(controls)})")
    return value


def _check_line(value: str) -> str:
    controls = control_characters(value)
    if controls:
        raise ValueError(f"must be one line of text without control characters ({', '.join(controls)})")
    return value


Identifier = Annotated[str, AfterValidator(_check_identifier)]
"""An id people type and read (enrollment, user, product, order): no control characters, no blank, no outer spaces."""

Line = Annotated[str, AfterValidator(_check_line)]
"""Free text shown on one line (a reason): no line breaks or other control characters."""
"""An IANA time zone name such as ``Europe/Zurich``; rejected with a clear error when unknown."""


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, normalised to UTC (naive datetimes are rejected)."""


def isoformat_utc(value: datetime) -> str:
    """``value`` in UTC as ISO 8601 with a ``Z`` suffix, e.g. ``2031-01-31T00:00:00Z`` (naive is an error).

    The one format the project prints and exchanges datetimes in (CLI output, messages, summaries).
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"cannot format naive datetime {value.isoformat()} as UTC")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def known_timezones() -> frozenset[str]:
    """All IANA zone names the interpreter knows (for fuzzing and CLI completion)."""
    return frozenset(available_timezones())


_UNSET: Any = object()


class DomainModel(BaseModel):
    """Base of every domain model: unknown fields are errors, values are validated on assignment.

    A rejected assignment leaves the model as it was (pydantic alone keeps the new value when a model
    validator rejects it, which would leave e.g. a period ending before it starts).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self).model_fields:
            super().__setattr__(name, value)
            return
        previous = self.__dict__.get(name, _UNSET)
        was_set = name in self.model_fields_set
        try:
            super().__setattr__(name, value)
        except ValidationError:
            if previous is not _UNSET:
                self.__dict__[name] = previous
            if not was_set:
                self.model_fields_set.discard(name)
            raise


class ConfigurationEntry(DomainModel):
    """One key/value pair of an enrollment's or order position's configuration."""

    key: str = Field(min_length=1, max_length=256)
    value: str = Field(max_length=MAX_CONFIGURATION_VALUE_LENGTH)


Configuration = Annotated[list[ConfigurationEntry], Field(max_length=MAX_CONFIGURATION_ENTRIES)]


class ProductPlan(DomainModel):
    """How a plan product bills: interval, count and an optional trial."""

    usage_calculation_type: UsageCalculationType = UsageCalculationType.LICENSED
    billing_interval: BillingInterval
    billing_interval_count: int = Field(default=1, ge=1, le=1_000)
    trial_interval_count: int = Field(default=0, ge=0, le=1_000)
    # Declared after the count so that its validator sees the count and the error is located here.
    trial_interval: BillingInterval | None = Field(default=None, validate_default=True)

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
    product_id: str = Field(min_length=1)
    original_product_id: str = Field(min_length=1)
    quantity: int = Field(ge=0, le=MAX_UNITS)
    configuration: Configuration = Field(default_factory=list)


class OrderConfiguration(DomainModel):
    """What an adapter wants ordered for a period (``configuration_for_order``)."""

    period: PeriodWindow
    order_context: dict[str, Any] = Field(default_factory=dict)
    order_position_templates: list[OrderPosition] = Field(min_length=1)


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
