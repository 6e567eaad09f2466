"""Receipt collection end to end: real miner apps (uvicorn on 127.0.0.1) holding receipts in
their SQLite stores, signed with real wallets; validators fetching them with the signed
``MinerClient``, checking them and storing them in a real ``SqlStore`` on SQLite and PostgreSQL;
and the lease score computed from what they stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from byteleap.chain import Endpoint, MetagraphView, NeuronView
from byteleap.challenge.params import CPU_DEFAULT
from byteleap.config import ValidatorConfig
from byteleap.config.leasing import DEFAULT_MAX_PRICES
from byteleap.config.miner import MinerApiSection, WorkerServerSection
from byteleap.errors import Outcome
from byteleap.leases.receipts import (
    MAX_PRICE_MICROS,
    Receipt,
    SignedReceipt,
    canonical_bytes,
    check_chain,
    signing_payload,
    verify_signatures,
)
from byteleap.protocol import codec
from byteleap.protocol.miner_api.receipts import ReceiptPage
from byteleap.scoring import ScoringParams, compute_weights
from byteleap.scoring.leases import ReceiptUsage
from daemonkit.http import EmbeddedServer
from neurons.chain import DevChain, DevChainClient, DevChainParams
from neurons.common.miner_client import MinerClient, verify_hotkey_signature
from neurons.miner.api import create_app
from neurons.miner.auth import ValidatorGate
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.hub import WorkerHub
from neurons.miner.store import MinerStore
from neurons.validator.daemon import ValidatorDaemon
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.receipts import (
    DropReason,
    ReceiptCollector,
    check_fetched,
    permitted_validators,
)
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    SqlStore,
    WorkerSnapshot,
    create_engine,
    current_revision,
    downgrade_engine,
    head_revision,
    open_store,
    upgrade_engine,
)
from neurons.validator.store.receipt_scoring import OPEN_LEASE_GRACE
from neurons.validator.store.receipts import StoreOutcome
from neurons.validator.store.records import MinerRow
from neurons.validator.store.schema import LeaseReceipt, ReceiptCursor
from tests.support.store import (
    ENGINES,
    create_scratch_database,
    drop_scratch_database,
    postgres_url,
)
from tests.wallets import coldkey_of, make_wallet

T = TypeVar("T")
NETUID = 128
HOUR = 3600
#: every receipt is dated in the recent past, because requests are signed on the real clock
BASE = (int(time.time()) // HOUR - 12) * HOUR
NOW_S = BASE + 10 * HOUR
NOW = datetime.fromtimestamp(NOW_S, UTC)
WEEK_AGO = NOW_S - 7 * 24 * HOUR
WORKER_1, WORKER_2, WORKER_3 = "a1" * 32, "b2" * 32, "c3" * 32
NAMES = ("miner1", "miner2", "val_a", "val_b", "outsider")


@dataclass(frozen=True)
class Ids:
    wallets: dict[str, Any]
    hotkeys: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.hotkeys[name]


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Ids:
    root = tmp_path_factory.mktemp("wallets")
    wallets, hotkeys = {}, {}
    for name in NAMES:
        wallets[name], hotkeys[name] = make_wallet(root, name, seed=name.encode().ljust(32, b"\0"))
    return Ids(wallets, hotkeys)


def neurons(ids: Ids, ports: dict[str, int], *, b_permit: bool = True) -> list[NeuronView]:
    """The metagraph: two miners serving, two permitted validators, one neuron without permit."""
    rows = [
        ("miner1", 10.0, False),
        ("miner2", 10.0, False),
        ("val_a", 5000.0, True),
        ("val_b", 3000.0, b_permit),
        ("outsider", 9000.0, False),
    ]
    return [
        NeuronView(
            uid, ids[name], f"cold-{name}", stake, permit,
            Endpoint("127.0.0.1", ports[name]) if name in ports else None,
        )
        for uid, (name, stake, permit) in enumerate(rows)
    ]  # fmt: skip


# --------------------------------------------------------------------------- receipts


def receipt(
    ids: Ids,
    *,
    seller: str,
    miner: str,
    lease: str,
    seq: int,
    start: int,
    end: int,
    price_micros: int,
    worker: str,
    gpus: int = 1,
    kind: str | None = None,
) -> Receipt:
    return Receipt(
        netuid=NETUID,
        lease_id=lease,
        seq=seq,
        kind=kind or ("start" if seq == 0 else "hourly"),  # type: ignore[arg-type]
        validator_hotkey=ids[seller],
        miner_hotkey=ids[miner],
        worker_pubkey=worker,
        gpu_uuids=[f"GPU-{worker[:4]}-{i}" for i in range(gpus)],
        gpus=gpus,
        price_per_gpu_hour_micros=price_micros,
        period_start=start,
        period_end=end,
        issued_at=end,
    )


def sign(
    ids: Ids, r: Receipt, *, seller: str | None = None, miner: str | None = None
) -> SignedReceipt:
    payload = signing_payload(r)
    seller_name = seller or next(n for n in NAMES if ids[n] == r.validator_hotkey)
    miner_name = miner or next(n for n in NAMES if ids[n] == r.miner_hotkey)
    return SignedReceipt(
        receipt=r,
        validator_signature=bytes(ids.wallets[seller_name].hotkey.sign(payload)),
        miner_signature=bytes(ids.wallets[miner_name].hotkey.sign(payload)),
    )


def lease_1(ids: Ids) -> list[SignedReceipt]:
    """val_a sold 2 GPUs of miner1 at 2.0 per GPU-hour for 3.5 hours: revenue 14."""
    common: dict[str, Any] = {"seller": "val_a", "miner": "miner1", "lease": "L1",
                              "price_micros": 2_000_000, "worker": WORKER_1, "gpus": 2}  # fmt: skip
    chain = [receipt(ids, seq=0, start=BASE, end=BASE, **common)]
    chain += [receipt(ids, seq=i, start=BASE + (i - 1) * HOUR, end=BASE + i * HOUR, **common)
              for i in (1, 2, 3)]  # fmt: skip
    chain.append(receipt(ids, seq=4, kind="end", start=BASE + 3 * HOUR,
                         end=BASE + 3 * HOUR + 1800, **common))  # fmt: skip
    return [sign(ids, r) for r in chain]


def lease_2(ids: Ids) -> list[SignedReceipt]:
    """val_b sold 1 GPU of miner2 at 3.0 for 1.5 hours so far, still running: revenue 4.5."""
    common: dict[str, Any] = {"seller": "val_b", "miner": "miner2", "lease": "L2",
                              "price_micros": 3_000_000, "worker": WORKER_2}  # fmt: skip
    start = BASE + 8 * HOUR
    chain = [
        receipt(ids, seq=0, start=start, end=start, **common),
        receipt(ids, seq=1, start=start, end=start + HOUR, **common),
        receipt(ids, seq=2, start=start + HOUR, end=start + HOUR + 1800, **common),
    ]
    return [sign(ids, r) for r in chain]


def lease_3(ids: Ids) -> list[SignedReceipt]:
    """val_b billed miner1 two hours that straddle the start of the 7-day window: one counts."""
    r = receipt(ids, seller="val_b", miner="miner1", lease="L3", seq=1, start=WEEK_AGO - HOUR,
                end=WEEK_AGO + HOUR, price_micros=1_000_000, worker=WORKER_3)  # fmt: skip
    return [sign(ids, r)]


def forged(ids: Ids) -> dict[str, list[SignedReceipt]]:
    """What each miner serves besides the genuine receipts, and why each earns nothing."""
    common: dict[str, Any] = {"miner": "miner1", "seq": 1, "start": BASE, "end": BASE + HOUR,
                              "price_micros": 2_000_000, "worker": WORKER_1}  # fmt: skip
    one = sign(ids, receipt(ids, seller="val_a", lease="bad-1", **common))
    validator_only = one.model_copy(
        update={"miner_signature": one.validator_signature}
    )  # the miner never countersigned: the validator's own signature stands in
    two = receipt(ids, seller="val_a", lease="bad-2", **common)
    miner_only = sign(ids, two, seller="miner1")  # the miner signed in the validator's place
    three = sign(ids, receipt(ids, seller="val_a", lease="bad-3", **common))
    tampered = three.model_copy(
        update={
            "receipt": three.receipt.model_copy(update={"price_per_gpu_hour_micros": 50_000_000})
        }
    )
    outsider = sign(ids, receipt(ids, seller="outsider", lease="bad-4", **common))
    replayed = lease_1(ids)[1]  # miner1's genuine receipt, served again by miner2
    return {"miner1": [validator_only, miner_only, tampered, outsider], "miner2": [replayed]}


EXPECTED_DROPS = {
    DropReason.BAD_MINER_SIGNATURE.value: 1,
    DropReason.BAD_VALIDATOR_SIGNATURE.value: 2,
    DropReason.NOT_VALIDATOR.value: 1,
    DropReason.WRONG_MINER.value: 1,
}
GENUINE_COUNT = 5 + 3 + 1
REVENUE = {"miner1": 14.0 + 1.0, "miner2": 4.5}


# --------------------------------------------------------------------------- miners


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """The daemons' :class:`~daemonkit.http.EmbeddedServer` on 127.0.0.1:0; yields its port."""
    async with EmbeddedServer(app, "127.0.0.1", 0, name="miner API", http="h11") as server:
        yield server.port


