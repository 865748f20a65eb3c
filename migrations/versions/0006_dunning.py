"""Dunning: each unpaid order's recovery schedule (``order_dunning``) and its payments (``order_payments``).

- ``order_dunning``: one row per order that is chased, with its steps (JSON), open balance and whether its
  pause step holds the enrollment PAUSED; ``ended_at`` set once paid, rejected or terminated;
- ``order_payments``: every payment received or failed for an order, once per key.

Plans carry their dunning policy inside ``products.plan`` (JSON): no column for it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 16:00:00

Written by hand, like 0001: types are spelled out here instead of imported from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "order_dunning",
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        _timestamp("due_at"),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("open_balance", sa.BigInteger(), nullable=True),
        sa.Column("steps", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        _timestamp("ended_at", nullable=True),
        sa.Column("ended_reason", sa.String(32), nullable=True),
        _timestamp("created"),
        _timestamp("updated"),
        sa.PrimaryKeyConstraint("order_id", name="pk_order_dunning"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_dunning_order_id_orders"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"], ["enrollments.id"], name="fk_order_dunning_enrollment_id_enrollments"
        ),
    )
    op.create_index("ix_order_dunning_enrollment_id_ended_at", "order_dunning", ["enrollment_id", "ended_at"])

    op.create_table(
        "order_payments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("decline", sa.String(8), nullable=True),
        sa.Column("code", sa.String(100), nullable=True),
        _timestamp("at"),
        sa.PrimaryKeyConstraint("id", name="pk_order_payments"),
        sa.UniqueConstraint("order_id", "key", name="uq_order_payments_order_id_key"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_order_payments_order_id_orders"),
        sa.ForeignKeyConstraint(
            ["enrollment_id"], ["enrollments.id"], name="fk_order_payments_enrollment_id_enrollments"
        ),
    )
    op.create_index("ix_order_payments_enrollment_id", "order_payments", ["enrollment_id"])


def downgrade() -> None:
    op.drop_index("ix_order_payments_enrollment_id", table_name="order_payments")
    op.drop_table("order_payments")
    op.drop_index("ix_order_dunning_enrollment_id_ended_at", table_name="order_dunning")
    op.drop_table("order_dunning")
