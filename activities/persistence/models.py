"""SQLAlchemy tables of the enrollment store (typed declarative models, internal to the persistence layer).

The repository turns these rows into the pydantic domain models; nothing outside ``activities.persistence``
should handle them. ``migrations/versions`` must create exactly this schema (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 128
KEY_LENGTH = 255


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    Values are converted to UTC on the way in (naive ones are rejected, since their zone is a guess) and
    come back aware in UTC. SQLite keeps no offset, so storing UTC only also keeps its text ordering right.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored: pass a timezone-aware value")
        utc = value.astimezone(UTC)
        # SQLite stores the text without an offset; a naive UTC value avoids driver-specific formatting.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention, so migrations can refer to names."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _json(*, nullable: bool) -> Any:
    # none_as_null: a missing address is SQL NULL, not the JSON literal 'null'.
    return mapped_column(JSON(none_as_null=True), nullable=nullable)


class ProductRow(Base):
    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    plan: Mapped[dict[str, Any] | None] = _json(nullable=True)
    title: Mapped[str | None] = mapped_column(String(256))
    price_amount: Mapped[int | None] = mapped_column(BigInteger)
    price_currency: Mapped[str | None] = mapped_column(String(3))
    # The version of its plan (and prices): a change of the plan makes the next one; product_plans keeps each.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)


class ProductPlanRow(Base):
    """Every version of a product's plan: enrollments stay on the version they are on until they change."""

    __tablename__ = "product_plans"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan: Mapped[dict[str, Any]] = _json(nullable=False)
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class EnrollmentRow(Base):
    __tablename__ = "enrollments"
    # (status, id) serves both status filters and keyset paging by id within a status.
    __table_args__ = (Index(None, "status", "id"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    configuration: Mapped[list[dict[str, Any]]] = _json(nullable=False)
    status: Mapped[str] = mapped_column(String(16))
    pause_reason: Mapped[str | None] = mapped_column(String(16))
    timezone: Mapped[str] = mapped_column(String(64))
    country_code: Mapped[str | None] = mapped_column(String(2))
    currency_code: Mapped[str | None] = mapped_column(String(3))
    billing_address: Mapped[dict[str, Any] | None] = _json(nullable=True)
    contact: Mapped[dict[str, Any] | None] = _json(nullable=True)
    payment: Mapped[dict[str, Any] | None] = _json(nullable=True)
    delivery: Mapped[dict[str, Any] | None] = _json(nullable=True)
    meta: Mapped[dict[str, Any]] = _json(nullable=False)
    origin_order_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    activate_on_payment: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    adapter_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    anchor: Mapped[datetime] = mapped_column(UtcDateTime)
    expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A pause or termination at period end (what a rebuilt workflow must not lose); all None when none is.
    scheduled_kind: Mapped[str | None] = mapped_column(String(16))
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    scheduled_reason: Mapped[str | None] = mapped_column(String(500))
    # A plan or quantity change at period end ({"at", "product_id", "quantity"}); None when none is pending.
    pending_change: Mapped[dict[str, Any] | None] = _json(nullable=True)
    # The version of its product's plan it is billed on (None: from before versions, the current one).
    plan_version: Mapped[int | None] = mapped_column(Integer)
    # When the workflow next acts on its own, as its last advance computed it (None: it waits for commands).
    next_wake_up: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)


class OrderRow(Base):
    __tablename__ = "orders"
    # One order per period: a retried "create the order" finds the first one instead of billing twice.
    __table_args__ = (UniqueConstraint("enrollment_id", "period_start"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"))
    period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    period_end: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    context: Mapped[dict[str, Any]] = _json(nullable=False)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)
    # The currency of its priced positions and their sum; None for orders of plans without prices.
    currency: Mapped[str | None] = mapped_column(String(3))
    total: Mapped[int | None] = mapped_column(BigInteger)

    positions: Mapped[list[OrderPositionRow]] = relationship(
        order_by="OrderPositionRow.position", cascade="all, delete-orphan", lazy="selectin"
    )


class OrderPositionRow(Base):
    __tablename__ = "order_positions"
    __table_args__ = (UniqueConstraint("order_id", "position"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    original_product_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    quantity: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))  # SQLite: 64 bits anyway
    configuration: Mapped[list[dict[str, Any]]] = _json(nullable=False)
    unit_amount: Mapped[int | None] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(String(500))


class PeriodRow(Base):
    __tablename__ = "enrollment_periods"
    # Keyed by start: a retried "advance" finds the period it already made. The partial index finds an
    # enrollment's open periods (no order, not billed) without reading its whole history.
    __table_args__ = (
        UniqueConstraint("enrollment_id", "start"),
        Index(
            "ix_enrollment_periods_open",
            "enrollment_id",
            postgresql_where=text("order_id IS NULL AND billed_at IS NULL"),
            sqlite_where=text("order_id IS NULL AND billed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"))
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    end: Mapped[datetime] = mapped_column(UtcDateTime)
    is_trial: Mapped[bool] = mapped_column(Boolean)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    # Set when a period billed in arrears was closed (its order made, or none for no usage); usage for
    # it is refused from then on. None for periods billed in advance and for those still open.
    billed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class UsageRecordRow(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("enrollment_id", "idempotency_key"),
        Index(None, "enrollment_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"))
    idempotency_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    units: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    created: Mapped[datetime] = mapped_column(UtcDateTime)


class EnrollmentLogRow(Base):
    __tablename__ = "enrollment_log"
    # The event key makes a retried status change or note a no-op.
    __table_args__ = (UniqueConstraint("enrollment_id", "event_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"))
    event_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    info: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    __tablename__ = "events"
    # The pull API and the webhook dispatch read in (tx_order, position) order: see activities/persistence/events.py.
    __table_args__ = (UniqueConstraint("enrollment_id", "sequence"), Index(None, "tx_order", "position"))

    position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    tx_order: Mapped[int] = mapped_column(BigInteger)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    data: Mapped[dict[str, Any]] = _json(nullable=False)


class WebhookEndpointRow(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(256))
    event_types: Mapped[list[str] | None] = _json(nullable=True)
    # Events up to this outbox cursor have their delivery rows.
    cursor_tx: Mapped[int] = mapped_column(BigInteger)
    cursor_position: Mapped[int] = mapped_column(BigInteger)
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    # One delivery per endpoint and event; pending ones are read per endpoint in outbox order.
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_position"),
        Index(None, "endpoint_id", "delivered_at", "event_position"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_position: Mapped[int] = mapped_column(BigInteger, ForeignKey("events.position"))
    enrollment_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    attempts: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebhookAttemptRow(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index(None, "endpoint_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class OrderDunningRow(Base):
    __tablename__ = "order_dunning"
    # An enrollment's open schedules (ended_at NULL) are what a rebuilt workflow and every advance read.
    __table_args__ = (Index(None, "enrollment_id", "ended_at"),)

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"))
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    currency: Mapped[str | None] = mapped_column(String(3))
    open_balance: Mapped[int | None] = mapped_column(BigInteger)
    # Each step with its time and status (adapters.dunning.DunningStepState as JSON).
    steps: Mapped[list[dict[str, Any]]] = _json(nullable=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(32))
    created: Mapped[datetime] = mapped_column(UtcDateTime)
    updated: Mapped[datetime] = mapped_column(UtcDateTime)


class PaymentRow(Base):
    __tablename__ = "order_payments"
    # The key (from the workflow's command) makes a retried payment a no-op.
    __table_args__ = (UniqueConstraint("order_id", "key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id"), index=True)
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    amount: Mapped[int | None] = mapped_column(BigInteger)
    decline: Mapped[str | None] = mapped_column(String(8))
    code: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
