"""The records behind :class:`~byteleap.sessions.lease_book.LeaseBook`: its rules, the phases
of a lease, one lease's entry, the pure checks it applies (spending, lost workers) and the
invariants the book keeps (:func:`check_invariants`, what ``LeaseBook.validate`` runs)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from byteleap.aliases import WorkerRef
from byteleap.leases.receipts import MICROS, Receipt, ReceiptKind
from byteleap.sessions.lease_events import (
    PersistStatus,
    Spending,
    StartAtMiner,
    StoredLease,
    WorkerSighting,
)

#: money compares with this tolerance (float sums of prices)
MONEY_EPSILON = 1e-9

Awaiting = Literal["insert", "start", "status", "stop", "receipt", "store"]


class Phase(enum.StrEnum):
    REQUESTED = "requested"
    STARTING = "starting"
    ORPHANED = "orphaned"
    ACTIVE = "active"
    ENDING = "ending"
    STOPPING = "stopping"


#: phases whose worker is held: neither offered to another renter nor challenged
HOLDING = frozenset({Phase.REQUESTED, Phase.STARTING, Phase.ORPHANED, Phase.ACTIVE})
_STATUS = {
    Phase.REQUESTED: ("pending",),
    Phase.STARTING: ("pending",),
    Phase.ORPHANED: ("pending",),
    Phase.ACTIVE: ("active",),
    Phase.ENDING: ("ended",),
    Phase.STOPPING: ("failed", "lost"),
}


@dataclass(frozen=True, slots=True)
class LeaseRules:
    """What the book needs from the configuration (``leases`` and ``chain`` sections)."""

    netuid: int
    validator_hotkey: str
    receipt_interval_s: float
    max_duration_hours: int
    worker_lost_after_s: float


@dataclass(slots=True)
class LeaseEntry:
    lease: StoredLease
    phase: Phase
    #: the next receipt's ``seq`` and where its period starts (unix seconds)
    next_seq: int
    billed_until: int
    #: ``period_end`` of the last stored receipt (where a lost lease's billing ends)
    stored_until: int | None = None
    persisted: bool = False
    endpoint: str = ""
    #: the instruction in flight whose result is awaited
    awaiting: Awaiting | None = None
    moving: PersistStatus | None = None
    extending: datetime | None = None
    #: a receipt signed and sent, not yet countersigned and stored
    pending: Receipt | None = None
    #: the last receipt that settled (stored or refused)
    settled: Receipt | None = None
    #: the pending receipt is being resent by a tick (an hourly may follow it)
    flushing: bool = False
    #: a failed start is stopped at the miner; a refused one is answered to the renter
    stop_after_fail: bool = False
    refusal: str | None = None
    end_at: datetime | None = None
    stop_sent: bool = False
    end_issued: bool = False

    @property
    def busy(self) -> bool:
        return self.awaiting is not None

    def settle(self, *, stored: bool) -> bool:
        """The pending receipt settled (``stored``, or refused and dropped): move the billing
        on past it. Returns whether a tick was flushing it (an hourly may follow)."""
        receipt, self.pending = self.pending, None
        self.awaiting = None
        flushed, self.flushing = self.flushing, False
        if receipt is not None:
            self.next_seq = max(self.next_seq, receipt.seq + 1)
            self.billed_until = max(self.billed_until, receipt.period_end)
            self.settled = receipt
            if stored:
                self.stored_until = max(self.stored_until or 0, receipt.period_end)
        return flushed


def unix(at: datetime) -> int:
    """``at`` as whole unix seconds."""
    return int(at.timestamp())


def at_unix(seconds: int) -> datetime:
    """Unix ``seconds`` as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def start_at_miner(rules: LeaseRules, entry: LeaseEntry) -> StartAtMiner:
    """Ask the miner to hold ``entry``'s worker until ``leases.max_duration_hours`` after the
    lease was created."""
    lease = entry.lease
    return StartAtMiner(
        lease.id,
        lease.miner_hotkey,
        entry.endpoint,
        lease.worker_pubkey,
        lease.gpu_uuids,
        hold_until=unix(lease.created_at) + rules.max_duration_hours * 3600,
    )


