"""One challenge epoch through the real Challenger and a real SQLite store, against a recording
fake miner whose answers and their arrival times the test chooses.

What it pins: every row is stored before the first request leaves; one request per miner; the
deadline is judged on the validator's clock for commits and excuses alike; throughput is credited
per GPU; and when the verifier pool cannot keep up, every reveal is still requested and checked
for its Merkle paths while only a random share is checked entry by entry."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from byteleap.chain import NeuronView
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import ProverRun, open_rows, run_reference
from byteleap.challenge.sizing import CalibrationSettings, calibrate
from byteleap.config.challenge import ChallengeSection
from byteleap.crypto import WorkerKey
from byteleap.errors import ByteLeapError, Outcome, PeerUnavailable
from byteleap.protocol.miner_api.challenges import (
    ChallengeResponse,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.worker_link.challenges import GpuCommit, RowOpening
from byteleap.sessions.round_planner import EpochPlan, EpochPlanner
from neurons.common.miner_client import EpochArrival
from neurons.validator.challenger import Challenger, EpochReport
from neurons.validator.store import SqlStore, open_store
from neurons.validator.store.records import (
    ChallengeVerdict,
    GpuSnapshot,
    WorkerRow,
    WorkerSnapshot,
)
from neurons.validator.verification import VerifierPool

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
MINERS = ("5Miner-epoch-a", "5Miner-epoch-b")
PARAMS = ChallengeParams(m=32, n=16, k=16, v=15, stages=3)
#: the CPU class is sized at this rate: 1 s per challenge, a deadline of 1.5 s
RATE = float(PARAMS.flops)


def section(**overrides: object) -> ChallengeSection:
    values: dict[str, object] = {
        "cpu_workers": True,
        "cpu": PARAMS.model_dump(),
        "cpu_expected_flops": RATE,
        "sampling": {"stages": 2, "rows": 4, "columns": 3},
        "verifier_processes": 1,
    }
    values.update(overrides)
    return ChallengeSection.model_validate(values)


@dataclass
class Device:
    miner: str
    key: WorkerKey
    uuid: str
    #: seconds after dispatch the answer arrives (on the validator's clock)
    after_s: float
    #: an excuse instead of a commit
    excuse: ByteLeapError | None = None
    #: corrupt the Merkle path of every revealed row
    bad_proof: bool = False
    run: ProverRun | None = None

    @property
    def pubkey(self) -> str:
        return self.key.public_key.hex()


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeMiner:
    """A recording fake of the miner client: answers from the devices, at the times they say."""

    hotkey: str
    devices: dict[str, Device]
    clock: FakeClock
    store: SqlStore
    stored_before_dispatch: list[int] = field(default_factory=list)
    epoch_requests: list[EpochRequest] = field(default_factory=list)
    reveals: list[OpeningsRequest] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)

    def prepare_epoch(self, request: EpochRequest, *, wait_s: float) -> str:
        self.prepared.append(request.epoch_id)
        return f"prepared {request.epoch_id}"

    async def epoch(
        self,
        request: EpochRequest,
        *,
        wait_s: float,
        clock: Callable[[], float],
        prepared: object = None,
    ) -> AsyncIterator[EpochArrival]:
        assert prepared == f"prepared {request.epoch_id}"  # built before the clock started
        start = self.clock.now  # the challenger read its clock just before this call
        self.epoch_requests.append(request)
        rows = [r for c in request.challenges for r in await self.store.challenge(c.challenge_id)]
        self.stored_before_dispatch.append(len(rows))
        order = sorted(request.challenges, key=lambda c: self.devices[c.worker_pubkey].after_s)
        for challenge in order:
            device = self.devices[challenge.worker_pubkey]
            self.clock.now = start + device.after_s
            if device.excuse is not None:
                yield EpochArrival(challenge.challenge_id, device.excuse, clock())
                continue
            binding = Binding(
                miner_hotkey=self.hotkey, worker_pubkey=device.key.public_key,
                gpu_uuid=device.uuid,
            )  # fmt: skip
            device.run = run_reference(binding, challenge.seed, challenge.params)
            commit = GpuCommit.create(
                device.key, challenge.challenge_id, device.uuid, device.run.roots
            )
            response = ChallengeResponse(
                challenge_id=challenge.challenge_id,
                miner_hotkey=self.hotkey,
                worker_pubkey=challenge.worker_pubkey,
                gpus=[commit],
                miner_signature=bytes(64),
            )
            yield EpochArrival(challenge.challenge_id, response, clock())

    async def reveal(self, request: OpeningsRequest) -> OpeningsResponse:
        self.reveals.append(request)
        device = self.devices[request.worker_pubkey]
        assert device.run is not None
        out = []
        for wanted in request.openings:
            for o in open_rows(device.run, wanted.stage, list(wanted.rows)):
                proof = b"".join(o.proof)
                if device.bad_proof:
                    proof = bytes([proof[0] ^ 1]) + proof[1:]
                out.append(
                    RowOpening(
                        gpu_uuid=wanted.gpu_uuid, stage=o.stage, row=o.row, values=o.values,
                        proof=proof,
                    )
                )  # fmt: skip
        return OpeningsResponse(challenge_id=request.challenge_id, openings=out)

    async def aclose(self) -> None:
        return None


@pytest.fixture(name="store")
async def store_fixture(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", auto_upgrade=True)
    await store.sync_miners(NOW, [NeuronView(i + 1, m, "5Cold", 1.0, False) for i, m in
                                  enumerate(MINERS)])  # fmt: skip
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="module", name="verifier")
def verifier_fixture() -> Iterator[VerifierPool]:
    pool = VerifierPool(1)
    yield pool
    pool.close()


def devices(*specs: tuple[str, float]) -> list[Device]:
    return [
        Device(miner, WorkerKey.generate(), f"CPU-{i:032x}", after)
        for i, (miner, after) in enumerate(specs)
    ]


def plan_for(devs: list[Device], s: ChallengeSection) -> EpochPlan:
    rows = [
        WorkerRow(
            miner_hotkey=d.miner,
            miner_uid=1,
            endpoint="http://127.0.0.1:1",
            worker_pubkey=d.pubkey,
            state="idle",
            online=True,
            last_seen=NOW,
            gpus=(GpuSnapshot(d.uuid, "CPU Test CPU", 4096),),
        )
        for d in devs
    ]
    rates = calibrate([], CalibrationSettings(cpu_expected_flops=s.cpu_expected_flops))
    return EpochPlanner(s, random.Random(3)).plan(rows, rates=rates)


async def run_epoch(
    store: SqlStore,
    verifier: VerifierPool,
    devs: list[Device],
    s: ChallengeSection,
    *,
    fraction: float | None = None,
    merkle_cost: float = 0.0,
    known_leases: frozenset[str] = frozenset(),
) -> tuple[EpochReport, dict[str, FakeMiner]]:
    """One epoch of ``devs``; ``fraction`` sets the verify budget so that share of GPUs fits."""
    for miner in MINERS:
        snaps = [
            WorkerSnapshot(d.pubkey, "idle", (GpuSnapshot(d.uuid, "CPU Test CPU", 4096),))
            for d in devs
            if d.miner == miner
        ]
        await store.record_inventory(NOW, miner, snaps, bucket_seconds=300)
    clock = FakeClock()
    seeds = itertools.count(11)
    fakes = {
        m: FakeMiner(m, {d.pubkey: d for d in devs if d.miner == m}, clock, store) for m in MINERS
    }
    challenger = Challenger(
        store=store,
        connect=lambda hotkey, _url, _timeout: fakes[hotkey],
        verifier=verifier,
        section=s,
        wall_clock=lambda: NOW,
        monotonic=clock,
        sampling_rng=lambda: random.Random(next(seeds)),
        known_lease=lambda key: key[1] in known_leases,
    )
    if fraction is not None:
        budget = challenger.budget
        budget.mean_verify_s = budget.pool_seconds / (fraction * len(devs))
        # 0: the Merkle checks of the rest are free, and p is exactly the share that fits
        budget.mean_merkle_s = merkle_cost * budget.mean_verify_s
        assert budget.fraction(len(devs)) == pytest.approx(fraction, rel=1e-3)
    report = await challenger.run_epoch(plan_for(devs, s))
    return report, fakes


def verdicts_of(report: EpochReport) -> dict[str, ChallengeVerdict]:
    return {v.gpu_uuid: v for result in report.results for v in result.verdicts}


def outcome(verdict: ChallengeVerdict) -> tuple[Outcome, str | None]:
    return verdict.outcome, verdict.failure


async def test_one_request_per_miner_every_row_stored_before_dispatch(
    store: SqlStore, verifier: VerifierPool
) -> None:
    devs = devices((MINERS[0], 0.2), (MINERS[0], 0.4), (MINERS[1], 0.3))
    report, fakes = await run_epoch(store, verifier, devs, section())
    assert [len(f.epoch_requests) for f in fakes.values()] == [1, 1]
    assert [len(f.epoch_requests[0].challenges) for f in fakes.values()] == [2, 1]
    # the first request found the rows of the whole epoch stored
    assert max(f.stored_before_dispatch[0] for f in fakes.values()) >= 1
    assert sum(f.stored_before_dispatch[0] for f in fakes.values()) >= len(devs)
    verdicts = verdicts_of(report)
    for d in devs:
        verdict = verdicts[d.uuid]
        assert outcome(verdict) == (Outcome.VERIFIED, None)
        assert verdict.checked_entries == 2 * 4 * 3  # opened exactly
        assert verdict.throughput_flops == pytest.approx(PARAMS.flops / d.after_s)
        (row,) = await store.challenge(verdict.challenge_id)
        assert row.status == "closed" and row.outcome is Outcome.VERIFIED


async def test_the_deadline_holds_for_commits_and_excuses_alike(
    store: SqlStore, verifier: VerifierPool
) -> None:
    late, leased, busy, late_leased, ok = devices(
        (MINERS[0], 1.6), (MINERS[0], 0.1), (MINERS[0], 0.2), (MINERS[1], 1.7), (MINERS[1], 1.4)
    )
    for device in (leased, busy, late_leased):
        device.excuse = PeerUnavailable("worker is leased", leased=True)
    known = frozenset({leased.pubkey, late_leased.pubkey})
    report, _ = await run_epoch(
        store, verifier, [late, leased, busy, late_leased, ok], section(), known_leases=known
    )
    verdicts = verdicts_of(report)
    assert outcome(verdicts[late.uuid]) == (Outcome.TIMEOUT, "timeout")
    # even a lease we know of is no excuse once the deadline has passed
    assert outcome(verdicts[late_leased.uuid]) == (Outcome.TIMEOUT, "timeout")
    # in time, a lease we know of explains it; without one, busy is a missed challenge
    assert outcome(verdicts[leased.uuid]) == (Outcome.EXCUSED, "unavailable")
    assert outcome(verdicts[busy.uuid]) == (Outcome.TIMEOUT, "unexplained_busy")
    assert outcome(verdicts[ok.uuid]) == (Outcome.VERIFIED, None)


async def test_a_large_epoch_requests_every_reveal_and_opens_a_random_share(
    store: SqlStore, verifier: VerifierPool
) -> None:
    devs = devices(*[(MINERS[i % 2], 0.5) for i in range(12)])
    devs[0].bad_proof = True
    report, fakes = await run_epoch(store, verifier, devs, section(), fraction=0.5)
    assert report.verify_fraction == pytest.approx(0.5, rel=1e-3)
    assert sum(len(f.reveals) for f in fakes.values()) == len(devs)  # every reveal requested
    verdicts = verdicts_of(report)
    # a broken Merkle path is caught whether or not the entries were opened
    assert outcome(verdicts[devs[0].uuid]) == (Outcome.FRAUD, "bad_proof")
    honest = [verdicts[d.uuid] for d in devs[1:]]
    assert all(v.outcome is Outcome.VERIFIED for v in honest)
    opened = [v for v in honest if v.checked_entries]
    sampled = [v for v in honest if not v.checked_entries]
    assert opened and sampled  # both kinds in one epoch (seeded)
    assert all("sampled verification" in (v.detail or "") for v in sampled)


async def test_when_merkle_checks_would_eat_the_sample_the_rest_is_received_unchecked(
    store: SqlStore, verifier: VerifierPool
) -> None:
    devs = devices(*[(MINERS[i % 2], 0.5) for i in range(10)])
    report, fakes = await run_epoch(store, verifier, devs, section(), fraction=0.5, merkle_cost=0.5)
    assert 0.0 < report.verify_fraction < 1.0
    assert sum(len(f.reveals) for f in fakes.values()) == len(devs)  # still every reveal
    verdicts = list(verdicts_of(report).values())
    assert all(v.outcome is Outcome.VERIFIED for v in verdicts)
    unchecked = [v for v in verdicts if not v.checked_entries]
    assert unchecked and all("not checked" in (v.detail or "") for v in unchecked)
