"""The receipt_mint cheater's colluding validator: it leases the miner's workers without any
renter, through the miner's own lease routes, and mints receipts the miner countersigns.

The miner here is a stand-in that applies the real miner's receipt rules (a receipt only for a
lease it routed, for the validator that started it, with its worker and GPUs, within its life,
each one a valid successor of the last), so a receipt the colluder gets countersigned here is
one the real miner would countersign too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from byteleap.errors import Forbidden, LinkError
from byteleap.leases.receipts import check_chain, check_receipt, check_successor
from byteleap.protocol.miner_api.forward import ForwardedAnswer, ForwardedMessage
from byteleap.protocol.miner_api.inventory import GpuSummary, InventoryResponse, WorkerSummary
from byteleap.protocol.miner_api.receipts import Receipt, ReceiptSubmitResponse, SignedReceipt
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from devnet.colluder import (
    Ledger,
    ReceiptMint,
    endpoint_url,
    miner_at,
    read_ledger,
)

COLLUDER = "5ColluderHotkey"
MINER = "5MinerHotkey"
NETUID = 128


@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeMiner:
    """The miner's lease and receipt routes, with the real miner's rules."""

    clock: Callable[[], float]
    workers: dict[str, list[str]]
    refuse_leases: int = 0
    leases: dict[str, tuple[str, str, list[str], float]] = field(default_factory=dict)
    receipts: list[Receipt] = field(default_factory=list)
    unreachable: bool = False

    async def inventory(self) -> InventoryResponse:
        if self.unreachable:
            raise LinkError("connection refused")
        return InventoryResponse(
            miner_hotkey=MINER,
            workers=[
                WorkerSummary(
                    worker_pubkey=pubkey,
                    state="idle",
                    gpus=[GpuSummary(uuid=u, name="CPU", memory_total_mib=1024) for u in gpus],
                    last_heartbeat=self.clock(),
                )
                for pubkey, gpus in self.workers.items()
            ],
        )

    async def forward(self, worker_pubkey: str, message: ForwardedMessage) -> ForwardedAnswer:
        assert isinstance(message, LeaseStart)
        if self.refuse_leases:
            self.refuse_leases -= 1
            return LeaseAck(lease_id=message.lease_id, accepted=False, reason="busy")
        assert message.ends_at > self.clock()
        self.leases[message.lease_id] = (
            COLLUDER,
            worker_pubkey,
            list(message.gpu_uuids),
            self.clock(),
        )
        return LeaseAck(lease_id=message.lease_id, accepted=True)

    async def submit_receipt(self, receipt: Receipt) -> ReceiptSubmitResponse:
        check_receipt(receipt, now=int(self.clock()))
        lease = self.leases.get(receipt.lease_id)
        if lease is None:
            raise Forbidden(f"this miner routed no lease {receipt.lease_id}")
        owner, worker, gpus, started = lease
        assert receipt.validator_hotkey == owner and receipt.miner_hotkey == MINER
        if worker != receipt.worker_pubkey or sorted(gpus) != receipt.gpu_uuids:
            raise Forbidden("the receipt names another worker or other GPUs than the lease")
        if receipt.period_start < started - 120:
            raise Forbidden("the receipt's period starts before the lease started")
        previous = [r for r in self.receipts if r.lease_id == receipt.lease_id]
        check_successor(previous[-1] if previous else None, receipt)
        self.receipts.append(receipt)
        signed = SignedReceipt(
            receipt=receipt, validator_signature=bytes(64), miner_signature=bytes(64)
        )
        return ReceiptSubmitResponse(signed=signed, cursor=len(self.receipts))


def pubkey(n: int) -> str:
    return f"{n:02x}" * 32


def minter(
    tmp_path: Path,
    miner: FakeMiner,
    clock: Callable[[], float],
    *,
    start_file: Path | None = None,
) -> ReceiptMint:
    async def find() -> str | None:
        return MINER

    mint = ReceiptMint(
        hotkey=COLLUDER,
        netuid=NETUID,
        find_miner=find,
        connect=lambda _hotkey: miner,
        ledger=Ledger(tmp_path / "minted.jsonl"),
        price_per_gpu_hour=1.0,
        interval_s=0.05,
        start_file=start_file,
        clock=clock,
        poll_s=0.01,
    )
    mint.miner_hotkey = MINER
    return mint


async def test_every_worker_is_leased_to_nobody_and_billed_by_receipts_the_miner_signs(
    tmp_path: Path,
) -> None:
    clock = Clock()
    miner = FakeMiner(clock, {pubkey(1): ["CPU-b", "CPU-a"], pubkey(2): ["CPU-c"]})
    mint = minter(tmp_path, miner, clock)
    await mint.lease_workers(miner)
    # one lease per worker, of every GPU it lists, through the miner's lease route
    assert {(w, tuple(g)) for _, w, g, _ in miner.leases.values()} == {
        (pubkey(1), ("CPU-a", "CPU-b")),
        (pubkey(2), ("CPU-c",)),
    }
    assert all(lease_id.startswith("collusion-") for lease_id in miner.leases)
    # each starts with its zero-length start receipt
    starts = [r for r in miner.receipts if r.kind == "start"]
    assert len(starts) == 2 and all(r.seq == 0 and r.seconds == 0 for r in starts)
    assert all(r.validator_hotkey == COLLUDER and r.netuid == NETUID for r in starts)

    clock.now += 5
    await mint.mint(miner)
    clock.now += 7
    await mint.mint(miner)
    await mint.mint(miner)  # nothing new to bill within the same second
    hourly = [r for r in miner.receipts if r.kind == "hourly"]
    assert sorted(r.seconds for r in hourly) == [5, 5, 7, 7]
    assert {r.price_per_gpu_hour_micros for r in hourly} == {1_000_000}
    for lease_id in miner.leases:
        chain = check_chain(r for r in miner.receipts if r.lease_id == lease_id)
        assert [r.seq for r in chain] == [0, 1, 2]
        assert chain[1].period_start == chain[0].period_end  # no gap, no overlap

    summary = read_ledger(tmp_path / "minted.jsonl")
    assert (summary.leases, summary.receipts) == (2, 6)
    assert summary.billed_gpu_s == 2 * (5 + 7) + 1 * (5 + 7)  # two GPUs on the first worker
    assert summary.first_billed_at is not None and summary.errors == {}


async def test_refusals_are_written_down_and_tried_again(tmp_path: Path) -> None:
    clock = Clock()
    miner = FakeMiner(clock, {pubkey(1): ["CPU-a"]}, refuse_leases=1)
    mint = minter(tmp_path, miner, clock)
    await mint.lease_workers(miner)
    assert mint.leases == {}
    await mint.lease_workers(miner)
    (lease,) = mint.leases.values()
    await mint.lease_workers(miner)  # a worker it already holds is not leased twice
    assert len(miner.leases) == 1
    miner.unreachable = True
    await mint.lease_workers(miner)
    summary = read_ledger(tmp_path / "minted.jsonl")
    assert summary.leases == 1 and summary.errors == {"lease_start": 1, "inventory": 1}
    # a receipt the miner refuses does not move the lease's chain on
    miner.leases.clear()
    clock.now += 3
    await mint.mint(miner)
    assert lease.seq == 0 and read_ledger(tmp_path / "minted.jsonl").errors["receipt"] == 1


async def test_it_waits_for_its_start_file_then_mints_until_stopped(tmp_path: Path) -> None:
    start = tmp_path / "start"
    miner = FakeMiner(time.time, {pubkey(3): ["CPU-z"]})
    mint = minter(tmp_path, miner, time.time, start_file=start)
    stop = asyncio.Event()
    task = asyncio.create_task(mint.run(stop))
    await asyncio.sleep(0.1)
    assert miner.leases == {}  # not before the devnet says so
    start.touch()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if miner.leases:
            break
    assert len(miner.leases) == 1
    stop.set()
    await asyncio.wait_for(task, 2)
    lines = [json.loads(line) for line in (tmp_path / "minted.jsonl").read_text().splitlines()]
    assert lines[0]["event"] == "miner" and lines[0]["miner_hotkey"] == MINER
    assert read_ledger(tmp_path / "minted.jsonl").miner_hotkey == MINER


def test_a_missing_or_half_written_ledger_reads_as_far_as_it_goes(tmp_path: Path) -> None:
    assert read_ledger(tmp_path / "none.jsonl").leases == 0
    path = tmp_path / "minted.jsonl"
    Ledger(path).write("lease", lease_id="l-1", worker_pubkey=pubkey(1), gpus=1)
    Ledger(path).write("receipt", lease_id="l-1", seq=1, kind="hourly", seconds=4, gpus=1)
    with path.open("a") as file:
        file.write('{"event": "receipt", "seco')  # a write in progress
    summary = read_ledger(path)
    assert (summary.leases, summary.receipts, summary.billed_gpu_s) == (1, 1, 4)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4001", "http://127.0.0.1:4001"])
async def test_the_miner_is_found_by_the_endpoint_it_serves(endpoint: str) -> None:
    rows = [
        SimpleNamespace(hotkey="5Other", endpoint="http://127.0.0.1:4000"),
        SimpleNamespace(hotkey=MINER, endpoint="http://127.0.0.1:4001"),
        SimpleNamespace(hotkey="5Validator", endpoint=None),
    ]

    class Store:
        async def miners(self) -> list[SimpleNamespace]:
            return rows

    assert endpoint_url(endpoint) == "http://127.0.0.1:4001"
    assert await miner_at(Store(), endpoint) == MINER
    assert await miner_at(Store(), "127.0.0.1:9") is None
