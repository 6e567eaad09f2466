"""What goes into the miner's :class:`~byteleap.sessions.miner_leases.LeaseTable` (events: the
validator's requests, the worker's acknowledgements, the clock) and what it hands back
(instructions for the HTTP routes and the forwarding envelope), and the record it keeps per
lease."""

from __future__ import annotations

from dataclasses import dataclass

from byteleap.protocol.miner_api.forward import LeaseState
from byteleap.protocol.miner_api.receipts import Receipt
from byteleap.protocol.worker_link.jobs import JobRefusal


@dataclass
class LeaseRecord:
    """One lease as the miner keeps (and persists) it."""

    lease_id: str
    owner: str  # the validator hotkey that started it
    worker_pubkey: str
    gpu_uuids: list[str]
    ends_at: int
    state: LeaseState
    updated: float
    #: unix time the lease was started (the worker acknowledged it)
    started_at: float = 0.0
    #: unix time it was stopped; None while it runs, or when it simply expired at ``ends_at``
    stopped_at: float | None = None

    @property
    def billable_until(self) -> float:
        """The lease's end for billing: when it was stopped, else ``ends_at``."""
        return (
            float(self.ends_at)
            if self.stopped_at is None
            else min(float(self.ends_at), self.stopped_at)
        )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StartRequested:
    """A validator asks to lease ``gpu_uuids`` of a worker until ``ends_at``."""

    at: float
    caller: str
    lease_id: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    ends_at: int


@dataclass(frozen=True, slots=True)
class StartAcked:
    """The worker answered the :class:`StartAtWorker` of ``lease_id``."""

    at: float
    lease_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StopRequested:
    """A validator asks to end one of its leases."""

    at: float
    caller: str
    lease_id: str
    reason: str
    #: when given, the lease's worker must be this one
    worker_pubkey: str | None = None


@dataclass(frozen=True, slots=True)
class StopAcked:
    """The worker answered the :class:`StopAtWorker` of ``lease_id``."""

    at: float
    lease_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """The worker could not be asked about ``lease_id`` (gone, link failed, no answer in time).

    A lease still ``starting`` is dropped (the validator retries or gives up); an ``active``
    one stays, since the worker keeps its leases across a reconnect."""

    at: float
    lease_id: str


@dataclass(frozen=True, slots=True)
class TableTick:
    """Time passed: leases past ``ends_at`` end, long-ended ones are forgotten."""

    at: float


@dataclass(frozen=True, slots=True)
class ReceiptOffered:
    """A validator asks the miner to countersign ``receipt`` (its other checks already passed)."""

    at: float
    caller: str
    receipt: Receipt
    skew_s: float


@dataclass(frozen=True, slots=True)
class ForwardRequested:
    """A validator asks to relay a message to the worker of one of its leases.

    ``submit`` is set for a new job, which only an ``active`` lease takes; ``worker_pubkey``,
    when given, must be the lease's worker."""

    at: float
    caller: str
    lease_id: str
    worker_pubkey: str | None = None
    submit: bool = False


LeaseTableEvent = (
    StartRequested
    | StartAcked
    | StopRequested
    | StopAcked
    | WorkerLost
    | TableTick
    | ReceiptOffered
    | ForwardRequested
)


# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True, slots=True)
class StartAtWorker:
    """Send ``LeaseStart`` to the worker; feed back :class:`StartAcked` or :class:`WorkerLost`."""

    lease_id: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    ends_at: int


@dataclass(frozen=True, slots=True)
class StopAtWorker:
    """Send ``LeaseStop`` to the worker; feed back :class:`StopAcked` or :class:`WorkerLost`."""

    lease_id: str
    worker_pubkey: str
    reason: str


@dataclass(frozen=True, slots=True)
class Persist:
    """Write this snapshot of a lease to the miner's store."""

    record: LeaseRecord


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer the validator's start or stop: accepted (or stopped), and why not."""

    lease_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class IssueReceipt:
    """Countersign and store the receipt: it fits the lease."""

    receipt: Receipt


@dataclass(frozen=True, slots=True)
class Relay:
    """Relay the validator's message to this worker."""

    lease_id: str
    worker_pubkey: str


@dataclass(frozen=True, slots=True)
class RefuseJob:
    """Answer the validator's job request with this refusal (an answer, not a failure)."""

    lease_id: str
    refusal: JobRefusal
    reason: str


LeaseTableInstruction = (
    StartAtWorker | StopAtWorker | Persist | Answer | IssueReceipt | Relay | RefuseJob
)


__all__ = [
    "Answer",
    "ForwardRequested",
    "IssueReceipt",
    "LeaseRecord",
    "LeaseTableEvent",
    "LeaseTableInstruction",
    "Persist",
    "ReceiptOffered",
    "RefuseJob",
    "Relay",
    "StartAcked",
    "StartAtWorker",
    "StartRequested",
    "StopAcked",
    "StopAtWorker",
    "StopRequested",
    "TableTick",
    "WorkerLost",
]
