"""Epoch challenges: each GPU claim keeps the compute capability its worker reports.

A capability that contradicts the model catalogue makes the GPU unverifiable (SPEC 4.5), so the
validator must remember it. The column is nullable: claims stored before this revision, and
workers that do not report it, have none.

The deadline calibration reads the verified rows of the last 24 hours
(``SqlStore.verified_throughputs``); ``ix_challenges_dispatched_at`` (0001) already bounds that
read to the window, so this revision adds no index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: an ALTER TABLE on PostgreSQL, and on SQLite too (adding a nullable column
    # needs no copy of the table)
    with op.batch_alter_table("gpus") as batch:
        batch.add_column(sa.Column("compute_capability", sa.String(8), nullable=True))


def downgrade() -> None:
    # on SQLite the batch copies the table without the column and swaps it in
    with op.batch_alter_table("gpus") as batch:
        batch.drop_column("compute_capability")
