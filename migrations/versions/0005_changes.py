"""Enrollments that change: prices on orders, changes pending at period end.

- ``order_positions.unit_amount`` / ``amount`` / ``description``: what a line bills, in integer minor units
  (a credit is negative), and what a prorated line covers; NULL on lines of plans without prices;
- ``orders.currency`` / ``total``: the currency of an order's priced lines and their sum;
- ``enrollments.pending_change`` (JSON): a plan or quantity change at period end, stored when it is
  scheduled, so a workflow rebuilt from the database keeps it;
- plan versions: ``products.version``, ``product_plans`` (every version of a product's plan; the current
  plans become version 1) and ``enrollments.plan_version`` (existing enrollments are on version 1).

Plans carry their prices inside ``products.plan`` (JSON): no column for them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: dict[str, list[sa.Column[object]]] = {
    "order_positions": [
        sa.Column("unit_amount", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.String(500), nullable=True),
    ],
    "enrollments": [
        sa.Column("pending_change", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("plan_version", sa.Integer(), nullable=True),
    ],
    "products": [sa.Column("version", sa.Integer(), nullable=False, server_default=sa.text("1"))],
    "orders": [
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=True),
    ],
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.add_column(table, column)
    op.create_table(
        "product_plans",
        sa.Column("product_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "version", name="pk_product_plans"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name="fk_product_plans_product_id_products"),
    )
    op.execute(
        "INSERT INTO product_plans (product_id, version, plan, created) "
        "SELECT id, 1, plan, updated FROM products WHERE plan IS NOT NULL"
    )
    op.execute("UPDATE enrollments SET plan_version = 1")


def downgrade() -> None:
    op.drop_table("product_plans")
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild of a referenced table fails on its foreign keys.
    for table, columns in COLUMNS.items():
        for column in reversed(columns):
            op.drop_column(table, column.name)
