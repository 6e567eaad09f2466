"""The leases a miner routed, as a synchronous state machine with no I/O.

This is the one place on the miner that decides whether a worker is leased, by which validator,
and until when. The HTTP routes and the forwarding envelope only carry out what it says: they
feed it events (a validator asks to start or stop a lease, the worker acknowledged, the worker
could not be reached, a clock tick, a receipt to countersign, a message to forward) and carry
out the instructions it returns (ask the worker to start or stop, persist a record, answer the
validator, countersign a receipt, relay a message, refuse a job request). The clock is the
``at`` of each event, so every decision is tested with plain objects and plain numbers.

A lease is ``starting`` while the worker is asked, ``active`` once the worker acknowledged it,
and ``ended`` when it was stopped or when ``ends_at`` passed. ``starting`` is never persisted:
if the miner dies while asking, the validator's retry starts the lease again (the worker accepts
the same lease id twice). Ended leases are remembered for :data:`LEASE_RETENTION_S` so that
``/lease/status`` and late receipts still find them.

Refusals that are the caller's fault raise the typed error (``Forbidden`` for another
validator's lease, ``PeerUnavailable`` when the table is full) before any state changes; refusals
that are answers (an unknown lease, a lease that takes no new jobs) are instructions.

Why the worker's own acknowledgement decides ``active``: the worker is the one that refuses
challenges and runs jobs under the lease; a lease the worker refused must not keep its GPUs out
of challenges at the miner either.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from byteleap.errors import Forbidden, PeerUnavailable
from byteleap.sessions.lease_table_events import (
    Answer,
    ForwardRequested,
    IssueReceipt,
    LeaseRecord,
    LeaseTableEvent,
    LeaseTableInstruction,
    Persist,
    ReceiptOffered,
    RefuseJob,
    Relay,
    StartAcked,
    StartAtWorker,
    StartRequested,
    StopAcked,
    StopAtWorker,
    StopRequested,
    TableTick,
    WorkerLost,
)

#: ended leases are remembered this long for ``/lease/status`` (and late receipts)
LEASE_RETENTION_S = 7 * 24 * 3600.0
#: most leases remembered; the oldest ended ones are dropped first
MAX_LEASES = 100_000


# --------------------------------------------------------------------------- the table


@dataclass
class LeaseTable:
    """Every lease this miner routed, keyed by lease id. Feed it with :meth:`handle`."""

    _leases: dict[str, LeaseRecord] = field(default_factory=dict)
    max_leases: int = MAX_LEASES
    retention_s: float = LEASE_RETENTION_S

    @classmethod
    def from_records(
        cls,
        records: list[LeaseRecord],
        *,
        max_leases: int = MAX_LEASES,
        retention_s: float = LEASE_RETENTION_S,
    ) -> LeaseTable:
        """A table holding the leases a store kept (never ``starting`` ones)."""
        table = cls(max_leases=max_leases, retention_s=retention_s)
        for record in records:
            table._leases[record.lease_id] = replace(record, gpu_uuids=list(record.gpu_uuids))
        return table

    def __len__(self) -> int:
        return len(self._leases)

    # ------------------------------------------------------------------ queries

    def get(self, lease_id: str, at: float) -> LeaseRecord | None:
        """A copy of the lease as it stands at ``at`` (an active lease past its end is ended)."""
        record = self._leases.get(lease_id)
        return None if record is None else self._snapshot(record, at)

    def records(self, at: float) -> list[LeaseRecord]:
        return [self._snapshot(record, at) for record in self._leases.values()]

    def leases_of(self, worker_pubkey: str, at: float) -> list[LeaseRecord]:
        """The leases that hold (some GPUs of) this worker at ``at``: starting or active."""
        return [
            self._snapshot(record, at)
            for record in self._leases.values()
            if record.worker_pubkey == worker_pubkey and self._live(record, at)
        ]

    def leased(self, worker_pubkey: str, at: float) -> bool:
        """Whether a lease that has not ended holds this worker (no challenges for it then)."""
        return any(
            record.worker_pubkey == worker_pubkey and self._live(record, at)
            for record in self._leases.values()
        )

    # ------------------------------------------------------------------ events

    def handle(self, *events: LeaseTableEvent) -> list[LeaseTableInstruction]:
        """Apply ``events`` in order; the instructions they call for, in order."""
        out: list[LeaseTableInstruction] = []
        for event in events:
            out += self._handle(event)
        return out

    def _handle(self, event: LeaseTableEvent) -> list[LeaseTableInstruction]:
        match event:
            case StartRequested():
                return self._start(event)
            case StartAcked():
                return self._started(event)
            case StopRequested():
                return self._stop(event)
            case StopAcked():
                return self._stopped(event)
            case WorkerLost(lease_id=lease_id):
                record = self._leases.get(lease_id)
                if record is not None and record.state == "starting":
                    del self._leases[lease_id]
                return []
            case TableTick(at=at):
                self._expire_all(at)
                self._prune(at)
                return []
            case ReceiptOffered():
                return self._receipt(event)
            case ForwardRequested():
                return self._forward(event)
        raise TypeError(f"not a lease event: {event!r}")  # pragma: no cover

    def _start(self, event: StartRequested) -> list[LeaseTableInstruction]:
        existing = self._current(event.lease_id, event.at)
        if existing is not None and existing.state != "ended":
            same = (
                existing.owner == event.caller
                and existing.worker_pubkey == event.worker_pubkey
                and existing.gpu_uuids == list(event.gpu_uuids)
            )
            if not same:
                raise Forbidden(f"lease {event.lease_id} already exists")
            if existing.state == "active":  # an idempotent retry
                return [Answer(event.lease_id, True)]
        if event.ends_at <= event.at:
            return [Answer(event.lease_id, False, "ends_at is in the past")]
        self._prune(event.at)
        if event.lease_id not in self._leases and len(self._leases) >= self.max_leases:
            raise PeerUnavailable("the miner's lease table is full")
        self._leases[event.lease_id] = LeaseRecord(
            lease_id=event.lease_id,
            owner=event.caller,
            worker_pubkey=event.worker_pubkey,
            gpu_uuids=list(event.gpu_uuids),
            ends_at=event.ends_at,
            state="starting",
            updated=event.at,
        )
        return [StartAtWorker(event.lease_id, event.worker_pubkey, event.gpu_uuids, event.ends_at)]

    def _started(self, event: StartAcked) -> list[LeaseTableInstruction]:
        record = self._current(event.lease_id, event.at)
        if record is None or record.state == "ended":
            return [
                Answer(event.lease_id, False, "the lease was withdrawn while the worker was asked")
            ]
        if record.state == "active":  # a concurrent retry got there first
            return [Answer(event.lease_id, True)]
        if not event.accepted:
            del self._leases[event.lease_id]
            return [Answer(event.lease_id, False, event.reason)]
        record.state = "active"
        record.started_at = record.updated = event.at
        return [Persist(replace(record)), Answer(event.lease_id, True, event.reason)]

    def _stop(self, event: StopRequested) -> list[LeaseTableInstruction]:
        record = self._current(event.lease_id, event.at)
        if record is None:
            return [Answer(event.lease_id, False, "unknown lease")]
        if record.owner != event.caller:
            raise Forbidden(f"lease {event.lease_id} belongs to another validator")
        if event.worker_pubkey is not None and event.worker_pubkey != record.worker_pubkey:
            raise Forbidden(f"lease {event.lease_id} holds another worker")
        if record.state == "ended":
            return [Answer(event.lease_id, True, "already ended")]
        return [StopAtWorker(event.lease_id, record.worker_pubkey, event.reason)]

    def _stopped(self, event: StopAcked) -> list[LeaseTableInstruction]:
        # The owner ended the lease. The worker either stopped it or does not hold it (it
        # restarted, say): either way no job runs under it any more, so the miner ends it too,
        # rather than refusing challenges to that worker until ends_at.
        record = self._leases.get(event.lease_id)
        if record is None:
            return [Answer(event.lease_id, event.accepted, event.reason)]
        record.state = "ended"
        record.stopped_at = record.updated = event.at
        return [Persist(replace(record)), Answer(event.lease_id, event.accepted, event.reason)]

    def _receipt(self, event: ReceiptOffered) -> list[LeaseTableInstruction]:
        receipt, caller, skew = event.receipt, event.caller, event.skew_s
        record = self._current(receipt.lease_id, event.at)
        if record is None or record.state == "starting":
            raise Forbidden(f"this miner routed no lease {receipt.lease_id}")
        if record.owner != caller:
            raise Forbidden(f"lease {receipt.lease_id} belongs to another validator")
        if record.worker_pubkey != receipt.worker_pubkey:
            raise Forbidden("the receipt names another worker than the lease")
        if sorted(record.gpu_uuids) != receipt.gpu_uuids:
            raise Forbidden("the receipt names other GPUs than the lease")
        if receipt.period_start < record.started_at - skew:
            raise Forbidden("the receipt's period starts before the lease started")
        if receipt.period_end > record.billable_until + skew:
            raise Forbidden("the receipt's period ends after the lease ended")
        return [IssueReceipt(receipt)]

    def _forward(self, event: ForwardRequested) -> list[LeaseTableInstruction]:
        record = self._current(event.lease_id, event.at)
        if record is None:
            return [
                RefuseJob(
                    event.lease_id, "unknown_lease", f"this miner routed no lease {event.lease_id}"
                )
            ]
        if record.owner != event.caller:
            raise Forbidden(f"lease {event.lease_id} belongs to another validator")
        if event.worker_pubkey is not None and event.worker_pubkey != record.worker_pubkey:
            raise Forbidden(f"lease {event.lease_id} holds another worker")
        if event.submit and record.state != "active":
            return [
                RefuseJob(
                    event.lease_id,
                    "lease_ended",
                    f"lease {event.lease_id} is {record.state}: it takes no new jobs",
                )
            ]
        return [Relay(event.lease_id, record.worker_pubkey)]

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _live(record: LeaseRecord, at: float) -> bool:
        return record.state == "starting" or (record.state == "active" and at < record.ends_at)

    @staticmethod
    def _expire(record: LeaseRecord, at: float) -> None:
        if record.state == "active" and at >= record.ends_at:
            record.state = "ended"
            record.updated = at

    def _snapshot(self, record: LeaseRecord, at: float) -> LeaseRecord:
        copy = replace(record, gpu_uuids=list(record.gpu_uuids))
        self._expire(copy, at)
        return copy

    def _current(self, lease_id: str, at: float) -> LeaseRecord | None:
        record = self._leases.get(lease_id)
        if record is not None:
            self._expire(record, at)
        return record

    def _expire_all(self, at: float) -> None:
        for record in self._leases.values():
            self._expire(record, at)

    def _prune(self, at: float) -> None:
        self._expire_all(at)
        for lease_id, record in list(self._leases.items()):
            if record.state == "ended" and at - record.updated > self.retention_s:
                del self._leases[lease_id]
        if len(self._leases) >= self.max_leases:
            ended = sorted(
                (r for r in self._leases.values() if r.state == "ended"), key=lambda r: r.updated
            )
            for record in ended[: len(self._leases) - self.max_leases + 1]:
                del self._leases[record.lease_id]

    # ------------------------------------------------------------------ invariants

    def validate(self) -> None:
        """Raise ``AssertionError`` unless the table is consistent (tests call it at teardown)."""
        assert len(self._leases) <= self.max_leases, "more leases than the table holds"
        for lease_id, record in self._leases.items():
            where = f"lease {lease_id}"
            assert record.lease_id == lease_id, f"{where} is filed under another id"
            assert record.state in ("starting", "active", "ended"), f"{where}: {record.state}"
            assert record.gpu_uuids, f"{where} holds no GPU"
            assert len(set(record.gpu_uuids)) == len(record.gpu_uuids), f"{where}: repeated GPU"
            if record.state == "starting":
                assert record.started_at == 0.0, f"{where} is starting but has a start time"
            if record.state == "active":
                assert record.started_at > 0.0, f"{where} is active without a start time"
            if record.stopped_at is not None:
                assert record.state == "ended", f"{where} was stopped but is {record.state}"
                assert record.stopped_at >= record.started_at, f"{where} stopped before it started"
            assert record.updated >= record.started_at, f"{where} changed before it started"


__all__ = [
    "LEASE_RETENTION_S",
    "MAX_LEASES",
    "LeaseTable",
]