@dataclass
class Miners:
    ports: dict[str, int]
    stores: dict[str, MinerStore]

    async def hold(self, name: str, receipts: list[SignedReceipt]) -> None:
        """Put receipts in a miner's store as it would have countersigned them (no checks)."""
        for signed in receipts:
            await self.stores[name].add_receipt(
                signed.receipt,
                signed.validator_signature,
                signed.miner_signature,
                now=time.time(),
            )


@contextlib.asynccontextmanager
async def running_miners(ids: Ids, tmp_path: Path) -> AsyncIterator[Miners]:
    """miner1 and miner2: each a real validator API with its SQLite receipt store."""
    view = MetagraphView(netuid=NETUID, block=1, neurons=tuple(neurons(ids, {})))
    miners = Miners({}, {})
    async with contextlib.AsyncExitStack() as stack:
        for name in ("miner1", "miner2"):
            section = WorkerServerSection(
                host="127.0.0.1", port=0, authorized_keys_file=tmp_path / f"{name}.keys"
            )
            store = MinerStore(tmp_path / f"{name}.sqlite3")
            stack.callback(store.close)
            app = create_app(
                miner_hotkey=ids[name],
                signer=ids.wallets[name].hotkey.sign,
                gate=ValidatorGate(ids[name], metagraph_source=lambda: view, min_stake=100.0),
                workers=WorkerHub(section, AuthorizedKeys.from_config(section), ids[name]),
                config=MinerApiSection(max_body_bytes=256 * 1024, request_timeout_s=10.0),
                store=store,
                netuid=NETUID,
                rate_per_second=1000.0,
                rate_burst=1000,
            )
            miners.ports[name] = await stack.enter_async_context(serving(app))
            miners.stores[name] = store
        await miners.hold("miner1", lease_1(ids) + lease_3(ids) + forged(ids)["miner1"])
        await miners.hold("miner2", lease_2(ids) + forged(ids)["miner2"])
        yield miners


