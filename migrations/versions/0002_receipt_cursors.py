"""Receipt collection: how far the validator has read each miner's ``GET /receipts``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)  # timestamptz; naive UTC text on SQLite


def upgrade() -> None:
    op.create_table(
        "receipt_cursors",
        sa.Column("miner_hotkey", sa.String(64), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("miner_hotkey", name=op.f("pk_receipt_cursors")),
    )


def downgrade() -> None:
    op.drop_table("receipt_cursors")
