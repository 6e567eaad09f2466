"""The validator's leases as a synchronous state machine: the one place that decides them.

:meth:`LeaseBook.handle` takes events (:mod:`.lease_events`: a renter's request, the miner's
answer, a row written, a tick of the lease loop) and returns instructions (write a row, start or
stop at the miner, send a receipt, refuse the renter). It reads no clock (time comes in the
events) and does no I/O; ``neurons.validator.leasing.manager`` carries the instructions out and
feeds their results back. The store stays the record across restarts: the driver loads the
pending and active rows the book does not hold (:class:`~.lease_events.LeaseLoaded`).

A lease moves through these phases (the persisted status in brackets)::

    requested -> starting -> active -> ending (ended) -> forgotten
    (in memory)  (pending)    (active)  \\-> stopping (lost) -> forgotten
                  |  \\-> stopping (failed), or forgotten when the miner said no
                  \\-> orphaned (pending: no start runs in this process) -> stopping (failed)

A status changes in the book only once the store confirms the write, so a failed write leaves
the lease where it was. Each lease has at most one instruction in flight that expects a result
(``busy``); the tick skips busy leases, and the driver waits for a lease to be idle before it
feeds a termination.

The semantics are those of docs/leases-and-receipts.md ("The validator's side"): the miner
holds a lease until ``created + leases.max_duration_hours`` and the validator stops it at the
renter's end; the start receipt follows the miner's acceptance, an ``hourly`` one every
``receipt_interval_s`` (at most :data:`MAX_PERIOD_S`), and the ``end`` receipt follows the stop.
A receipt that fails on the link is sent again unchanged, one the miner refuses is dropped (its
period stays unbilled), and one still pending when the lease ends is dropped so the end receipt
can follow it. A lost worker ends the lease at its last stored receipt, with no end receipt.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from byteleap.aliases import WorkerRef
from byteleap.leases.receipts import MAX_PERIOD_S, ReceiptKind
from byteleap.sessions.lease_events import (
    AttemptAbandoned,
    BookTick,
    ExtendRequested,
    ExtensionPersisted,
    InsertLease,
    LeaseEvent,
    LeaseInserted,
    LeaseInstruction,
    LeaseLoaded,
    LeaseRequested,
    LeaseStopped,
    MinerAccepted,
    Notice,
    PersistExtension,
    PersistStatus,
    ReceiptCountersigned,
    ReceiptLinkFailed,
    ReceiptRefused,
    ReceiptStored,
    Refusal,
    RefuseRenter,
    SendReceipt,
    StartLinkFailed,
    StartPeerWrong,
    StartRefused,
    StatusPersisted,
    StopAtMiner,
    StopFailed,
    StoredLease,
    StoreReceipt,
    TerminateRequested,
)
from byteleap.sessions.lease_state import (
    HOLDING,
    Awaiting,
    LeaseEntry,
    LeaseRules,
    Phase,
    at_unix,
    check_invariants,
    draft_receipt,
    lost_reason,
    over_limit,
    start_at_miner,
    unix,
)


class LeaseBook:
    """Every pending, active and finishing lease of this validator (see the module docstring)."""

    def __init__(self, rules: LeaseRules) -> None:
        self.rules = rules
        self._entries: dict[str, LeaseEntry] = {}

    # ------------------------------------------------------------------ queries

    def lease(self, lease_id: str) -> StoredLease | None:
        entry = self._entries.get(lease_id)
        return None if entry is None else entry.lease

    def phase(self, lease_id: str) -> Phase | None:
        entry = self._entries.get(lease_id)
        return None if entry is None else entry.phase

    def knows(self, lease_id: str) -> bool:
        return lease_id in self._entries

    def busy(self, lease_id: str) -> bool:
        entry = self._entries.get(lease_id)
        return entry is not None and entry.busy

    def held_workers(self) -> set[WorkerRef]:
        return {e.lease.worker for e in self._entries.values() if e.phase in HOLDING}

    def __len__(self) -> int:
        return len(self._entries)

    # ------------------------------------------------------------------ events

    def handle(self, *events: LeaseEvent) -> list[LeaseInstruction]:
        out: list[LeaseInstruction] = []
        for event in events:
            out += self._handle(event)
        return out

    def _handle(self, event: LeaseEvent) -> list[LeaseInstruction]:
        match event:
            case LeaseRequested():
                return self._requested(event)
            case LeaseLoaded():
                return self._loaded(event)
            case ExtendRequested():
                return self._extend(event)
            case TerminateRequested(lease_id=lease_id, at=at):
                return self._terminate(lease_id, at)
            case BookTick():
                return [i for e in list(self._entries.values()) for i in self._tick(e, event)]
            case AttemptAbandoned():
                return self._abandoned(event)
        entry = self._entries.get(event.lease_id)
        if entry is None:
            return []
        match event:
            case LeaseInserted():
                entry.persisted = True
                return self._await(
                    entry, "start", start_at_miner(self.rules, entry), Phase.STARTING
                )
            case MinerAccepted(at=at):
                return self._move(entry, PersistStatus(entry.lease.id, "active", ("pending",), at))
            case StartRefused(reason=reason, at=at):
                entry.refusal = f"the miner refused the lease: {reason or 'no reason'}"
                return self._fail(entry, f"refused: {reason}", at, stop=False)
            case StartLinkFailed(error=error, at=at) | StartPeerWrong(error=error, at=at):
                return self._fail(entry, error, at, stop=True)
            case StatusPersisted():
                return self._persisted(entry, event)
            case ExtensionPersisted(moved=moved):
                return self._extended(entry, moved)
            case LeaseStopped(at=at) | StopFailed(at=at):
                entry.awaiting = None
                if entry.phase is Phase.ENDING:
                    return self._continue_ending(entry, at)
                return self._drop(entry)
            case ReceiptCountersigned(signed=signed):
                if entry.pending is None or signed.receipt != entry.pending:
                    error = "the countersigned receipt is another one"
                    return self._receipt_refused(entry, error, signed.receipt.issued_at)
                return self._await(entry, "store", StoreReceipt(entry.lease.id, signed))
            case ReceiptStored(at=at):
                return self._settled(entry, stored=True, at=at)
            case ReceiptRefused(error=error, at=at):
                return self._receipt_refused(entry, error, unix(at))
            case ReceiptLinkFailed(error=error, at=at):
                return self._receipt_deferred(entry, error, at)
        raise TypeError(f"not a lease event: {event!r}")

    # ------------------------------------------------------------------ booking

    def _requested(self, e: LeaseRequested) -> list[LeaseInstruction]:
        if e.lease_id in self._entries:
            raise ValueError(f"lease {e.lease_id} is booked already")
        limit = self.rules.max_duration_hours
        if e.duration_hours > limit:
            message = f"a lease lasts at most {limit} hours; {e.duration_hours:g} asked for"
            return [RefuseRenter(e.lease_id, Refusal.TOO_LONG, message)]
        booking = e.booking
        if booking is None:
            return [RefuseRenter(e.lease_id, Refusal.NO_CAPACITY, e.no_match)]
        if (booking.miner_hotkey, booking.worker_pubkey) in self.held_workers():
            message = "the chosen worker is held by another lease"
            return [RefuseRenter(e.lease_id, Refusal.NO_CAPACITY, message)]
        why = over_limit(e.spending, booking.price_per_gpu_hour * e.count * e.duration_hours)
        if why is not None:
            return [RefuseRenter(e.lease_id, Refusal.SPEND_LIMIT, why)]
        lease = StoredLease(
            id=e.lease_id,
            renter_id=e.renter_id,
            miner_hotkey=booking.miner_hotkey,
            worker_pubkey=booking.worker_pubkey,
            gpu_uuids=tuple(sorted(booking.gpu_uuids)),
            price_per_gpu_hour=booking.price_per_gpu_hour,
            created_at=e.at,
            ends_at=at_unix(unix(e.at) + round(e.duration_hours * 3600)),
            status="pending",
        )
        entry = LeaseEntry(lease, Phase.REQUESTED, 1, unix(e.at), endpoint=booking.endpoint)
        self._entries[lease.id] = entry
        return self._await(entry, "insert", InsertLease(lease))

    def _loaded(self, e: LeaseLoaded) -> list[LeaseInstruction]:
        lease = e.lease
        if lease.id in self._entries or lease.status not in ("pending", "active"):
            return []
        entry = LeaseEntry(
            lease,
            Phase.ACTIVE if lease.status == "active" else Phase.ORPHANED,
            next_seq=1 if e.receipt_seq is None else e.receipt_seq + 1,
            billed_until=unix(lease.start) if e.receipt_end is None else e.receipt_end,
            stored_until=e.receipt_end,
            persisted=True,
        )
        self._entries[lease.id] = entry
        return []

    def _extend(self, e: ExtendRequested) -> list[LeaseInstruction]:
        entry = self._entries.get(e.lease_id)
        lease = None if entry is None else entry.lease
        if (
            entry is None
            or lease is None
            or entry.phase is not Phase.ACTIVE
            or entry.moving is not None
            or entry.extending is not None
            or lease.ends_at <= e.at
        ):
            status = "not active" if lease is None else lease.status
            message = f"lease {e.lease_id} is {status}: it cannot be extended"
            return [RefuseRenter(e.lease_id, Refusal.NOT_ACTIVE, message)]
        ends_at = lease.ends_at + timedelta(seconds=round(e.hours * 3600))
        hours = (ends_at - lease.start).total_seconds() / 3600
        limit = self.rules.max_duration_hours
        if hours > limit:
            message = f"a lease lasts at most {limit} hours; {hours:g} asked for"
            return [RefuseRenter(e.lease_id, Refusal.TOO_LONG, message)]
        why = over_limit(e.spending, lease.price_per_gpu_hour * lease.gpus * e.hours)
        if why is not None:
            return [RefuseRenter(e.lease_id, Refusal.SPEND_LIMIT, why)]
        entry.extending = ends_at
        return [PersistExtension(lease.id, ends_at)]

    def _extended(self, entry: LeaseEntry, moved: bool) -> list[LeaseInstruction]:
        ends_at, entry.extending = entry.extending, None
        if not moved or ends_at is None:
            message = f"lease {entry.lease.id} ended meanwhile"
            return [RefuseRenter(entry.lease.id, Refusal.NOT_ACTIVE, message)]
        entry.lease = replace(entry.lease, ends_at=ends_at)
        return [Notice(entry.lease.id, "lease_extended", {"ends_at": ends_at.isoformat()})]

    def _terminate(self, lease_id: str, at: datetime) -> list[LeaseInstruction]:
        entry = self._entries.get(lease_id)
        if entry is None or entry.busy:
            return []
        if entry.phase in (Phase.REQUESTED, Phase.STARTING, Phase.ORPHANED):
            message = f"lease {lease_id} is still starting; try again in a moment"
            return [RefuseRenter(lease_id, Refusal.NOT_ACTIVE, message)]
        if entry.phase is Phase.ACTIVE:
            return self._end(entry, "terminated by the renter", at)
        return []

    # ------------------------------------------------------------------ status changes

    def _await(
        self,
        entry: LeaseEntry,
        what: Awaiting,
        instruction: LeaseInstruction,
        phase: Phase | None = None,
    ) -> list[LeaseInstruction]:
        entry.awaiting = what
        if phase is not None:
            entry.phase = phase
        return [instruction]

    def _move(self, entry: LeaseEntry, move: PersistStatus) -> list[LeaseInstruction]:
        entry.moving = move
        return self._await(entry, "status", move)

    def _fail(
        self, entry: LeaseEntry, reason: str, at: datetime, *, stop: bool
    ) -> list[LeaseInstruction]:
        entry.stop_after_fail = stop
        move = PersistStatus(entry.lease.id, "failed", ("pending",), ended_at=at, end_reason=reason)
        return self._move(entry, move)

    def _end(self, entry: LeaseEntry, reason: str, at: datetime) -> list[LeaseInstruction]:
        entry.end_at = at
        move = PersistStatus(entry.lease.id, "ended", ("active",), ended_at=at, end_reason=reason)
        return self._move(entry, move)

    def _lose(self, entry: LeaseEntry, reason: str) -> list[LeaseInstruction]:
        entry.pending, entry.flushing = None, False
        stored = entry.stored_until
        ended_at = entry.lease.start if stored is None else at_unix(stored)
        move = PersistStatus(
            entry.lease.id, "lost", ("active",), ended_at=ended_at, end_reason=reason
        )
        return self._move(entry, move)

    def _persisted(self, entry: LeaseEntry, e: StatusPersisted) -> list[LeaseInstruction]:
        move, entry.moving, entry.awaiting = entry.moving, None, None
        if move is None:
            return []
        lease = entry.lease
        if not e.moved:  # the row was moved by someone else: the store knows better
            del self._entries[lease.id]
            return [Notice(lease.id, "lease_moved_elsewhere", {"status": move.status})]
        entry.lease = lease = replace(
            lease,
            status=move.status,
            started_at=move.started_at or lease.started_at,
            ended_at=move.ended_at,
            end_reason=move.end_reason,
        )
        if move.status == "active":
            entry.phase = Phase.ACTIVE
            started = unix(lease.start)
            entry.next_seq, entry.billed_until = 1, started
            detail = {
                "miner": lease.miner_hotkey,
                "worker": lease.worker_pubkey[:16],
                "gpus": lease.gpus,
                "price": lease.price_per_gpu_hour,
                "ends_at": lease.ends_at.isoformat(),
            }
            notice = Notice(lease.id, "lease_started", detail)
            return [notice, *self._issue(entry, "start", started, started, e.at)]
        reason = move.end_reason or ""
        if move.status == "failed":
            out: list[LeaseInstruction] = [
                Notice(lease.id, "lease_start_failed", {"reason": reason})
            ]
            if entry.refusal is not None:
                out.append(RefuseRenter(lease.id, Refusal.START_FAILED, entry.refusal))
            if not entry.stop_after_fail:
                return [*out, *self._drop(entry)]
            stop = StopAtMiner(lease.id, lease.miner_hotkey, "lease start failed")
            return [*out, *self._await(entry, "stop", stop, Phase.STOPPING)]
        if move.status == "lost":
            detail = {"reason": reason, "billed_until": (lease.ended_at or lease.start).isoformat()}
            stop = StopAtMiner(lease.id, lease.miner_hotkey, reason)
            return [
                Notice(lease.id, "lease_lost", detail),
                *self._await(entry, "stop", stop, Phase.STOPPING),
            ]
        entry.phase = Phase.ENDING
        ended = {"reason": reason, "at": (entry.end_at or e.at).isoformat()}
        return [Notice(lease.id, "lease_ended", ended), *self._continue_ending(entry, e.at)]

    def _continue_ending(self, entry: LeaseEntry, at: datetime) -> list[LeaseInstruction]:
        """Stop at the miner, flush (or drop) the pending receipt, then the end receipt."""
        lease = entry.lease
        if not entry.stop_sent:
            entry.stop_sent = True
            stop = StopAtMiner(lease.id, lease.miner_hotkey, lease.end_reason or "ended")
            return self._await(entry, "stop", stop)
        if entry.pending is not None:
            return self._send(entry)
        if entry.end_issued:
            return self._drop(entry)
        entry.end_issued = True
        end = max(entry.billed_until, unix(entry.end_at or lease.ends_at))
        start = max(entry.billed_until, end - MAX_PERIOD_S)
        return self._issue(entry, "end", start, end, at)

    def _drop(self, entry: LeaseEntry) -> list[LeaseInstruction]:
        self._entries.pop(entry.lease.id, None)
        return []

    def _abandoned(self, e: AttemptAbandoned) -> list[LeaseInstruction]:
        what = e.instruction
        lease_id = what.lease.id if isinstance(what, InsertLease) else what.lease_id
        entry = self._entries.get(lease_id)
        if entry is None:
            return []
        if isinstance(what, PersistExtension):
            entry.extending = None
            return []
        entry.awaiting, entry.moving, entry.flushing = None, None, False
        if entry.phase is Phase.REQUESTED:
            return self._drop(entry)
        if entry.phase is Phase.STARTING:
            entry.phase = Phase.ORPHANED  # the tick fails it and stops it at the miner
        elif entry.phase is Phase.STOPPING:
            return self._drop(entry)
        return []

    # ------------------------------------------------------------------ the tick

    def _tick(self, entry: LeaseEntry, tick: BookTick) -> list[LeaseInstruction]:
        if entry.busy:
            return []
        lease, now = entry.lease, tick.at
        if entry.phase is Phase.ORPHANED:
            restarted = "the validator restarted while starting it"
            return self._fail(entry, restarted, now, stop=True)
        if entry.phase is Phase.ENDING:
            return self._continue_ending(entry, now)
        if entry.phase is not Phase.ACTIVE:
            return []
        if now >= lease.ends_at:
            return self._end(entry, "expired", lease.ends_at)
        sighting = tick.workers.get(lease.worker)
        reason = lost_reason(lease, sighting, now, self.rules.worker_lost_after_s)
        if reason is not None:
            return self._lose(entry, reason)
        if entry.pending is not None:
            entry.flushing = True
            return self._send(entry)
        return self._hourly_if_due(entry, now)

    def _hourly_if_due(self, entry: LeaseEntry, now: datetime) -> list[LeaseInstruction]:
        now_ts = unix(now)
        if now_ts - entry.billed_until < self.rules.receipt_interval_s:
            return []
        start = max(entry.billed_until, now_ts - MAX_PERIOD_S)
        return self._issue(entry, "hourly", start, now_ts, now)

    # ------------------------------------------------------------------ receipts

    def _issue(
        self,
        entry: LeaseEntry,
        kind: ReceiptKind,
        start: int,
        end: int,
        at: datetime,
    ) -> list[LeaseInstruction]:
        entry.pending = draft_receipt(self.rules, entry, kind, start, end, at)
        return self._send(entry)

    def _send(self, entry: LeaseEntry) -> list[LeaseInstruction]:
        assert entry.pending is not None
        lease = entry.lease
        return self._await(
            entry, "receipt", SendReceipt(lease.id, lease.miner_hotkey, entry.pending)
        )

    def _settled(self, entry: LeaseEntry, *, stored: bool, at: datetime) -> list[LeaseInstruction]:
        flushed = entry.settle(stored=stored)
        if entry.phase is Phase.ENDING:
            return self._continue_ending(entry, at)
        if entry.phase is Phase.ACTIVE and flushed:
            return self._hourly_if_due(entry, at)
        return []

    def _receipt_refused(self, entry: LeaseEntry, error: str, at: int) -> list[LeaseInstruction]:
        pending = entry.pending
        seq = None if pending is None else pending.seq
        notice = Notice(entry.lease.id, "receipt_refused", {"seq": seq, "error": error})
        return [notice, *self._settled(entry, stored=False, at=at_unix(at))]

    def _receipt_deferred(
        self, entry: LeaseEntry, error: str, at: datetime
    ) -> list[LeaseInstruction]:
        entry.awaiting, entry.flushing = None, False
        pending = entry.pending
        seq = None if pending is None else pending.seq
        notice = Notice(entry.lease.id, "receipt_deferred", {"seq": seq, "error": error})
        if entry.phase is Phase.ENDING and not entry.end_issued:
            # still not countersigned: give it up so the end receipt can follow it
            return [notice, *self._settled(entry, stored=False, at=at)]
        return [notice]

    def validate(self) -> None:
        """Raise ``AssertionError`` where the book breaks an invariant (see
        :func:`~.lease_state.check_invariants`)."""
        check_invariants(self._entries)


__all__ = ["LeaseBook", "LeaseRules", "Phase"]
