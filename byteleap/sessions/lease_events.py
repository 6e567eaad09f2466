"""What goes into the validator's :class:`~byteleap.sessions.lease_book.LeaseBook` and what
comes out: plain records, events and instructions, no behaviour.

Events are what happened (a renter asked, the miner answered, the store wrote a row, the clock
ticked); each carries the time it happened at where time matters, so the book never reads a
clock. Instructions are what the driver must do next; the result of each one that does I/O
comes back as one of the events named in its docstring. A failure is its own event type, and
the three ways a miner call fails stay apart all the way: the miner said no (*busy*:
:class:`StartRefused`), the call did not get through (*link failed*: ``...LinkFailed``) and the
miner answered something wrong (*peer wrong*: ``...PeerWrong`` / :class:`ReceiptRefused`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from byteleap.aliases import WorkerRef
from byteleap.protocol.miner_api.receipts import Receipt, SignedReceipt

#: a lease's status as it is persisted (the ``leases.status`` column)
LeaseStatus = Literal["pending", "active", "ended", "lost", "failed"]


@dataclass(frozen=True, slots=True)
class StoredLease:
    """One lease as it is persisted: the same fields as the store's row."""

    id: str
    renter_id: int
    miner_hotkey: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    price_per_gpu_hour: float
    created_at: datetime
    ends_at: datetime
    status: LeaseStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None

    @property
    def gpus(self) -> int:
        return len(self.gpu_uuids)

    @property
    def worker(self) -> WorkerRef:
        return (self.miner_hotkey, self.worker_pubkey)

    @property
    def start(self) -> datetime:
        """Where billing starts: the miner's acceptance (the booking, if it never started)."""
        return self.started_at or self.created_at


@dataclass(frozen=True, slots=True)
class Booking:
    """The worker and GPUs matching chose for a request (``neurons.validator.leasing.matching``)."""

    miner_hotkey: str
    worker_pubkey: str
    #: where the miner serves (from the offer), for ``lease_start``
    endpoint: str
    gpu_uuids: tuple[str, ...]
    price_per_gpu_hour: float


@dataclass(frozen=True, slots=True)
class WorkerSighting:
    """What the miners' polls last said about a worker."""

    online: bool
    last_seen: datetime
    #: the state the worker reported (``idle``, ``leased``, ...)
    state: str


@dataclass(frozen=True, slots=True)
class Spending:
    """A renter's spending limit and what it booked so far (``None``: no limit)."""

    spent: float
    limit: float | None


class Refusal(enum.StrEnum):
    """Why the book refuses a renter's request (the renter API's error codes)."""

    NO_CAPACITY = "no_capacity"
    SPEND_LIMIT = "spend_limit_exceeded"
    TOO_LONG = "duration_exceeds_limit"
    NOT_ACTIVE = "lease_not_active"
    START_FAILED = "lease_start_failed"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class LeaseRequested:
    """A renter asks for a lease; ``booking`` is None when nothing matched (``no_match``: why)."""

    lease_id: str
    renter_id: int
    duration_hours: float
    count: int
    booking: Booking | None
    no_match: str
    spending: Spending
    at: datetime


@dataclass(frozen=True, slots=True)
class LeaseLoaded:
    """A pending or active lease read from the store that the book does not hold yet (a
    restart, or a row written by someone else), with where its stored receipts stand."""

    lease: StoredLease
    #: highest stored receipt ``seq`` and its ``period_end`` (None: no receipt yet)
    receipt_seq: int | None
    receipt_end: int | None


@dataclass(frozen=True, slots=True)
class ExtendRequested:
    lease_id: str
    hours: float
    spending: Spending
    at: datetime


@dataclass(frozen=True, slots=True)
class TerminateRequested:
    lease_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class BookTick:
    """The lease loop's look at every lease: expiries, lost workers, due and pending receipts.
    ``workers`` has every worker the polls know."""

    at: datetime
    workers: Mapping[WorkerRef, WorkerSighting] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeaseInserted:
    lease_id: str


@dataclass(frozen=True, slots=True)
class StatusPersisted:
    """A :class:`PersistStatus` ran; ``moved`` is False when the row was not in ``expect``."""

    lease_id: str
    moved: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class ExtensionPersisted:
    lease_id: str
    moved: bool


@dataclass(frozen=True, slots=True)
class MinerAccepted:
    lease_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class StartRefused:
    """Busy: the miner answered and said no."""

    lease_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class StartLinkFailed:
    """Link failed: no answer (timeout, connection, no endpoint, the miner unavailable)."""

    lease_id: str
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class StartPeerWrong:
    """Peer wrong: the miner's answer was refused (malformed, bad signature, forbidden)."""

    lease_id: str
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LeaseStopped:
    lease_id: str
    stopped: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class StopFailed:
    lease_id: str
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ReceiptCountersigned:
    lease_id: str
    signed: SignedReceipt