def collector(
    ids: Ids, store: SqlStore, me: str, metrics: ValidatorMetrics | None = None, **kw: Any
) -> ReceiptCollector:
    def connect(miner_hotkey: str, url: str, timeout: float) -> MinerClient:
        return MinerClient(ids.wallets[me], miner_hotkey, url, timeout=timeout)

    return ReceiptCollector(
        miners=store,
        receipts=store.receipts,
        connect=connect,
        own_hotkey=ids[me],
        netuid=NETUID,
        max_concurrency=4,
        request_timeout_s=10.0,
        wall_clock=lambda: NOW,
        metrics=metrics,
        **kw,
    )


def revenue_and_shares(inputs: Any) -> dict[str, tuple[float, float]]:
    result = compute_weights(
        now=inputs.now,
        params=inputs.params,
        challenges=inputs.challenges,
        gpu_claims=inputs.gpu_claims,
        lease_intervals=inputs.lease_intervals,
        lease_usage=inputs.lease_usage,
        availability_counts=inputs.availability_counts,
        miners=inputs.miners,
        verified_hours=inputs.verified_hours,
    )
    return {h: (m.lease_revenue, m.lease_share) for h, m in result.miners.items()}


H200 = "NVIDIA H200"
#: what this validator verified itself, before the leases began: miner -> worker -> GPUs
GENUINE_GPUS = {
    "miner1": {WORKER_1: ["GPU-a1a1-0", "GPU-a1a1-1"], WORKER_3: ["GPU-c3c3-0"]},
    "miner2": {WORKER_2: ["GPU-b2b2-0"]},
}
#: the stake shares of the metagraph's validators (val_a 5000, val_b 3000)
SHARE_A, SHARE_B = 5000 / 8000, 3000 / 8000


async def verify(
    store: SqlStore, miner_hotkey: str, worker: str, uuids: list[str], at: datetime
) -> None:
    """This validator challenged ``uuids`` of ``worker`` at ``at`` and they passed."""
    cid = f"v-{worker[:4]}-{int(at.timestamp())}"
    await store.open_challenge(
        ChallengeOpen(
            challenge_id=cid, miner_hotkey=miner_hotkey, worker_pubkey=worker,
            gpu_uuids=tuple(uuids), gpu_models=dict.fromkeys(uuids, H200), params=CPU_DEFAULT,
            seed=bytes(32), dispatched_at=at, deadline_at=at + timedelta(seconds=30),
        )
    )  # fmt: skip
    await store.close_challenges(
        [ChallengeVerdict(cid, u, at, Outcome.VERIFIED, throughput_flops=1e12, elapsed_s=1.0)
         for u in uuids]
    )  # fmt: skip


