"""The validator's tables, declared once with SQLAlchemy 2.

These declarations serve two purposes: the store builds its queries from them, and Alembic's
autogenerate compares them with the migrated database (``tests/integration/test_migrations.py``
asserts there is no difference). They never create anything: the schema is created and upgraded
only by the migrations in ``migrations/`` (SPEC 7), so a change here needs a migration.

Conventions:

- every datetime column is :class:`UTCDateTime`: timezone-aware UTC in Python on both engines;
- constraint and index names come from :data:`NAMING`, so they are the same on PostgreSQL and
  SQLite and a migration can refer to them;
- miners are keyed by hotkey, workers by ``(miner_hotkey, worker_pubkey)`` with a surrogate id
  that the large availability table uses to stay narrow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A point in time, always timezone-aware UTC on the Python side.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones, so the value is converted to UTC
    and stored without an offset, and read back as UTC; comparisons in SQL stay correct because
    every stored value is UTC in the same text format. A naive datetime is refused rather than
    guessed at: it is a bug in the caller.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.DateTime())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: JSON documents: ``jsonb`` on PostgreSQL, JSON text on SQLite
Json = sa.JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids that still auto-increment on SQLite (only ``INTEGER PRIMARY KEY`` does there)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

HOTKEY = 64
PUBKEY = 64
UUID = 128
MODEL = 128
CAPABILITY = 8


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class Miner(Base):
    """A neuron of the subnet, as last synced from the metagraph. Never deleted."""

    __tablename__ = "miners"

    hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY), primary_key=True)
    uid: Mapped[int] = mapped_column(sa.Integer, index=True)
    coldkey: Mapped[str] = mapped_column(sa.String(HOTKEY))
    stake: Mapped[float] = mapped_column(sa.Float)
    validator_permit: Mapped[bool] = mapped_column(sa.Boolean)
    endpoint: Mapped[str | None] = mapped_column(sa.String(256))
    registered: Mapped[bool] = mapped_column(sa.Boolean)
    first_synced: Mapped[datetime] = mapped_column(UTCDateTime)
    last_synced: Mapped[datetime] = mapped_column(UTCDateTime)
    last_poll_ok: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_poll_failed: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_poll_error: Mapped[str | None] = mapped_column(sa.Text)


class Worker(Base):
    """A worker of a miner, as its inventory polls report it."""

    __tablename__ = "workers"
    __table_args__ = (
        sa.UniqueConstraint("miner_hotkey", "worker_pubkey"),
        sa.CheckConstraint("state IN ('idle', 'busy', 'leased')", name="state"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    miner_hotkey: Mapped[str] = mapped_column(
        sa.String(HOTKEY), sa.ForeignKey("miners.hotkey", ondelete="CASCADE")
    )
    worker_pubkey: Mapped[str] = mapped_column(sa.String(PUBKEY))
    state: Mapped[str] = mapped_column(sa.String(16))
    #: listed healthy in the miner's most recent successful poll
    online: Mapped[bool] = mapped_column(sa.Boolean)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    #: dispatch time of the newest challenge (kept here so the planner needs no scan)
    last_challenge_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Gpu(Base):
    """A claim: a worker reported this GPU UUID. The earliest claim of a UUID owns it."""

    __tablename__ = "gpus"
    __table_args__ = (
        sa.UniqueConstraint("gpu_uuid", "miner_hotkey", "worker_pubkey"),
        sa.ForeignKeyConstraint(
            ["miner_hotkey", "worker_pubkey"],
            ["workers.miner_hotkey", "workers.worker_pubkey"],
            ondelete="CASCADE",
        ),
        sa.Index(None, "miner_hotkey", "worker_pubkey"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    gpu_uuid: Mapped[str] = mapped_column(sa.String(UUID))
    miner_hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY))
    worker_pubkey: Mapped[str] = mapped_column(sa.String(PUBKEY))
    model: Mapped[str] = mapped_column(sa.String(MODEL))
    memory_mib: Mapped[int] = mapped_column(sa.Integer)
    #: ``"major.minor"`` as the worker reports it; None when not reported (revision 0003)
    compute_capability: Mapped[str | None] = mapped_column(sa.String(CAPABILITY))
    #: when this (miner, worker) first reported the UUID; never moved forward
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    #: in the worker's most recent poll
    present: Mapped[bool] = mapped_column(sa.Boolean)


class Availability(Base):
    """A worker's availability in one *period* of ``buckets_per_row(bucket_seconds)`` buckets
    (an hour of twelve 5-minute buckets by default); see ``docs/storage.md``.

    ``online_mask`` has bit ``b`` set when the worker reported healthy in the period's bucket
    ``b``; ``online_count`` is its number of set bits and ``gpu_buckets`` the sum of the GPUs
    over those buckets, so summing whole periods needs no bit arithmetic. ``seen_mask`` and
    ``max_gpus`` do the same for every poll, healthy or not. ``bucket_gpus`` and ``seen_gpus``
    hold the per-bucket GPU counts as fixed-width decimal text (two digits a bucket): they make
    repeated polls in a bucket count its largest GPU count exactly as the scorer does, and let
    the partial periods at the horizon's edges be cut bucket by bucket.
    """

    __tablename__ = "availability"
    __table_args__ = (sa.Index(None, "bucket_seconds", "period"),)

    worker_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    )
    bucket_seconds: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: ``bucket_index // buckets_per_row``
    period: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    online_mask: Mapped[int] = mapped_column(sa.BigInteger)
    online_count: Mapped[int] = mapped_column(sa.Integer)
    gpu_buckets: Mapped[int] = mapped_column(sa.Integer)
    seen_mask: Mapped[int] = mapped_column(sa.BigInteger)
    max_gpus: Mapped[int] = mapped_column(sa.Integer)
    bucket_gpus: Mapped[str] = mapped_column(sa.String(128))
    seen_gpus: Mapped[str] = mapped_column(sa.String(128))


class GpuChallenge(Base):
    """One GPU's part of one challenge, from dispatch to its verdict."""

    __tablename__ = "challenges"
    __table_args__ = (
        sa.CheckConstraint("status IN ('dispatched', 'committed', 'closed')", name="status"),
        sa.Index(None, "dispatched_at"),
        sa.Index(None, "miner_hotkey", "dispatched_at"),
        sa.Index(None, "status"),
    )

    challenge_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    gpu_uuid: Mapped[str] = mapped_column(sa.String(UUID), primary_key=True)
    miner_hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY))
    worker_pubkey: Mapped[str] = mapped_column(sa.String(PUBKEY))
    gpu_model: Mapped[str] = mapped_column(sa.String(MODEL))
    m: Mapped[int] = mapped_column(sa.Integer)
    n: Mapped[int] = mapped_column(sa.Integer)
    k: Mapped[int] = mapped_column(sa.Integer)
    v: Mapped[int] = mapped_column(sa.Integer)
    stages: Mapped[int] = mapped_column(sa.Integer)
    seed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    dispatched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the per-stage Merkle roots, concatenated (32 bytes each)
    roots: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16))
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    failure: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str | None] = mapped_column(sa.Text)
    throughput_flops: Mapped[float | None] = mapped_column(sa.Float)
    elapsed_s: Mapped[float | None] = mapped_column(sa.Float)
    verify_s: Mapped[float | None] = mapped_column(sa.Float)
    checked_entries: Mapped[int | None] = mapped_column(sa.Integer)