def draft_receipt(
    rules: LeaseRules, entry: LeaseEntry, kind: ReceiptKind, start: int, end: int, at: datetime
) -> Receipt:
    """The receipt for ``entry``'s lease over ``[start, end)``, issued at ``at`` (never before
    ``end``); a ``start`` receipt has ``seq`` 0."""
    lease = entry.lease
    return Receipt(
        netuid=rules.netuid,
        lease_id=lease.id,
        seq=0 if kind == "start" else entry.next_seq,
        kind=kind,
        validator_hotkey=rules.validator_hotkey,
        miner_hotkey=lease.miner_hotkey,
        worker_pubkey=lease.worker_pubkey,
        gpu_uuids=sorted(lease.gpu_uuids),
        gpus=lease.gpus,
        price_per_gpu_hour_micros=round(lease.price_per_gpu_hour * MICROS),
        period_start=start,
        period_end=end,
        issued_at=max(unix(at), end),
    )


def over_limit(spending: Spending, amount: float) -> str | None:
    """Why booking ``amount`` more is refused (None when it fits)."""
    if spending.limit is None or spending.spent + amount <= spending.limit + MONEY_EPSILON:
        return None
    return (
        f"booking {amount:.6g} more would exceed the spending limit of "
        f"{spending.limit:g} ({spending.spent:.6g} booked so far)"
    )


def lost_reason(
    lease: StoredLease, worker: WorkerSighting | None, now: datetime, grace_s: float
) -> str | None:
    """Why ``lease``'s worker counts as lost at ``now`` (None while it is there)."""
    grace = timedelta(seconds=grace_s)
    started = lease.start
    if worker is None:
        return "the worker is no longer known" if now - started > grace else None
    if not worker.online:
        if now - max(worker.last_seen, started) > grace:
            return "the worker has been missing from its miner's polls"
        return None
    if worker.state != "leased" and worker.last_seen - started > grace:
        return f"the worker reports {worker.state!r}: it no longer holds the lease"
    return None


def check_invariants(entries: Mapping[str, LeaseEntry]) -> None:
    """Raise ``AssertionError`` where ``entries`` break an invariant: no worker or GPU in two
    holding leases, every lease past ``requested`` has a persisted row, every status matches
    its phase, and receipts never overlap or go back in ``seq``."""
    workers: dict[WorkerRef, str] = {}
    gpus: dict[tuple[str, str], str] = {}
    for lease_id, entry in entries.items():
        lease = entry.lease
        assert lease.id == lease_id
        assert lease.status in _STATUS[entry.phase], (lease_id, entry.phase, lease.status)
        assert entry.persisted == (entry.phase is not Phase.REQUESTED), lease_id
        assert (entry.moving is not None) <= (entry.awaiting == "status"), lease_id
        if entry.phase is Phase.ACTIVE:
            assert lease.started_at is not None and lease.ended_at is None, lease_id
        if entry.phase is Phase.STOPPING:
            assert entry.awaiting == "stop", lease_id
        if entry.phase is Phase.ENDING and entry.end_issued and not entry.busy:
            assert entry.pending is not None, lease_id
        if entry.phase in HOLDING:
            assert workers.setdefault(lease.worker, lease_id) == lease_id, lease.worker
            for uuid in lease.gpu_uuids:
                key = (lease.miner_hotkey, uuid)
                assert gpus.setdefault(key, lease_id) == lease_id, key
        if entry.stored_until is not None:
            assert entry.stored_until <= entry.billed_until, lease_id
        settled, pending = entry.settled, entry.pending
        if settled is not None:
            assert entry.billed_until >= settled.period_end, lease_id
            assert entry.next_seq > settled.seq, lease_id
        if pending is not None:
            assert pending.period_start <= pending.period_end, lease_id
            assert pending.period_start >= entry.billed_until, lease_id
            assert pending.seq == (0 if pending.kind == "start" else entry.next_seq), lease_id
            if settled is not None:
                assert pending.seq > settled.seq, lease_id
                assert pending.period_start >= settled.period_end, lease_id


__all__ = [
    "HOLDING",
    "MONEY_EPSILON",
    "Awaiting",
    "LeaseEntry",
    "LeaseRules",
    "Phase",
    "at_unix",
    "check_invariants",
    "draft_receipt",
    "lost_reason",
    "over_limit",
    "start_at_miner",
    "unix",
]
