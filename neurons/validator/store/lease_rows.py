"""The lease side of the store's rows: renters, leases, the tip of a lease's receipt chain and
the verification summary, as :class:`~neurons.validator.store.leases.LeaseStore` returns them,
and :func:`booked_amount`, what a renter is charged against its limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from byteleap.sessions.lease_events import LeaseStatus, StoredLease

#: statuses that hold a worker (it is neither offered nor challenged)
HOLDING: tuple[LeaseStatus, ...] = ("pending", "active")


#: statuses whose booked time counts against the renter's limit
BILLABLE: tuple[LeaseStatus, ...] = ("pending", "active", "ended", "lost")


@dataclass(frozen=True, slots=True)
class RenterRow:
    id: int
    name: str
    key_hash: str
    #: most the renter may book in total (price unit); None: no limit
    spend_limit: float | None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class RenterSummary:
    renter: RenterRow
    spent: float
    active_leases: int


@dataclass(frozen=True, slots=True)
class LeaseRow(StoredLease):
    """A lease row as the store returns it: the session core's record of a persisted lease."""

    @property
    def holding(self) -> bool:
        return self.status in HOLDING


@dataclass(frozen=True, slots=True)
class ReceiptTip:
    """Where this validator's receipt chain of one lease stands."""

    #: highest ``seq`` stored (None: no receipt yet)
    seq: int | None
    #: ``period_end`` of that receipt, unix seconds
    period_end: int | None


@dataclass(frozen=True, slots=True)
class Verification:
    """Challenge verdicts that decide whether a worker may be leased."""

    #: (miner, worker) -> GPU UUID -> newest verified challenge of that GPU
    verified: dict[tuple[str, str], dict[str, datetime]]
    #: workers with a fraud verdict in the window: never leased
    fraud: frozenset[tuple[str, str]]


def booked_amount(lease: LeaseRow) -> float:
    """What ``lease`` costs its renter: ``price x gpus x hours`` from its start (or creation)
    to its end (``ended_at`` once it ended, else the booked ``ends_at``); 0 when it failed."""
    if lease.status not in BILLABLE:
        return 0.0
    start = lease.started_at or lease.created_at
    end = lease.ended_at if lease.ended_at is not None else lease.ends_at
    hours = max(0.0, (end - start).total_seconds() / 3600.0)
    return lease.price_per_gpu_hour * lease.gpus * hours


def renter_row(r: Any) -> RenterRow:
    return RenterRow(
        id=r.id,
        name=r.name,
        key_hash=r.key_hash,
        spend_limit=r.spend_limit,
        created_at=r.created_at,
        revoked_at=r.revoked_at,
    )


def lease_row(r: Any) -> LeaseRow:
    return LeaseRow(
        id=r.id,
        renter_id=r.renter_id,
        miner_hotkey=r.miner_hotkey,
        worker_pubkey=r.worker_pubkey,
        gpu_uuids=tuple(r.gpu_uuids),
        price_per_gpu_hour=r.price_per_gpu_hour,
        created_at=r.created_at,
        ends_at=r.ends_at,
        status=r.status,
        started_at=r.started_at,
        ended_at=r.ended_at,
        end_reason=r.end_reason,
    )


def utc_from_seconds(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def aware_utc(value: Any) -> datetime:
    """Aggregates (``max``) bypass the column type on SQLite: give them back their UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = [
    "BILLABLE",
    "HOLDING",
    "LeaseRow",
    "ReceiptTip",
    "RenterRow",
    "RenterSummary",
    "Verification",
    "booked_amount",
]