async def verify_genuine(ids: Ids, store: SqlStore, at: datetime | None = None) -> None:
    """Every GPU of the genuine leases verified (an hour before lease 1 began, by default), and
    miner2's worker in this validator's inventory as an H200 (capped at 7.0 per GPU-hour);
    miner1's GPUs are not in it, so they are ``unknown`` (capped at 2.0)."""
    at = at or datetime.fromtimestamp(BASE - HOUR, UTC)
    await store.record_inventory(
        at, ids["miner2"],
        [WorkerSnapshot(WORKER_2, "idle", (GpuSnapshot("GPU-b2b2-0", H200, 143771, "9.0"),))],
        bucket_seconds=300,
    )  # fmt: skip
    for name, workers in GENUINE_GPUS.items():
        for worker, uuids in workers.items():
            await verify(store, ids[name], worker, uuids, at)


@pytest.fixture(name="two_urls", params=ENGINES)
def two_urls_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """Two empty databases of one engine: one per validator."""
    if request.param == "sqlite":
        yield [f"sqlite+aiosqlite:///{tmp_path / f'validator-{i}.db'}" for i in (1, 2)]
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    names = [create_scratch_database(dsn) for _ in (1, 2)]
    try:
        yield [postgres_url(dsn, name) for name in names]
    finally:
        for name in names:
            drop_scratch_database(dsn, name)


# --------------------------------------------------------------------------- tests


async def test_two_validators_fed_the_same_receipts_agree_on_lease_scores(
    ids: Ids, tmp_path: Path, two_urls: list[str]
) -> None:
    params = ScoringParams()
    async with running_miners(ids, tmp_path) as miners, contextlib.AsyncExitStack() as stack:
        results = {}
        for me, url in zip(("val_a", "val_b"), two_urls, strict=True):
            store = await open_store(url, auto_upgrade=True)
            stack.push_async_callback(store.close)
            await store.sync_miners(NOW, neurons(ids, miners.ports))
            await verify_genuine(ids, store)
            metrics = ValidatorMetrics()
            summary = await collector(ids, store, me, metrics, page_size=3).collect_all()
            assert summary.failed == {}
            assert summary.accepted == GENUINE_COUNT
            assert dict(summary.dropped) == EXPECTED_DROPS
            assert metrics.receipts_accepted._value.get() == GENUINE_COUNT
            for reason, count in EXPECTED_DROPS.items():
                assert metrics.receipts_dropped.labels(reason=reason)._value.get() == count
            # the cursor is stored: a second round finds nothing new
            again = await collector(ids, store, me).collect_all()
            assert (again.accepted, sum(again.dropped.values())) == (0, 0)
            assert set((await store.receipts.cursors()).values()) == {10, 4}

            stored = await store.receipts.receipts()
            assert len(stored) == GENUINE_COUNT
            for signed in stored:
                verify_signatures(signed, verify_hotkey_signature)
            inputs = await store.scoring_inputs(NOW, params)
            results[me] = revenue_and_shares(inputs)
            intervals = sorted(
                (i.miner_hotkey, i.worker_id, i.start, i.end) for i in inputs.lease_intervals
            )

            def at(s: int) -> datetime:
                return datetime.fromtimestamp(s, UTC)

            assert intervals == sorted([
                (ids["miner1"], WORKER_1, at(BASE), at(BASE + 3 * HOUR + 1800)),  # ended
                (ids["miner2"], WORKER_2, at(BASE + 8 * HOUR), None),  # still running
                (ids["miner1"], WORKER_3, at(WEEK_AGO - HOUR), at(WEEK_AGO + HOUR)),  # gone quiet
            ])  # fmt: skip

        assert results["val_a"] == results["val_b"]
        got = results["val_a"]
        for name, revenue in REVENUE.items():
            assert got[ids[name]][0] == pytest.approx(revenue)
        # val_a's pool (5/8) is all L1's; val_b's (3/8) is split 4.5 (L2) to 1.0 (L3)
        assert got[ids["miner1"]][1] == pytest.approx(SHARE_A + SHARE_B * 1.0 / 5.5)
        assert got[ids["miner2"]][1] == pytest.approx(SHARE_B * 4.5 / 5.5)
        for name in ("val_a", "val_b", "outsider"):
            assert got[ids[name]] == (0.0, 0.0)


async def test_replayed_receipts_are_duplicates_and_earn_nothing_more(
    ids: Ids, tmp_path: Path, store: SqlStore
) -> None:
    async with running_miners(ids, tmp_path) as miners:
        await store.sync_miners(NOW, neurons(ids, miners.ports))
        await verify_genuine(ids, store)
        await collector(ids, store, "val_a").collect_all()
        before = revenue_and_shares(await store.scoring_inputs(NOW, ScoringParams()))
        assert before[ids["miner1"]][0] == pytest.approx(REVENUE["miner1"])
        async with store.engine.begin() as conn:  # forget how far we read: everything again
            await conn.execute(sa.delete(ReceiptCursor))
        metrics = ValidatorMetrics()
        replay = await collector(ids, store, "val_a", metrics).collect_all()
        assert replay.accepted == 0
        assert replay.dropped[DropReason.DUPLICATE.value] == GENUINE_COUNT
        assert metrics.receipts_dropped.labels(reason="duplicate")._value.get() == GENUINE_COUNT
        assert revenue_and_shares(await store.scoring_inputs(NOW, ScoringParams())) == before


