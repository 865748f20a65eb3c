"""What an enrollment's workflow needs to be rebuilt, and usage-sized order quantities.

- ``enrollments.scheduled_kind`` / ``scheduled_at`` / ``scheduled_reason``: a pause or termination at
  period end, stored when it is scheduled, so a workflow rebuilt from the database keeps it;
- ``enrollments.activate_on_payment``: an enrollment that stays INITIAL until its first order is paid;
- ``enrollments.next_wake_up`` (indexed): when the workflow next acts on its own, stored by each advance, so
  the database can say which enrollments are due without asking their workflows;
- ``ix_enrollment_periods_open``: a partial index of the periods without an order and not billed, so a
  period's work reads an enrollment's recent history in bounded time however old it is;
- ``order_positions.quantity`` becomes a 64-bit integer: a metered order's quantity is the units used in
  the period, which real meters take past 2^31.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


SCHEDULED_COLUMNS: dict[str, Any] = {
    "scheduled_kind": sa.String(16),
    "scheduled_at": sa.DateTime(timezone=True),
    "scheduled_reason": sa.String(500),
    "next_wake_up": sa.DateTime(timezone=True),
}


def _on_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    for name, kind in SCHEDULED_COLUMNS.items():
        op.add_column("enrollments", sa.Column(name, kind, nullable=True))
    op.create_index("ix_enrollments_next_wake_up", "enrollments", ["next_wake_up"])
    open_periods = sa.text("order_id IS NULL AND billed_at IS NULL")
    op.create_index(
        "ix_enrollment_periods_open",
        "enrollment_periods",
        ["enrollment_id"],
        postgresql_where=open_periods,
        sqlite_where=open_periods,
    )
    # Open enrollments are due at once: the next generator pass examines each, and its advance stores its own.
    enrollments = sa.table(
        "enrollments", sa.column("status", sa.String()), sa.column("next_wake_up", sa.DateTime(timezone=True))
    )
    op.execute(
        enrollments.update()
        .where(enrollments.c.status.in_(["INITIAL", "ACTIVE", "PAUSED"]))
        .values(next_wake_up=datetime.now(UTC).replace(tzinfo=None) if _on_sqlite() else datetime.now(UTC))
    )
    op.add_column(
        "enrollments", sa.Column("activate_on_payment", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    # SQLite stores any integer in 64 bits already (INTEGER affinity): only PostgreSQL changes the type.
    if not _on_sqlite():
        op.alter_column("order_positions", "quantity", type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    if not _on_sqlite():
        op.alter_column("order_positions", "quantity", type_=sa.Integer(), existing_type=sa.BigInteger())
    op.drop_column("enrollments", "activate_on_payment")
    op.drop_index("ix_enrollment_periods_open", table_name="enrollment_periods")
    op.drop_index("ix_enrollments_next_wake_up", table_name="enrollments")
    # Plain DROP COLUMN (SQLite 3.35+): a batch rebuild of a referenced table fails on its foreign keys.
    for name in reversed(SCHEDULED_COLUMNS):
        op.drop_column("enrollments", name)
