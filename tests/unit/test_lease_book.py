"""The validator's lease book: events in, instructions out, with its invariants checked after
every test (the ``book`` fixture) and after every step of random event sequences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byteleap.leases.receipts import check_chain
from byteleap.protocol.miner_api.receipts import Receipt, SignedReceipt
from byteleap.sessions.lease_book import LeaseBook, LeaseRules, Phase
from byteleap.sessions.lease_events import (
    AttemptAbandoned,
    Booking,
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
    Spending,
    StartAtMiner,
    StartLinkFailed,
    StartRefused,
    StatusPersisted,
    StopAtMiner,
    StopFailed,
    StoredLease,
    StoreReceipt,
    TerminateRequested,
    WorkerSighting,
)

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
RULES = LeaseRules(
    netuid=128,
    validator_hotkey="5Validator",
    receipt_interval_s=3600,
    max_duration_hours=144,
    worker_lost_after_s=600,
)
WORKER = "ab" * 32
FREE = Spending(0.0, None)


def booking(worker: str = WORKER, gpus: tuple[str, ...] = ("GPU-1",)) -> Booking:
    return Booking("5Miner", worker, "http://127.0.0.1:1", gpus, 2.0)


def requested(lease_id: str = "L1", hours: float = 5, **kw: object) -> LeaseRequested:
    values: dict[str, object] = {
        "lease_id": lease_id,
        "renter_id": 1,
        "duration_hours": hours,
        "count": 1,
        "booking": booking(),
        "no_match": "",
        "spending": FREE,
        "at": T0,
    }
    values.update(kw)
    return LeaseRequested(**values)  # type: ignore[arg-type]


def tick(at: datetime) -> BookTick:
    """A tick at which the polls see the worker online, holding the lease."""
    return BookTick(at, {("5Miner", WORKER): WorkerSighting(True, at, "leased")})


def countersigned(receipt: Receipt) -> SignedReceipt:
    return SignedReceipt(receipt=receipt, validator_signature=b"v" * 64, miner_signature=b"m" * 64)


@pytest.fixture
def book() -> Iterator[LeaseBook]:
    """A fresh book whose invariants must hold when the test ends (as dask's fixtures do)."""
    made = LeaseBook(RULES)
    yield made
    made.validate()


def only(instructions: list[LeaseInstruction], kind: type) -> list[LeaseInstruction]:
    return [i for i in instructions if not isinstance(i, Notice) and isinstance(i, kind)]


def start(book: LeaseBook, at: datetime = T0) -> Receipt:
    """Book and start L1; the start receipt is left pending."""
    (insert,) = book.handle(requested(at=at))
    assert isinstance(insert, InsertLease)
    (start_at,) = book.handle(LeaseInserted("L1"))
    assert isinstance(start_at, StartAtMiner)
    (persist,) = book.handle(MinerAccepted("L1", at))
    assert isinstance(persist, PersistStatus) and persist.status == "active"
    (send,) = only(book.handle(StatusPersisted("L1", True, at)), SendReceipt)
    assert isinstance(send, SendReceipt)
    return send.receipt


def settle(book: LeaseBook, receipt: Receipt, at: datetime) -> list[LeaseInstruction]:
    (store,) = book.handle(ReceiptCountersigned(receipt.lease_id, countersigned(receipt)))
    assert isinstance(store, StoreReceipt)
    return book.handle(ReceiptStored(receipt.lease_id, receipt.seq, at))


def active(book: LeaseBook) -> Receipt:
    first = start(book)
    assert settle(book, first, T0) == []
    return first


# --------------------------------------------------------------------------- booking


def test_a_request_is_written_then_started_held_until_the_cap(book: LeaseBook) -> None:
    (insert,) = book.handle(requested(hours=2.5))
    assert isinstance(insert, InsertLease)
    assert insert.lease.status == "pending"
    assert insert.lease.ends_at == T0 + timedelta(hours=2.5)
    assert book.held_workers() == {("5Miner", WORKER)} and book.busy("L1")
    (start_at,) = book.handle(LeaseInserted("L1"))
    assert start_at == StartAtMiner(
        "L1",
        "5Miner",
        "http://127.0.0.1:1",
        WORKER,
        ("GPU-1",),
        hold_until=int(T0.timestamp()) + 144 * 3600,
    )
    assert book.phase("L1") is Phase.STARTING


def test_refusals_come_in_the_documented_order(book: LeaseBook) -> None:
    too_long = book.handle(requested(hours=145, booking=None, no_match="none"))
    assert too_long == [
        RefuseRenter("L1", Refusal.TOO_LONG, "a lease lasts at most 144 hours; 145 asked for")
    ]
    assert book.handle(requested(booking=None, no_match="none here")) == [
        RefuseRenter("L1", Refusal.NO_CAPACITY, "none here")
    ]
    (over,) = book.handle(requested(spending=Spending(9.0, 10.0)))
    assert isinstance(over, RefuseRenter) and over.refusal is Refusal.SPEND_LIMIT
    assert len(book) == 0
    book.handle(requested())
    (held,) = book.handle(requested("L2"))  # the same worker again
    assert isinstance(held, RefuseRenter) and held.refusal is Refusal.NO_CAPACITY


def test_the_start_receipt_follows_the_acceptance_and_hourly_ones_the_interval(
    book: LeaseBook,
) -> None:
    first = start(book)
    assert (first.seq, first.kind, first.period_start, first.period_end) == (
        0,
        "start",
        int(T0.timestamp()),
        int(T0.timestamp()),
    )
    assert first.gpu_uuids == ["GPU-1"] and first.price_per_gpu_hour_micros == 2_000_000
    assert settle(book, first, T0) == []
    assert book.handle(tick(T0 + timedelta(minutes=59))) == []
    at = T0 + timedelta(hours=1)
    (send,) = book.handle(tick(at))
    assert isinstance(send, SendReceipt)
    assert (send.receipt.seq, send.receipt.kind) == (1, "hourly")
    assert send.receipt.period_start == first.period_end
    assert send.receipt.period_end == int(at.timestamp())


def test_a_refused_start_fails_without_a_stop_and_answers_the_renter(book: LeaseBook) -> None:
    book.handle(requested(), LeaseInserted("L1"))
    (persist,) = book.handle(StartRefused("L1", "busy", T0))
    assert isinstance(persist, PersistStatus)
    assert (persist.status, persist.end_reason) == ("failed", "refused: busy")
    out = book.handle(StatusPersisted("L1", True, T0))
    assert only(out, RefuseRenter) == [
        RefuseRenter("L1", Refusal.START_FAILED, "the miner refused the lease: busy")
    ]
    assert only(out, StopAtMiner) == [] and not book.knows("L1")


def test_a_start_lost_on_the_link_fails_and_is_stopped(book: LeaseBook) -> None:
    book.handle(requested(), LeaseInserted("L1"))
    (persist,) = book.handle(StartLinkFailed("L1", "timeout: no answer", T0))
    assert isinstance(persist, PersistStatus) and persist.end_reason == "timeout: no answer"
    out = book.handle(StatusPersisted("L1", True, T0))
    assert only(out, StopAtMiner) == [StopAtMiner("L1", "5Miner", "lease start failed")]
    assert only(out, RefuseRenter) == []
    assert book.handle(StopFailed("L1", "down", T0)) == [] and not book.knows("L1")


def test_a_start_abandoned_is_failed_by_the_next_tick(book: LeaseBook) -> None:
    book.handle(requested())
    (start_at,) = book.handle(LeaseInserted("L1"))
    assert book.handle(AttemptAbandoned(start_at)) == []
    assert book.phase("L1") is Phase.ORPHANED and book.held_workers()
    (persist,) = book.handle(tick(T0))
    assert isinstance(persist, PersistStatus)
    assert persist.end_reason == "the validator restarted while starting it"


def test_an_insert_that_failed_forgets_the_booking(book: LeaseBook) -> None:
    (insert,) = book.handle(requested())
    assert book.handle(AttemptAbandoned(insert)) == [] and not book.knows("L1")


# --------------------------------------------------------------------------- receipts


def test_a_receipt_lost_on_the_link_is_sent_again_unchanged(book: LeaseBook) -> None:
    active(book)
    at = T0 + timedelta(hours=1)
    (send,) = book.handle(tick(at))
    assert isinstance(send, SendReceipt)
    assert only(book.handle(ReceiptLinkFailed("L1", 1, "down", at)), SendReceipt) == []
    (again,) = book.handle(tick(at + timedelta(seconds=10)))
    assert again == send


def test_a_refused_receipt_leaves_a_gap_and_the_next_one_moves_on(book: LeaseBook) -> None:
    active(book)
    at = T0 + timedelta(hours=1)
    (send,) = book.handle(tick(at))
    assert isinstance(send, SendReceipt)
    assert only(book.handle(ReceiptRefused("L1", 1, "forbidden", at)), SendReceipt) == []
    later = at + timedelta(hours=1)
    (next_one,) = book.handle(tick(later))
    assert isinstance(next_one, SendReceipt)
    assert next_one.receipt.seq == 2 and next_one.receipt.period_start == send.receipt.period_end


def test_a_flushed_receipt_is_followed_by_a_due_hourly_one(book: LeaseBook) -> None:
    active(book)
    at = T0 + timedelta(hours=1)
    (send,) = book.handle(tick(at))
    assert isinstance(send, SendReceipt)
    book.handle(ReceiptLinkFailed("L1", 1, "down", at))
    late = at + timedelta(hours=1)
    (flush,) = book.handle(tick(late))
    assert flush == send
    (hourly,) = only(settle(book, send.receipt, late), SendReceipt)
    assert isinstance(hourly, SendReceipt) and hourly.receipt.seq == 2


# --------------------------------------------------------------------------- ends


def test_expiry_stops_then_issues_the_end_receipt_up_to_ends_at(book: LeaseBook) -> None:
    active(book)
    ends = T0 + timedelta(hours=5)
    (persist,) = book.handle(tick(ends + timedelta(seconds=3)))
    assert isinstance(persist, PersistStatus)
    assert (persist.status, persist.ended_at, persist.end_reason) == ("ended", ends, "expired")
    (stop,) = only(book.handle(StatusPersisted("L1", True, ends)), StopAtMiner)
    assert stop == StopAtMiner("L1", "5Miner", "expired")
    (send,) = book.handle(LeaseStopped("L1", True, ends + timedelta(seconds=4)))
    assert isinstance(send, SendReceipt)
    assert (send.receipt.kind, send.receipt.period_end) == ("end", int(ends.timestamp()))
    assert send.receipt.issued_at == int(ends.timestamp()) + 4
    assert settle(book, send.receipt, ends) == [] and not book.knows("L1")


def test_a_receipt_pending_at_the_end_is_dropped_so_the_end_receipt_follows(
    book: LeaseBook,
) -> None:
    active(book)
    at = T0 + timedelta(hours=1)
    (hourly,) = book.handle(tick(at))
    assert isinstance(hourly, SendReceipt)
    book.handle(ReceiptLinkFailed("L1", 1, "down", at))
    book.handle(TerminateRequested("L1", at + timedelta(minutes=5)))
    book.handle(StatusPersisted("L1", True, at))
    (flush,) = book.handle(LeaseStopped("L1", False, at))
    assert flush == hourly
    (end,) = only(book.handle(ReceiptLinkFailed("L1", 1, "down", at)), SendReceipt)
    assert isinstance(end, SendReceipt) and end.receipt.kind == "end"
    assert end.receipt.seq == 2 and end.receipt.period_start == hourly.receipt.period_end
    # the end receipt itself is kept and sent again at the ticks
    assert only(book.handle(ReceiptLinkFailed("L1", 2, "down", at)), SendReceipt) == []
    assert book.handle(tick(at + timedelta(seconds=10))) == [end]


def test_a_pending_lease_cannot_be_terminated_or_extended(book: LeaseBook) -> None:
    book.handle(requested(), LeaseInserted("L1"))
    book.handle(AttemptAbandoned(StartAtMiner("L1", "5Miner", "", WORKER, ("GPU-1",), 0)))
    (refused,) = book.handle(TerminateRequested("L1", T0))
    assert isinstance(refused, RefuseRenter) and refused.refusal is Refusal.NOT_ACTIVE
    (refused,) = book.handle(ExtendRequested("L1", 1, FREE, T0))
    assert isinstance(refused, RefuseRenter) and refused.refusal is Refusal.NOT_ACTIVE


def test_a_lost_worker_ends_billing_at_the_last_stored_receipt(book: LeaseBook) -> None:
    active(book)
    seen = {("5Miner", WORKER): WorkerSighting(False, T0 + timedelta(minutes=1), "leased")}
    assert book.handle(BookTick(T0 + timedelta(minutes=5), seen)) == []
    (persist,) = book.handle(BookTick(T0 + timedelta(minutes=12), seen))
    assert isinstance(persist, PersistStatus)
    assert (persist.status, persist.ended_at) == ("lost", T0)
    assert persist.end_reason == "the worker has been missing from its miner's polls"
    out = book.handle(StatusPersisted("L1", True, T0))
    assert only(out, SendReceipt) == [] and len(only(out, StopAtMiner)) == 1
    assert book.handle(LeaseStopped("L1", True, T0)) == [] and not book.knows("L1")


def test_an_extension_is_capped_by_duration_and_spending(book: LeaseBook) -> None:
    active(book)
    (persist,) = book.handle(ExtendRequested("L1", 2, Spending(10.0, 20.0), T0))
    assert persist == PersistExtension("L1", T0 + timedelta(hours=7))
    assert only(book.handle(ExtensionPersisted("L1", True)), RefuseRenter) == []
    assert book.lease("L1").ends_at == T0 + timedelta(hours=7)  # type: ignore[union-attr]
    (too_long,) = book.handle(ExtendRequested("L1", 200, FREE, T0))
    assert isinstance(too_long, RefuseRenter) and too_long.refusal is Refusal.TOO_LONG
    (over,) = book.handle(ExtendRequested("L1", 2, Spending(18.0, 20.0), T0))
    assert isinstance(over, RefuseRenter) and over.refusal is Refusal.SPEND_LIMIT


def test_a_loaded_row_resumes_its_receipt_chain(book: LeaseBook) -> None:
    lease = StoredLease("L9", 1, "5Miner", WORKER, ("GPU-1",), 1.0, T0, T0 + timedelta(hours=9),
                  "active", started_at=T0)  # fmt: skip
    start_ts = int(T0.timestamp())
    assert book.handle(LeaseLoaded(lease, 3, start_ts + 3 * 3600)) == []
    (send,) = book.handle(tick(T0 + timedelta(hours=4)))
    assert isinstance(send, SendReceipt)
    assert (send.receipt.seq, send.receipt.period_start) == (4, start_ts + 3 * 3600)


# --------------------------------------------------------------------------- properties


def answer(
    book: LeaseBook, instruction: LeaseInstruction, choice: int, at: datetime
) -> list[LeaseEvent]:
    """One possible result of ``instruction`` (``choice`` picks among them)."""
    match instruction:
        case InsertLease(lease=lease):
            return [LeaseInserted(lease.id)] if choice % 4 else [AttemptAbandoned(instruction)]
        case StartAtMiner(lease_id=lease_id):
            options: list[LeaseEvent] = [
                MinerAccepted(lease_id, at),
                StartRefused(lease_id, "busy", at),
                StartLinkFailed(lease_id, "timeout", at),
                AttemptAbandoned(instruction),
            ]
            return [options[choice % 4]]
        case PersistStatus(lease_id=lease_id):
            return [StatusPersisted(lease_id, choice % 5 != 0, at)]
        case PersistExtension(lease_id=lease_id):
            return [ExtensionPersisted(lease_id, choice % 3 != 0)]
        case StopAtMiner(lease_id=lease_id):
            return (
                [LeaseStopped(lease_id, True, at)]
                if choice % 2
                else [StopFailed(lease_id, "x", at)]
            )
        case SendReceipt(lease_id=lease_id, receipt=receipt):
            options = [
                ReceiptCountersigned(lease_id, countersigned(receipt)),
                ReceiptRefused(lease_id, receipt.seq, "forbidden", at),
                ReceiptLinkFailed(lease_id, receipt.seq, "down", at),
            ]
            return [options[choice % 3]]
        case StoreReceipt(lease_id=lease_id, signed=signed):
            if choice % 4 == 0:
                return [AttemptAbandoned(instruction)]
            return [ReceiptStored(lease_id, signed.receipt.seq, at)]
    return []


WORKERS = [("5Miner", "ab" * 32), ("5Miner", "cd" * 32), ("5Other", "ab" * 32)]

stimulus = st.one_of(
    st.tuples(st.just("request"), st.integers(0, 2), st.floats(0.1, 200)),
    st.tuples(st.just("tick"), st.integers(1, 7200), st.integers(0, 3)),
    st.tuples(st.just("terminate"), st.integers(0, 9), st.just(0)),
    st.tuples(st.just("extend"), st.integers(0, 9), st.floats(0.1, 100)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.tuples(stimulus, st.lists(st.integers(0, 11), max_size=12)), max_size=30))
def test_random_event_sequences_keep_the_invariants(
    steps: list[tuple[tuple[str, int, float], list[int]]],
) -> None:
    book = LeaseBook(RULES)
    now = T0
    sent: dict[str, list[Receipt]] = {}
    made = 0
    for (kind, a, b), choices in steps:
        if kind == "request":
            made += 1
            miner, worker = WORKERS[a]
            event: LeaseEvent = requested(
                f"L{made}",
                hours=b,
                booking=Booking(miner, worker, "e", (f"{miner}-{worker}",), 1.0),
                at=now,
            )
        elif kind == "tick":
            now += timedelta(seconds=a)
            state = ["leased", "idle", "offline", "gone"][int(b)]
            sightings = {
                w: WorkerSighting(state != "offline", now - timedelta(seconds=a), state)
                for w in WORKERS
                if state != "gone"
            }
            event = BookTick(now, sightings)
        elif kind == "terminate":
            event = TerminateRequested(f"L{a}", now)
        else:
            event = ExtendRequested(f"L{a}", b, FREE, now)
        queue = list(book.handle(event))
        book.validate()
        picks = iter(choices)
        while queue:
            instruction = queue.pop(0)
            if isinstance(instruction, SendReceipt):
                sent.setdefault(instruction.lease_id, []).append(instruction.receipt)
            for result in answer(book, instruction, next(picks, 1), now):
                queue.extend(book.handle(result))
                book.validate()
    for receipts in sent.values():  # every lease's receipts form one chain: no overlap, seq grows
        check_chain(receipts)