async def test_a_validator_that_loses_its_permit_stops_counting_until_it_regains_it(
    ids: Ids, tmp_path: Path, store: SqlStore
) -> None:
    async with running_miners(ids, tmp_path) as miners:
        await store.sync_miners(NOW, neurons(ids, miners.ports))
        await verify_genuine(ids, store)
        await collector(ids, store, "val_a").collect_all()
        params = ScoringParams()
        full = revenue_and_shares(await store.scoring_inputs(NOW, params))
        assert full[ids["miner2"]][0] == pytest.approx(4.5)

        await store.sync_miners(NOW, neurons(ids, miners.ports, b_permit=False))
        inputs = await store.scoring_inputs(NOW, params)
        lost = revenue_and_shares(inputs)
        assert lost[ids["miner2"]][0] == 0.0  # L2 was sold by val_b only
        assert lost[ids["miner1"]][0] == pytest.approx(14.0)  # L3 (val_b) no longer counts
        assert lost[ids["miner1"]][1] == pytest.approx(1.0)  # val_a now holds all the stake
        assert {i.worker_id for i in inputs.lease_intervals} == {WORKER_1}
        assert len(await store.receipts.receipts()) == GENUINE_COUNT  # kept, not deleted

        await store.sync_miners(NOW, neurons(ids, miners.ports))
        assert revenue_and_shares(await store.scoring_inputs(NOW, params)) == full

        # and a stake threshold is the same rule: val_b holds 3000
        store.receipts.min_validator_stake = 4000.0
        assert revenue_and_shares(await store.scoring_inputs(NOW, params)) == lost


async def test_conflicting_content_keeps_the_first_and_is_counted(
    ids: Ids, tmp_path: Path, store: SqlStore
) -> None:
    """val_b already stored its own version of L2 seq 2 (say it issued it); the miner serves
    another, also signed by both: the first stays, the other is counted as a conflict."""
    async with running_miners(ids, tmp_path) as miners:
        await store.sync_miners(NOW, neurons(ids, miners.ports))
        served = lease_2(ids)[2]
        own = sign(ids, served.receipt.model_copy(update={"price_per_gpu_hour_micros": 1}))
        assert await store.receipts.add(NOW, own) is StoreOutcome.STORED
        metrics = ValidatorMetrics()
        summary = await collector(ids, store, "val_b", metrics).collect_all()
        assert summary.dropped[DropReason.CONFLICT.value] == 1
        assert metrics.receipts_dropped.labels(reason="conflict")._value.get() == 1
        kept = [s for s in await store.receipts.receipts() if s.receipt.lease_id == "L2"]
        assert [s.receipt.price_per_gpu_hour_micros for s in kept] == [3_000_000, 3_000_000, 1]


async def test_the_chain_of_a_lease_is_checked_against_stored_neighbours(
    ids: Ids, store: SqlStore
) -> None:
    receipts = store.receipts
    common: dict[str, Any] = {"seller": "val_a", "miner": "miner1", "lease": "C",
                              "price_micros": 1_000_000, "worker": WORKER_1}  # fmt: skip

    def at(seq: int, start: int, end: int, kind: str | None = None) -> SignedReceipt:
        return sign(ids, receipt(ids, seq=seq, start=start, end=end, kind=kind, **common))

    first = at(1, BASE, BASE + HOUR)
    assert await receipts.add(NOW, first) is StoreOutcome.STORED
    assert await receipts.add(NOW, first) is StoreOutcome.DUPLICATE
    overlapping = at(2, BASE + 1800, BASE + 2 * HOUR)
    assert await receipts.add(NOW, overlapping) is StoreOutcome.BROKEN_CHAIN
    # a gap is allowed: seq 5 after seq 1; the missing hours are simply not billed
    assert await receipts.add(NOW, at(5, BASE + 4 * HOUR, BASE + 5 * HOUR)) is StoreOutcome.STORED
    # a late receipt must fit between both stored neighbours
    assert await receipts.add(NOW, at(3, BASE + 2 * HOUR, BASE + 4 * HOUR + 60)) is (
        StoreOutcome.BROKEN_CHAIN
    )
    assert await receipts.add(NOW, at(3, BASE + 2 * HOUR, BASE + 3 * HOUR)) is StoreOutcome.STORED
    assert await receipts.add(NOW, at(6, BASE + 5 * HOUR, BASE + 6 * HOUR, "end")) is (
        StoreOutcome.STORED
    )
    assert await receipts.add(NOW, at(7, BASE + 6 * HOUR, BASE + 7 * HOUR)) is (
        StoreOutcome.BROKEN_CHAIN
    )  # nothing follows an end receipt
    other_worker = sign(ids, receipt(ids, seq=8, start=BASE + 8 * HOUR, end=BASE + 9 * HOUR,
                                     **{**common, "worker": WORKER_2}))  # fmt: skip
    assert await receipts.add(NOW, other_worker) is StoreOutcome.BROKEN_CHAIN
    stored = [s.receipt for s in await receipts.receipts()]
    assert [r.seq for r in check_chain(stored)] == [1, 3, 5, 6]


