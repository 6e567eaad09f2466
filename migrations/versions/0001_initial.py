"""The validator's initial schema: metagraph, inventory, availability, challenges, weights,
and the renter/lease tables that the lease market fills.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Types spelled out here rather than imported from the models, so this revision keeps meaning
# what it meant when later revisions change the models.
WHEN = sa.DateTime(timezone=True)  # timestamptz; naive UTC text on SQLite
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "miners",
        sa.Column("hotkey", sa.String(64), nullable=False),
        sa.Column("uid", sa.Integer(), nullable=False),
        sa.Column("coldkey", sa.String(64), nullable=False),
        sa.Column("stake", sa.Float(), nullable=False),
        sa.Column("validator_permit", sa.Boolean(), nullable=False),
        sa.Column("endpoint", sa.String(256), nullable=True),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("first_synced", WHEN, nullable=False),
        sa.Column("last_synced", WHEN, nullable=False),
        sa.Column("last_poll_ok", WHEN, nullable=True),
        sa.Column("last_poll_failed", WHEN, nullable=True),
        sa.Column("last_poll_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("hotkey", name=op.f("pk_miners")),
    )
    op.create_index(op.f("ix_miners_uid"), "miners", ["uid"])

    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("miner_hotkey", sa.String(64), nullable=False),
        sa.Column("worker_pubkey", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.Column("last_challenge_at", WHEN, nullable=True),
        sa.CheckConstraint("state IN ('idle', 'busy', 'leased')", name=op.f("ck_workers_state")),
        sa.ForeignKeyConstraint(
            ["miner_hotkey"],
            ["miners.hotkey"],
            name=op.f("fk_workers_miner_hotkey_miners"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint(
            "miner_hotkey", "worker_pubkey", name=op.f("uq_workers_miner_hotkey_worker_pubkey")
        ),
    )

    op.create_table(
        "gpus",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gpu_uuid", sa.String(128), nullable=False),
        sa.Column("miner_hotkey", sa.String(64), nullable=False),
        sa.Column("worker_pubkey", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("first_seen", WHEN, nullable=False),
        sa.Column("last_seen", WHEN, nullable=False),
        sa.Column("present", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["miner_hotkey", "worker_pubkey"],
            ["workers.miner_hotkey", "workers.worker_pubkey"],
            name=op.f("fk_gpus_miner_hotkey_worker_pubkey_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gpus")),
        sa.UniqueConstraint(
            "gpu_uuid",
            "miner_hotkey",
            "worker_pubkey",
            name=op.f("uq_gpus_gpu_uuid_miner_hotkey_worker_pubkey"),
        ),
    )
    op.create_index(
        op.f("ix_gpus_miner_hotkey_worker_pubkey"), "gpus", ["miner_hotkey", "worker_pubkey"]
    )

    op.create_table(
        "availability",
        sa.Column("worker_id", sa.Integer(), nullable=False),
        sa.Column("bucket_seconds", sa.Integer(), nullable=False),
        sa.Column("period", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("online_mask", sa.BigInteger(), nullable=False),
        sa.Column("online_count", sa.Integer(), nullable=False),
        sa.Column("gpu_buckets", sa.Integer(), nullable=False),
        sa.Column("seen_mask", sa.BigInteger(), nullable=False),
        sa.Column("max_gpus", sa.Integer(), nullable=False),
        sa.Column("bucket_gpus", sa.String(128), nullable=False),
        sa.Column("seen_gpus", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"],
            ["workers.id"],
            name=op.f("fk_availability_worker_id_workers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "worker_id", "bucket_seconds", "period", name=op.f("pk_availability")
        ),
    )
    op.create_index(
        op.f("ix_availability_bucket_seconds_period"), "availability", ["bucket_seconds", "period"]
    )

    op.create_table(
        "challenges",
        sa.Column("challenge_id", sa.String(64), nullable=False),
        sa.Column("gpu_uuid", sa.String(128), nullable=False),
        sa.Column("miner_hotkey", sa.String(64), nullable=False),
        sa.Column("worker_pubkey", sa.String(64), nullable=False),
        sa.Column("gpu_model", sa.String(128), nullable=False),
        sa.Column("m", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("v", sa.Integer(), nullable=False),
        sa.Column("stages", sa.Integer(), nullable=False),
        sa.Column("seed", sa.LargeBinary(), nullable=False),
        sa.Column("dispatched_at", WHEN, nullable=False),
        sa.Column("deadline_at", WHEN, nullable=False),
        sa.Column("committed_at", WHEN, nullable=True),
        sa.Column("roots", sa.LargeBinary(), nullable=True),
        sa.Column("closed_at", WHEN, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("failure", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("throughput_flops", sa.Float(), nullable=True),
        sa.Column("elapsed_s", sa.Float(), nullable=True),
        sa.Column("verify_s", sa.Float(), nullable=True),
        sa.Column("checked_entries", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('dispatched', 'committed', 'closed')", name=op.f("ck_challenges_status")
        ),
        sa.PrimaryKeyConstraint("challenge_id", "gpu_uuid", name=op.f("pk_challenges")),
    )
    op.create_index(op.f("ix_challenges_dispatched_at"), "challenges", ["dispatched_at"])
    op.create_index(
        op.f("ix_challenges_miner_hotkey_dispatched_at"),
        "challenges",
        ["miner_hotkey", "dispatched_at"],
    )
    op.create_index(op.f("ix_challenges_status"), "challenges", ["status"])

    op.create_table(
        "weight_submissions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("submitted_at", WHEN, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("uids", JSON, nullable=False),
        sa.Column("weights", JSON, nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=True),
        sa.Column("version_key", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weight_submissions")),
    )
    op.create_index(
        op.f("ix_weight_submissions_submitted_at"), "weight_submissions", ["submitted_at"]
    )

    op.create_table(
        "renters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("key_hash", sa.String(128), nullable=False),
        sa.Column("spend_limit", sa.Float(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renters")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_renters_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_renters_name")),
    )

    op.create_table(
        "leases",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("renter_id", sa.Integer(), nullable=False),
        sa.Column("miner_hotkey", sa.String(64), nullable=False),
        sa.Column("worker_pubkey", sa.String(64), nullable=False),
        sa.Column("gpu_uuids", JSON, nullable=False),
        sa.Column("price_per_gpu_hour", sa.Float(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("started_at", WHEN, nullable=True),
        sa.Column("ends_at", WHEN, nullable=False),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["renter_id"], ["renters.id"], name=op.f("fk_leases_renter_id_renters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
    )
    op.create_index(
        op.f("ix_leases_miner_hotkey_worker_pubkey"), "leases", ["miner_hotkey", "worker_pubkey"]
    )
    op.create_index(op.f("ix_leases_renter_id"), "leases", ["renter_id"])
    op.create_index(op.f("ix_leases_status"), "leases", ["status"])

    op.create_table(
        "lease_receipts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("miner_hotkey", sa.String(64), nullable=False),
        sa.Column("validator_hotkey", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("period_start", WHEN, nullable=False),
        sa.Column("period_end", WHEN, nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("price_per_gpu_hour", sa.Float(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("validator_signature", sa.LargeBinary(), nullable=False),
        sa.Column("miner_signature", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        sa.CheckConstraint("period_end >= period_start", name=op.f("ck_lease_receipts_period")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lease_receipts")),
        sa.UniqueConstraint(
            "validator_hotkey",
            "lease_id",
            "seq",
            name=op.f("uq_lease_receipts_validator_hotkey_lease_id_seq"),
        ),
    )
    op.create_index(op.f("ix_lease_receipts_miner_hotkey"), "lease_receipts", ["miner_hotkey"])
    op.create_index(op.f("ix_lease_receipts_period_end"), "lease_receipts", ["period_end"])


def downgrade() -> None:
    # dropping a table drops its indexes; children before parents
    for table in (
        "lease_receipts",
        "leases",
        "renters",
        "weight_submissions",
        "challenges",
        "availability",
        "gpus",
        "workers",
        "miners",
    ):
        op.drop_table(table)
