"""The miner's LeaseTable: events in, instructions out; invariants checked at teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from byteleap.errors import Forbidden, PeerUnavailable
from byteleap.leases.receipts import Receipt
from byteleap.sessions.lease_table_events import (
    Answer,
    ForwardRequested,
    IssueReceipt,
    LeaseRecord,
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
from byteleap.sessions.miner_leases import LEASE_RETENTION_S, LeaseTable

V1, V2 = "validator-one", "validator-two"
WORKER, OTHER_WORKER = "aa" * 32, "bb" * 32
GPUS = ("GPU-1", "GPU-2")


@pytest.fixture
def table() -> Iterator[LeaseTable]:
    """A fresh table whose invariants are checked when the test ends, whatever it did."""
    leases = LeaseTable()
    yield leases
    leases.validate()


def start(
    at: float = 100.0, lease_id: str = "L1", caller: str = V1, **kw: object
) -> StartRequested:
    fields: dict[str, object] = {
        "at": at,
        "caller": caller,
        "lease_id": lease_id,
        "worker_pubkey": WORKER,
        "gpu_uuids": GPUS,
        "ends_at": 1000,
    }
    fields.update(kw)
    return StartRequested(**fields)  # type: ignore[arg-type]


def active(table: LeaseTable, lease_id: str = "L1", at: float = 100.0) -> None:
    table.handle(start(at, lease_id), StartAcked(at + 1, lease_id, True))


def receipt(**kw: object) -> Receipt:
    fields: dict[str, object] = {
        "netuid": 128,
        "lease_id": "L1",
        "seq": 0,
        "kind": "start",
        "validator_hotkey": "5" + "V" * 47,
        "miner_hotkey": "5" + "M" * 47,
        "worker_pubkey": WORKER,
        "gpu_uuids": sorted(GPUS),
        "gpus": 2,
        "price_per_gpu_hour_micros": 1,
        "period_start": 101,
        "period_end": 500,
        "issued_at": 500,
    }
    fields.update(kw)
    return Receipt(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- start


def test_a_start_asks_the_worker_then_persists_and_answers_on_its_ack(table: LeaseTable) -> None:
    assert table.handle(start()) == [StartAtWorker("L1", WORKER, GPUS, 1000)]
    assert table.leased(WORKER, 100.0)  # starting already keeps challenges off the worker
    out = table.handle(StartAcked(101.0, "L1", True, "ok"))
    assert isinstance(out[0], Persist) and out[0].record.state == "active"
    assert out[0].record.started_at == 101.0
    assert out[1:] == [Answer("L1", True, "ok")]
    lease = table.get("L1", 102.0)
    assert lease is not None and lease.owner == V1 and lease.ends_at == 1000


def test_a_refused_or_lost_start_leaves_no_lease(table: LeaseTable) -> None:
    table.handle(start())
    assert table.handle(StartAcked(101.0, "L1", False, "busy")) == [Answer("L1", False, "busy")]
    assert table.get("L1", 101.0) is None and not table.leased(WORKER, 101.0)
    table.handle(start(lease_id="L2"))
    assert table.handle(WorkerLost(101.0, "L2")) == []
    assert table.get("L2", 101.0) is None


def test_a_retry_of_an_active_lease_is_answered_without_asking_the_worker(
    table: LeaseTable,
) -> None:
    active(table)
    assert table.handle(start(at=200.0)) == [Answer("L1", True)]


def test_a_lease_id_taken_by_another_lease_is_forbidden_and_changes_nothing(
    table: LeaseTable,
) -> None:
    active(table)
    before = table.records(150.0)
    with pytest.raises(Forbidden):
        table.handle(start(at=150.0, caller=V2))
    with pytest.raises(Forbidden):
        table.handle(start(at=150.0, worker_pubkey=OTHER_WORKER))
    assert table.records(150.0) == before


def test_a_lease_ending_in_the_past_is_not_started(table: LeaseTable) -> None:
    assert table.handle(start(at=1000.0)) == [Answer("L1", False, "ends_at is in the past")]
    assert len(table) == 0


def test_an_ended_lease_id_may_be_started_again(table: LeaseTable) -> None:
    active(table)
    table.handle(StopRequested(200.0, V1, "L1", "done"), StopAcked(201.0, "L1", True))
    assert table.handle(start(at=300.0, ends_at=2000)) == [StartAtWorker("L1", WORKER, GPUS, 2000)]


def test_a_full_table_refuses_new_leases_but_makes_room_from_ended_ones() -> None:
    table = LeaseTable(max_leases=2)
    active(table, "L1")
    active(table, "L2")
    with pytest.raises(PeerUnavailable):
        table.handle(start(lease_id="L3"))
    table.handle(StopRequested(200.0, V1, "L1", "done"), StopAcked(201.0, "L1", True))
    assert table.handle(start(at=202.0, lease_id="L3")) == [StartAtWorker("L3", WORKER, GPUS, 1000)]
    assert table.get("L1", 202.0) is None
    table.validate()


# --------------------------------------------------------------------------- stop and expiry


def test_a_stop_asks_the_worker_and_ends_the_lease_whatever_it_answers(table: LeaseTable) -> None:
    active(table)
    assert table.handle(StopRequested(200.0, V1, "L1", "renter")) == [
        StopAtWorker("L1", WORKER, "renter")
    ]
    out = table.handle(StopAcked(201.0, "L1", False, "unknown lease"))
    assert isinstance(out[0], Persist)
    assert out[0].record.state == "ended" and out[0].record.stopped_at == 201.0
    assert out[1:] == [Answer("L1", False, "unknown lease")]
    assert not table.leased(WORKER, 202.0)
    lease = table.get("L1", 202.0)
    assert lease is not None and lease.billable_until == 201.0


def test_stops_of_unknown_ended_and_foreign_leases(table: LeaseTable) -> None:
    assert table.handle(StopRequested(1.0, V1, "nope", "x")) == [
        Answer("nope", False, "unknown lease")
    ]
    active(table)
    with pytest.raises(Forbidden):
        table.handle(StopRequested(200.0, V2, "L1", "x"))
    assert table.handle(StopRequested(1000.0, V1, "L1", "x")) == [
        Answer("L1", True, "already ended")
    ]


def test_a_lost_worker_does_not_end_an_active_lease(table: LeaseTable) -> None:
    active(table)
    table.handle(StopRequested(200.0, V1, "L1", "x"))
    assert table.handle(WorkerLost(201.0, "L1")) == []
    lease = table.get("L1", 201.0)
    assert lease is not None and lease.state == "active"


def test_a_lease_ends_at_its_end_and_is_forgotten_after_the_retention(table: LeaseTable) -> None:
    active(table)
    assert table.leased(WORKER, 999.0) and not table.leased(WORKER, 1000.0)
    lease = table.get("L1", 1000.0)
    assert lease is not None and lease.state == "ended" and lease.billable_until == 1000.0
    table.handle(TableTick(1000.0))
    table.handle(TableTick(1000.0 + LEASE_RETENTION_S))
    assert table.get("L1", 1000.0 + LEASE_RETENTION_S) is not None
    table.handle(TableTick(1001.0 + LEASE_RETENTION_S))
    assert len(table) == 0


def test_leases_of_names_the_holder_and_the_end(table: LeaseTable) -> None:
    active(table)
    (lease,) = table.leases_of(WORKER, 500.0)
    assert (lease.owner, lease.ends_at) == (V1, 1000)
    assert table.leases_of(OTHER_WORKER, 500.0) == []


def test_queries_hand_out_copies(table: LeaseTable) -> None:
    active(table)
    lease = table.get("L1", 500.0)
    assert lease is not None
    lease.state = "ended"
    lease.gpu_uuids.append("GPU-9")
    assert table.leased(WORKER, 500.0)
    again = table.get("L1", 500.0)
    assert again is not None and again.gpu_uuids == list(GPUS)


def test_records_from_a_store_are_loaded() -> None:
    record = LeaseRecord("L1", V1, WORKER, list(GPUS), 1000, "active", 5.0, started_at=5.0)
    table = LeaseTable.from_records([record])
    assert table.leased(WORKER, 6.0)
    table.validate()


# --------------------------------------------------------------------------- forwarding


def test_forwarding_relays_to_the_leases_worker_for_its_owner_only(table: LeaseTable) -> None:
    active(table)
    assert table.handle(ForwardRequested(200.0, V1, "L1", WORKER, submit=True)) == [
        Relay("L1", WORKER)
    ]
    with pytest.raises(Forbidden):
        table.handle(ForwardRequested(200.0, V2, "L1"))
    with pytest.raises(Forbidden):
        table.handle(ForwardRequested(200.0, V1, "L1", OTHER_WORKER))


def test_forwarding_refuses_unknown_leases_and_new_jobs_on_ended_ones(table: LeaseTable) -> None:
    (refusal,) = table.handle(ForwardRequested(1.0, V1, "nope"))
    assert isinstance(refusal, RefuseJob) and refusal.refusal == "unknown_lease"
    active(table)
    (refusal,) = table.handle(ForwardRequested(1000.0, V1, "L1", submit=True))
    assert isinstance(refusal, RefuseJob) and refusal.refusal == "lease_ended"
    # queries about the jobs of an ended lease still reach the worker
    assert table.handle(ForwardRequested(1000.0, V1, "L1")) == [Relay("L1", WORKER)]


def test_a_starting_lease_takes_no_jobs(table: LeaseTable) -> None:
    table.handle(start())
    (refusal,) = table.handle(ForwardRequested(100.0, V1, "L1", submit=True))
    assert isinstance(refusal, RefuseJob) and "starting" in refusal.reason


# --------------------------------------------------------------------------- receipts


def test_a_receipt_inside_the_lease_is_countersigned(table: LeaseTable) -> None:
    active(table)
    offered = receipt()
    assert table.handle(ReceiptOffered(500.0, V1, offered, 5)) == [IssueReceipt(offered)]


@pytest.mark.parametrize(
    ("caller", "changes", "words"),
    [
        (V2, {}, "another validator"),
        (V1, {"lease_id": "nope"}, "no lease"),
        (V1, {"worker_pubkey": OTHER_WORKER}, "another worker"),
        (V1, {"gpu_uuids": ["GPU-1"], "gpus": 1}, "other GPUs"),
        (V1, {"period_start": 90}, "before the lease started"),
        (V1, {"period_end": 1006}, "after the lease ended"),
    ],
)
def test_receipts_that_do_not_fit_the_lease_are_forbidden(
    table: LeaseTable, caller: str, changes: dict[str, object], words: str
) -> None:
    active(table)
    with pytest.raises(Forbidden, match=words):
        table.handle(ReceiptOffered(500.0, caller, receipt(**changes), 5))


def test_no_receipt_for_a_lease_still_starting_or_past_its_stop(table: LeaseTable) -> None:
    table.handle(start())
    with pytest.raises(Forbidden, match="no lease"):
        table.handle(ReceiptOffered(100.0, V1, receipt(), 5))
    table.handle(StartAcked(101.0, "L1", True), StopRequested(300.0, V1, "L1", "x"))
    table.handle(StopAcked(300.0, "L1", True))
    with pytest.raises(Forbidden, match="after the lease ended"):
        table.handle(ReceiptOffered(400.0, V1, receipt(period_end=400), 5))


# --------------------------------------------------------------------------- invariants


def test_validate_catches_a_broken_table() -> None:
    table = LeaseTable()
    active(table)
    table._leases["L1"].stopped_at = 5.0  # a stopped lease that is still active
    with pytest.raises(AssertionError, match="stopped"):
        table.validate()
