"""Initial schema: products, enrollments, periods, orders and positions, usage records, enrollment log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Written by hand; it must create exactly the tables of ``activities.persistence.models`` (a test compares
them). Types are spelled out here instead of imported, so later model changes cannot alter this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.JSON(none_as_null=True), nullable=nullable)


def _serial_id() -> sa.Column[object]:
    # SQLite makes only "INTEGER PRIMARY KEY" an auto-increment rowid alias.
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        _json("plan", nullable=True),
        sa.Column("title", sa.String(256), nullable=True),
        sa.Column("price_amount", sa.BigInteger(), nullable=True),
        sa.Column("price_currency", sa.String(3), nullable=True),
        _timestamp("created"),
        _timestamp("updated"),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
    )

    op.create_table(
        "enrollments",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("product_id", sa.String(128), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _json("configuration", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pause_reason", sa.String(16), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("country_code", sa.String(2), nullable=True),
        sa.Column("currency_code", sa.String(3), nullable=True),
        _json("billing_address", nullable=True),
        _json("contact", nullable=True),
        _json("payment", nullable=True),
        _json("delivery", nullable=True),
        _json("meta", nullable=False),
        sa.Column("origin_order_id", sa.String(128), nullable=True),
        sa.Column("adapter_key", sa.String(255), nullable=False),
        _timestamp("anchor"),
        _timestamp("expires", nullable=True),
        _timestamp("created"),
        _timestamp("updated"),
        sa.PrimaryKeyConstraint("id", name="pk_enrollments"),
        sa.UniqueConstraint("number", name="uq_enrollments_number"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name="fk_enrollments_product_id_products"),
    )
    op.create_index("ix_enrollments_status_id", "enrollments", ["status", "id"])
    op.create_index("ix_enrollments_user_id", "enrollments", ["user_id"])
    op.create_index("ix_enrollments_product_id", "enrollments", ["product_id"])
    op.create_index("ix_enrollments_origin_order_id", "enrollments", ["origin_order_id"])

    op.create_table(
        "orders",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        _timestamp("period_start"),
        _timestamp("period_end"),
        sa.Column("status", sa.String(16), nullable=False),
        _json("context", nullable=False),
        _timestamp("created"),
        _timestamp("updated"),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("number", name="uq_orders_number"),
        sa.UniqueConstraint("enrollment_id", "period_start", name="uq_orders_enrollment_id_period_start"),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"], name="fk_orders_enrollment_id_enrollments"),
    )

    op.create_table(
        "order_positions",
        _serial_id(),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(128), nullable=False),
        sa.Column("original_product_id", sa.String(128), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _json("configuration", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_positions"),
        sa.UniqueConstraint("order_id", "position", name="uq_order_positions_order_id_position"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_positions_order_id_orders"),
    )

    op.create_table(
        "enrollment_periods",
        _serial_id(),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        _timestamp("start"),
        _timestamp("end"),
        sa.Column("is_trial", sa.Boolean(), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_periods"),
        sa.UniqueConstraint("enrollment_id", "start", name="uq_enrollment_periods_enrollment_id_start"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"], ["enrollments.id"], name="fk_enrollment_periods_enrollment_id_enrollments"
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_enrollment_periods_order_id_orders"),
    )
    op.create_index("ix_enrollment_periods_order_id", "enrollment_periods", ["order_id"])

    op.create_table(
        "usage_records",
        _serial_id(),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        _timestamp("at"),
        _timestamp("created"),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
        sa.UniqueConstraint("enrollment_id", "idempotency_key", name="uq_usage_records_enrollment_id_idempotency_key"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"], ["enrollments.id"], name="fk_usage_records_enrollment_id_enrollments"
        ),
    )
    op.create_index("ix_usage_records_enrollment_id_at", "usage_records", ["enrollment_id", "at"])

    op.create_table(
        "enrollment_log",
        _serial_id(),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("event_key", sa.String(255), nullable=False),
        _timestamp("at"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("info", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_enrollment_log"),
        sa.UniqueConstraint("enrollment_id", "event_key", name="uq_enrollment_log_enrollment_id_event_key"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"], ["enrollments.id"], name="fk_enrollment_log_enrollment_id_enrollments"
        ),
    )


def downgrade() -> None:
    op.drop_table("enrollment_log")
    op.drop_table("usage_records")
    op.drop_table("enrollment_periods")
    op.drop_table("order_positions")
    op.drop_table("orders")
    op.drop_table("enrollments")
    op.drop_table("products")