async def test_a_receipt_of_an_open_lease_closes_after_the_grace(ids: Ids, store: SqlStore) -> None:
    await store.sync_miners(NOW, neurons(ids, {"miner1": 1}))
    await verify(store, ids["miner1"], WORKER_1, ["GPU-a1a1-0"], NOW - timedelta(hours=3))
    last_end = NOW_S - HOUR
    r = receipt(ids, seller="val_a", miner="miner1", lease="G", seq=1, start=last_end - HOUR,
                end=last_end, price_micros=1, worker=WORKER_1)  # fmt: skip
    await store.receipts.add(NOW, sign(ids, r))
    (running,) = await store.receipts.lease_intervals(NOW)
    assert running.end is None
    later = datetime.fromtimestamp(last_end, UTC) + OPEN_LEASE_GRACE
    (ended,) = await store.receipts.lease_intervals(later)
    assert ended.end == datetime.fromtimestamp(last_end, UTC)


async def test_the_daemon_collects_receipts_of_every_served_miner(
    ids: Ids, tmp_path: Path, database_url: str
) -> None:
    """The collection loop's step, wired by the daemon from its config and a devchain metagraph."""
    chain = DevChain.create(tmp_path / "chain.db", DevChainParams(netuid=NETUID))
    store = await open_store(database_url, auto_upgrade=True)
    try:
        async with running_miners(ids, tmp_path) as miners:
            for name, stake, permit in (
                ("val_a", 5000.0, True),
                ("val_b", 3000.0, True),
                ("miner1", 0.0, False),
                ("miner2", 0.0, False),
            ):
                chain.register(ids[name], coldkey_of(ids.wallets[name]), stake=stake,
                               validator_permit=permit)  # fmt: skip
                if name in miners.ports:
                    chain.serve(ids[name], "127.0.0.1", miners.ports[name])
            cfg = ValidatorConfig.model_validate({
                "chain": {"network": f"devchain:{tmp_path / 'chain.db'}", "netuid": NETUID},
                "database": {"url": database_url},
                "challenge": {"verifier_processes": 1},
                "leases": {"min_receipt_validator_stake": 4000.0},
                "paths": {"data_dir": str(tmp_path / "validator")},
                "metrics": {"enabled": False},
            })  # fmt: skip
            daemon = ValidatorDaemon(
                cfg,
                signer=ids.wallets["val_a"],
                hotkey=ids["val_a"],
                store=store,
                chain=DevChainClient(chain, ids["val_a"]),
                wall_clock=lambda: NOW,
            )
            try:
                await daemon.start()
                await verify_genuine(ids, store)
                summary = await daemon.collect_receipts()
                assert store.receipts.min_validator_stake == 4000.0
                # val_b (3000) is under the configured stake: L2 and L3 are not counted
                assert summary.accepted == 5
                # L3 (1) and L2 (3) of val_b, and the outsider's receipt
                assert summary.dropped[DropReason.NOT_VALIDATOR.value] == 1 + 3 + 1
                vector = await daemon.weights.compute(NOW)
                daemon.record_lease_revenue(vector.record_inputs())
                gauge = daemon.metrics.lease_revenue
                assert gauge.labels(miner=ids["miner1"])._value.get() == pytest.approx(14.0)
                assert gauge.labels(miner=ids["miner2"])._value.get() == 0.0
            finally:
                await daemon.shutdown()
    finally:
        await store.close()
        chain.close()


WORKER_FAKE = "dd" * 32


def colluding_neurons(ids: Ids) -> list[NeuronView]:
    """The metagraph of :func:`neurons`, but "outsider" holds a permit with a small stake: a
    colluder that signs whatever miner2 countersigns."""
    return [
        dataclasses.replace(n, stake=100.0, validator_permit=True)
        if n.hotkey == ids["outsider"] else n
        for n in neurons(ids, {})
    ]  # fmt: skip