@dataclass(frozen=True, slots=True)
class ReceiptStored:
    lease_id: str
    seq: int
    at: datetime


@dataclass(frozen=True, slots=True)
class ReceiptRefused:
    """Peer wrong: the miner will not countersign these bytes (403, malformed answer, bad
    signature); the period stays unbilled."""

    lease_id: str
    seq: int
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ReceiptLinkFailed:
    """Link failed: the same receipt is sent again later."""

    lease_id: str
    seq: int
    error: str
    at: datetime


# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True, slots=True)
class InsertLease:
    """Write the new ``pending`` row -> :class:`LeaseInserted` or :class:`AttemptAbandoned`."""

    lease: StoredLease


@dataclass(frozen=True, slots=True)
class PersistStatus:
    """Move the row to ``status`` if it is in ``expect`` -> :class:`StatusPersisted` or
    :class:`AttemptAbandoned`."""

    lease_id: str
    status: LeaseStatus
    expect: tuple[LeaseStatus, ...]
    started_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class PersistExtension:
    """Move an active row's ``ends_at`` -> :class:`ExtensionPersisted` or
    :class:`AttemptAbandoned`."""

    lease_id: str
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class StartAtMiner:
    """``lease_start`` at ``endpoint``, held until ``hold_until`` -> :class:`MinerAccepted`,
    :class:`StartRefused`, :class:`StartLinkFailed` or :class:`StartPeerWrong`."""

    lease_id: str
    miner_hotkey: str
    endpoint: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    hold_until: int


@dataclass(frozen=True, slots=True)
class StopAtMiner:
    """``lease_stop`` at the miner's current endpoint -> :class:`LeaseStopped` or
    :class:`StopFailed`."""

    lease_id: str
    miner_hotkey: str
    reason: str


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """Have the miner countersign ``receipt`` (signed by the driver) ->
    :class:`ReceiptCountersigned`, :class:`ReceiptRefused` or :class:`ReceiptLinkFailed`."""

    lease_id: str
    miner_hotkey: str
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class StoreReceipt:
    """Store the countersigned receipt -> :class:`ReceiptStored` or :class:`AttemptAbandoned`."""

    lease_id: str
    signed: SignedReceipt


@dataclass(frozen=True, slots=True)
class RefuseRenter:
    """Answer the renter's request with this refusal (nothing comes back)."""

    lease_id: str
    refusal: Refusal
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something worth a log line happened (``what`` is the event name; nothing comes back)."""

    lease_id: str
    what: str
    detail: Mapping[str, object] = field(default_factory=dict)


LeaseInstruction = (
    InsertLease
    | PersistStatus
    | PersistExtension
    | StartAtMiner
    | StopAtMiner
    | SendReceipt
    | StoreReceipt
    | RefuseRenter
    | Notice
)


@dataclass(frozen=True, slots=True)
class AttemptAbandoned:
    """``instruction`` did not produce its result: a store write failed, the driver was
    cancelled, or a bug. The book forgets the attempt (the driver raises the error after this):
    a row that was not written is forgotten, a start no longer running is left for the tick to
    fail, and a receipt that was not stored stays pending."""

    instruction: LeaseInstruction


LeaseEvent = (
    LeaseRequested
    | LeaseLoaded
    | ExtendRequested
    | TerminateRequested
    | BookTick
    | LeaseInserted
    | StatusPersisted
    | ExtensionPersisted
    | MinerAccepted
    | StartRefused
    | StartLinkFailed
    | StartPeerWrong
    | LeaseStopped
    | StopFailed
    | ReceiptCountersigned
    | ReceiptStored
    | ReceiptRefused
    | ReceiptLinkFailed
    | AttemptAbandoned
)


__all__ = [
    "AttemptAbandoned",
    "BookTick",
    "Booking",
    "ExtendRequested",
    "ExtensionPersisted",
    "InsertLease",
    "LeaseEvent",
    "LeaseInserted",
    "LeaseInstruction",
    "LeaseLoaded",
    "LeaseRequested",
    "LeaseStatus",
    "LeaseStopped",
    "MinerAccepted",
    "Notice",
    "PersistExtension",
    "PersistStatus",
    "ReceiptCountersigned",
    "ReceiptLinkFailed",
    "ReceiptRefused",
    "ReceiptStored",
    "Refusal",
    "RefuseRenter",
    "SendReceipt",
    "Spending",
    "StartAtMiner",
    "StartLinkFailed",
    "StartPeerWrong",
    "StartRefused",
    "StatusPersisted",
    "StopAtMiner",
    "StopFailed",
    "StoreReceipt",
    "StoredLease",
    "TerminateRequested",
    "WorkerSighting",
]