class WeightSubmissionRow(Base):
    """One weight vector set (or not) on chain, with everything that explains it."""

    __tablename__ = "weight_submissions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    uids: Mapped[list[int]] = mapped_column(Json)
    weights: Mapped[list[float]] = mapped_column(Json)
    inputs: Mapped[dict[str, Any]] = mapped_column(Json)
    block: Mapped[int | None] = mapped_column(sa.BigInteger)
    version_key: Mapped[int | None] = mapped_column(sa.BigInteger)
    reason: Mapped[str | None] = mapped_column(sa.Text)


class Renter(Base):
    """A renter of the validator's REST API. Only a hash of its API key is stored."""

    __tablename__ = "renters"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(128), unique=True)
    #: most the renter may spend in total; None: no limit
    spend_limit: Mapped[float | None] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Lease(Base):
    """Capacity this validator sold to a renter."""

    __tablename__ = "leases"
    __table_args__ = (
        sa.Index(None, "miner_hotkey", "worker_pubkey"),
        sa.Index(None, "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    renter_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("renters.id"), index=True)
    miner_hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY))
    worker_pubkey: Mapped[str] = mapped_column(sa.String(PUBKEY))
    gpu_uuids: Mapped[list[str]] = mapped_column(Json)
    price_per_gpu_hour: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when the worker confirmed the start; None while pending or when it never started
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when it actually ended (expiry, termination, worker loss); None while it runs
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16))
    end_reason: Mapped[str | None] = mapped_column(sa.Text)


class LeaseReceipt(Base):
    """A usage receipt signed by the selling validator and the miner: the only input of the
    lease score. Receipts of every validator are kept, so there is no foreign key to
    :class:`Lease` (which holds only this validator's leases)."""

    __tablename__ = "lease_receipts"
    __table_args__ = (
        sa.UniqueConstraint("validator_hotkey", "lease_id", "seq"),
        sa.CheckConstraint("period_end >= period_start", name="period"),
        sa.Index(None, "period_end"),
        sa.Index(None, "miner_hotkey"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lease_id: Mapped[str] = mapped_column(sa.String(64))
    miner_hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY))
    validator_hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY))
    seq: Mapped[int] = mapped_column(sa.Integer)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    gpus: Mapped[int] = mapped_column(sa.Integer)
    price_per_gpu_hour: Mapped[float] = mapped_column(sa.Float)
    #: the signed bytes, exactly as signed
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    validator_signature: Mapped[bytes] = mapped_column(sa.LargeBinary)
    miner_signature: Mapped[bytes] = mapped_column(sa.LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReceiptCursor(Base):
    """How far this validator has read each miner's ``GET /receipts`` (the miner's cursor of the
    last receipt taken). Cursors only grow at the miner, so reading on from here never misses a
    receipt or sees one twice; a miner seen for the first time is read from 0."""

    __tablename__ = "receipt_cursors"

    miner_hotkey: Mapped[str] = mapped_column(sa.String(HOTKEY), primary_key=True)
    cursor: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


metadata = Base.metadata

__all__ = [
    "NAMING",
    "Availability",
    "Base",
    "Gpu",
    "GpuChallenge",
    "Lease",
    "LeaseReceipt",
    "Miner",
    "ReceiptCursor",
    "Renter",
    "UTCDateTime",
    "WeightSubmissionRow",
    "Worker",
    "metadata",
]
