"""Events: the outbox (``events``) and webhooks (endpoints, deliveries, attempts).

Revision ID: 0004
Revises: 0003
Create Date: 2025-02-01 00:00:00

Written by hand, like 0001: types are spelled out here instead of imported from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _serial(name: str) -> sa.Column[object]:
    # SQLite makes only "INTEGER PRIMARY KEY" an auto-increment rowid alias.
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "events",
        _serial("position"),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tx_order", sa.BigInteger(), nullable=False),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        _timestamp("occurred_at"),
        _timestamp("recorded_at"),
        sa.Column("data", sa.JSON(none_as_null=True), nullable=False),
        sa.PrimaryKeyConstraint("position", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
        sa.UniqueConstraint("enrollment_id", "sequence", name="uq_events_enrollment_id_sequence"),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"], name="fk_events_enrollment_id_enrollments"),
    )
    op.create_index("ix_events_tx_order_position", "events", ["tx_order", "position"])

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(256), nullable=False),
        sa.Column("event_types", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("cursor_tx", sa.BigInteger(), nullable=False),
        sa.Column("cursor_position", sa.BigInteger(), nullable=False),
        _timestamp("failing_since", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _timestamp("created"),
        _timestamp("updated"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
    )

    op.create_table(
        "webhook_deliveries",
        _serial("id"),
        sa.Column("endpoint_id", sa.String(128), nullable=False),
        sa.Column("event_position", sa.BigInteger(), nullable=False),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _timestamp("first_failed_at", nullable=True),
        _timestamp("next_attempt_at", nullable=True),
        _timestamp("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("endpoint_id", "event_position", name="uq_webhook_deliveries_endpoint_id_event_position"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["webhook_endpoints.id"], name="fk_webhook_deliveries_endpoint_id_webhook_endpoints"
        ),
        sa.ForeignKeyConstraint(
            ["event_position"], ["events.position"], name="fk_webhook_deliveries_event_position_events"
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_delivered_at_event_position",
        "webhook_deliveries",
        ["endpoint_id", "delivered_at", "event_position"],
    )

    op.create_table(
        "webhook_attempts",
        _serial("id"),
        sa.Column("endpoint_id", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        _timestamp("at"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_attempts"),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["webhook_endpoints.id"], name="fk_webhook_attempts_endpoint_id_webhook_endpoints"
        ),
    )
    op.create_index("ix_webhook_attempts_endpoint_id_id", "webhook_attempts", ["endpoint_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("events")