def minted(ids: Ids, lease: str, worker: str, uuids: list[str]) -> list[SignedReceipt]:
    """A week of hourly receipts at the protocol's maximum price, sold by the colluder to miner2."""
    start = NOW_S - 7 * 24 * HOUR
    chain = [
        Receipt(
            netuid=NETUID, lease_id=lease, seq=i + 1, kind="hourly",
            validator_hotkey=ids["outsider"], miner_hotkey=ids["miner2"], worker_pubkey=worker,
            gpu_uuids=uuids, gpus=len(uuids), price_per_gpu_hour_micros=MAX_PRICE_MICROS,
            period_start=start + i * HOUR, period_end=start + (i + 1) * HOUR,
            issued_at=start + (i + 1) * HOUR,
        )
        for i in range(7 * 24)
    ]  # fmt: skip
    return [sign(ids, r) for r in chain]


async def test_a_low_stake_colluder_gains_at_most_its_stake_share(
    ids: Ids, store: SqlStore
) -> None:
    """The attack: a permit holder with 100 of 8100 stake mints a week of max-price receipts
    for miner2. For GPUs nobody verified they earn nothing and freeze no challenge record; for
    miner2's one verified GPU they are capped at its model's price and earn at most the
    colluder's stake share of the lease pool."""
    await store.sync_miners(NOW, colluding_neurons(ids))
    await verify_genuine(ids, store)
    await store.receipts.store_page(NOW, lease_1(ids) + lease_2(ids) + lease_3(ids))
    params = ScoringParams()
    honest = revenue_and_shares(await store.scoring_inputs(NOW, params))
    total = 5000 + 3000 + 100
    share_out = 100 / total

    fake = minted(ids, "mint-fake", WORKER_FAKE, [f"FAKE-{i}" for i in range(8)])
    assert set(await store.receipts.store_page(NOW, fake)) == {StoreOutcome.STORED}
    inputs = await store.scoring_inputs(NOW, params)
    assert revenue_and_shares(inputs) == honest  # never verified: worth nothing
    assert WORKER_FAKE not in {i.worker_id for i in inputs.lease_intervals}
    caps = {u.gpu_price_caps for u in inputs.lease_usage if isinstance(u, ReceiptUsage)
            and u.validator_hotkey == ids["outsider"]}  # fmt: skip
    assert caps == {(DEFAULT_MAX_PRICES["default"],) * 8}  # not in the inventory: "unknown"

    real = minted(ids, "mint-real", WORKER_2, ["GPU-b2b2-0"])
    await store.receipts.store_page(NOW, real)
    attacked = revenue_and_shares(await store.scoring_inputs(NOW, params))
    m2_before, m2_after = honest[ids["miner2"]], attacked[ids["miner2"]]
    assert m2_after[1] - m2_before[1] <= share_out + 1e-12
    # the colluder's pool is all miner2's, less the 1.5 hours val_b (more stake) sold first:
    # they count once, for val_b, and stay in the colluder's denominator
    week = 7 * 24
    assert m2_after[1] == pytest.approx(m2_before[1] + share_out * (week - 1.5) / week)
    # priced at the H200 cap (7.0), not at the protocol's maximum
    assert m2_after[0] == pytest.approx(4.5 + 7.0 * (week - 1.5))
    # miner1, which the colluder did not bill, does not move at all
    assert attacked[ids["miner1"]] == honest[ids["miner1"]]


