"""Billing in arrears: ``enrollment_periods.billed_at``, set when a metered period is closed and billed.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-15 00:00:00

Written by hand, like 0001: the type is spelled out here instead of imported from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: every existing period is either billed in advance or still open.
    op.add_column("enrollment_periods", sa.Column("billed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite rebuilds the table where it cannot drop the column in place.
    with op.batch_alter_table("enrollment_periods") as batch:
        batch.drop_column("billed_at")