async def test_the_cursor_table_migrates_up_and_down(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await upgrade_engine(engine) == head_revision()

        def tables(conn: sa.Connection) -> set[str]:
            return set(sa.inspect(conn).get_table_names())

        async with engine.connect() as conn:
            assert {"receipt_cursors", "lease_receipts"} <= await conn.run_sync(tables)
        assert await downgrade_engine(engine, "0001") == "0001"
        async with engine.connect() as conn:
            found = await conn.run_sync(tables)
        assert "receipt_cursors" not in found and "lease_receipts" in found
        assert await upgrade_engine(engine) == head_revision()
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- property


class LoopThread:
    """One event loop in a thread, so a synchronous hypothesis test can drive async code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Fuzz:
    ids: Ids
    loop: LoopThread
    store: SqlStore
    miner: MinerRow
    validators: frozenset[str]
    genuine: list[SignedReceipt]
    body: bytes = b""


@pytest.fixture(scope="module")
def fuzz(ids: Ids, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    loop = LoopThread()
    path = tmp_path_factory.mktemp("fuzz") / "validator.db"
    store = loop.run(open_store(f"sqlite+aiosqlite:///{path}", auto_upgrade=True))
    rows = neurons(ids, {"miner1": 9})
    loop.run(store.sync_miners(NOW, rows))
    miners = loop.run(store.miners())
    (miner,) = [m for m in miners if m.hotkey == ids["miner1"]]
    genuine = lease_1(ids) + lease_3(ids)
    try:
        yield Fuzz(ids, loop, store, miner, permitted_validators(miners, 0.0), genuine)
    finally:
        loop.run(store.close())
        loop.close()


MUTABLE: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.integers(0, 6),
    "kind": st.sampled_from(["start", "hourly", "end"]),
    "lease_id": st.sampled_from(["L1", "L3", "zz"]),
    "netuid": st.sampled_from([NETUID, 1]),
    "price_per_gpu_hour_micros": st.integers(0, 10**8),
    "period_start": st.integers(BASE - HOUR, NOW_S),
    "period_end": st.integers(BASE, NOW_S + 2 * HOUR),
    "issued_at": st.integers(BASE, NOW_S + 2 * HOUR),
}


@st.composite
def pages(draw: st.DrawFn, genuine: list[SignedReceipt], ids: Ids) -> bytes:
    """A response body: a page of genuine, mutated and foreign receipts, or broken bytes."""
    entries: list[SignedReceipt] = []
    for _ in range(draw(st.integers(0, 6))):
        signed = draw(st.sampled_from(genuine))
        what = draw(st.sampled_from(["as is", "field", "signature", "swap", "miner", "seller"]))
        if what == "field":
            name = draw(st.sampled_from(sorted(MUTABLE)))
            try:
                changed = Receipt(**{**signed.receipt.model_dump(), name: draw(MUTABLE[name])})
            except ValueError:
                continue
            signed = signed.model_copy(update={"receipt": changed})
        elif what == "signature":
            sig = bytearray(signed.miner_signature)
            sig[draw(st.integers(0, 63))] ^= 1 << draw(st.integers(0, 7))
            signed = signed.model_copy(update={"miner_signature": bytes(sig)})
        elif what == "swap":
            signed = signed.model_copy(update={
                "miner_signature": signed.validator_signature,
                "validator_signature": signed.miner_signature,
            })  # fmt: skip
        elif what == "miner":
            changed = signed.receipt.model_copy(update={"miner_hotkey": ids["miner2"]})
            signed = sign(ids, changed)  # genuinely signed, but for another miner
        elif what == "seller":
            changed = signed.receipt.model_copy(update={"validator_hotkey": ids["outsider"]})
            signed = sign(ids, changed)  # genuinely signed by a neuron without a permit
        entries.append(signed)
    cursors = sorted(draw(st.sets(st.integers(1, 10**6), min_size=len(entries),
                                  max_size=len(entries))))  # fmt: skip
    page = ReceiptPage(
        miner_hotkey=draw(st.sampled_from([ids["miner1"], ids["miner1"], ids["miner2"]])),
        receipts=entries,
        cursors=cursors,
        next_cursor=cursors[-1] if cursors else 0,
        more=draw(st.booleans()),
    )
    body = codec.encode(page)
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "garbage"]))
    if damage == "truncate" and body:
        return body[: draw(st.integers(0, len(body) - 1))]
    if damage == "flip" and body:
        index = draw(st.integers(0, len(body) - 1))
        return body[:index] + bytes([body[index] ^ 0xFF]) + body[index + 1 :]
    if damage == "garbage":
        return draw(st.binary(max_size=512))
    return body


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_garbage_and_mutated_pages_never_crash_or_store_anything_invalid(
    fuzz: Fuzz, data: st.DataObject
) -> None:
    ids = fuzz.ids
    body = data.draw(pages(fuzz.genuine, ids))

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=body, headers={"content-type": "application/x-byteleap-frame"}
        )

    def connect(miner_hotkey: str, url: str, timeout: float) -> MinerClient:
        return MinerClient(ids.wallets["val_a"], miner_hotkey, url, timeout=timeout,
                           transport=httpx.MockTransport(answer))  # fmt: skip

    store = fuzz.store
    worker = ReceiptCollector(
        miners=store, receipts=store.receipts, connect=connect, own_hotkey=ids["val_a"],
        netuid=NETUID, max_concurrency=1, request_timeout_s=5.0, wall_clock=lambda: NOW,
        max_pages=2,
    )  # fmt: skip

    async def round_trip() -> list[SignedReceipt]:
        async with store.engine.begin() as conn:
            await conn.execute(sa.delete(ReceiptCursor))
            await conn.execute(sa.delete(LeaseReceipt))
        await worker.collect(fuzz.miner, fuzz.validators)
        return await store.receipts.receipts()

    stored = fuzz.loop.run(round_trip())
    event(f"stored receipts: {min(len(stored), 2)}+")
    genuine = {canonical_bytes(s.receipt): s for s in fuzz.genuine}
    by_chain: dict[tuple[str, str], list[Receipt]] = {}
    for signed in stored:
        key = canonical_bytes(signed.receipt)
        assert key in genuine, "a receipt no one signed was stored"
        assert signed == genuine[key]
        assert check_fetched(
            signed, source_miner=ids["miner1"], netuid=NETUID, validators=fuzz.validators,
            now=NOW_S, verify=verify_hotkey_signature,
        ) is None  # fmt: skip
        r = signed.receipt
        by_chain.setdefault((r.validator_hotkey, r.lease_id), []).append(r)
    for chain in by_chain.values():
        check_chain(chain)
