"""The worked example of docs/scoring.md, number for number.

If this test changes, the document must change with it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from byteleap.errors import Outcome
from byteleap.scoring import (
    AvailabilityCount,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    ScoringParams,
    WeightResult,
    compute_weights,
    format_explanation,
)
from tests.support.leases import usage

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
V, T, F, E = Outcome.VERIFIED, Outcome.TIMEOUT, Outcome.FRAUD, Outcome.EXCUSED
TF = 1e12


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def chal(
    hotkey: str, worker: str, gpu: str, hours_ago: float, outcome: Outcome, tflops: float = 0.0
) -> ChallengeObservation:
    tp = tflops * TF if outcome is Outcome.VERIFIED else None
    # the example's excuses are the validator's own (a restart): the miner's excuse budget is
    # a separate rule with its own example in docs/scoring.md
    ours = outcome is Outcome.EXCUSED
    return ChallengeObservation(hotkey, worker, gpu, ago(hours_ago), outcome, tp, ours)


CHALLENGES = [
    # alice / a1: two GPUs
    chal("alice", "a1", "GPU-A0", 30, V, 500),  # older than the window: ignored
    chal("alice", "a1", "GPU-A0", 20, V, 90),
    chal("alice", "a1", "GPU-A0", 16, V, 100),
    chal("alice", "a1", "GPU-A0", 12, V, 120),
    chal("alice", "a1", "GPU-A0", 8, T),
    chal("alice", "a1", "GPU-A1", 20, V, 125),
    chal("alice", "a1", "GPU-A1", 16, V, 125),
    chal("alice", "a1", "GPU-A1", 12, V, 125),
    chal("alice", "a1", "GPU-A1", 8, E),
    # bob / b1: leased since 6 h ago
    chal("bob", "b1", "GPU-B0", 31, V, 100),  # before the carried-over window: ignored
    chal("bob", "b1", "GPU-B0", 29, V, 200),
    chal("bob", "b1", "GPU-B0", 20, V, 200),
    chal("bob", "b1", "GPU-B0", 11, E),
    chal("bob", "b1", "GPU-B0", 3, E),  # during the lease: not counted at all
    # carol / c1: one fraud
    chal("carol", "c1", "GPU-C0", 20, V, 300),
    chal("carol", "c1", "GPU-C0", 16, V, 300),
    chal("carol", "c1", "GPU-C0", 12, F),
    # carol / c2: reports alice's GPU-A1
    chal("carol", "c2", "GPU-A1", 10, V, 125),
    chal("carol", "c2", "GPU-A1", 5, V, 125),
    # dave / d1
    chal("dave", "d1", "GPU-D0", 10, V, 200),
    chal("dave", "d1", "GPU-D0", 5, T),
]

CLAIMS = [
    GpuClaim("GPU-A0", "alice", "a1", datetime(2025, 5, 1, tzinfo=UTC)),
    GpuClaim("GPU-A1", "alice", "a1", datetime(2025, 5, 1, tzinfo=UTC)),
    GpuClaim("GPU-B0", "bob", "b1", datetime(2025, 5, 1, tzinfo=UTC)),
    GpuClaim("GPU-C0", "carol", "c1", datetime(2025, 5, 10, tzinfo=UTC)),
    GpuClaim("GPU-A1", "carol", "c2", datetime(2025, 5, 20, tzinfo=UTC)),
    GpuClaim("GPU-D0", "dave", "d1", datetime(2025, 5, 15, tzinfo=UTC)),
]

LEASE_INTERVALS = [
    LeaseInterval("alice", "a1", ago(72), ago(62)),
    LeaseInterval("bob", "b1", ago(7 * 24 + 2), ago(7 * 24 - 12)),
    LeaseInterval("bob", "b1", ago(6), None),
]

# sold by validator V, the only validator (stake share 1); the GPUs are H100s, capped at 5.00
H100_CAP = 5.0
LEASE_USAGE = [
    usage("alice", "L-alice", 2.00, 2, ago(72), ago(62), seller="V", uuids=["GPU-A0", "GPU-A1"],
          caps=[H100_CAP] * 2),
    usage("bob", "L-bob-1", 3.50, 1, ago(7 * 24 + 2), ago(7 * 24 - 12), seller="V",
          uuids=["GPU-B0"], caps=[H100_CAP]),
    usage("bob", "L-bob-2", 3.00, 1, ago(6), NOW, seller="V", uuids=["GPU-B0"], caps=[H100_CAP]),
]  # fmt: skip

# every GPU this validator verified, by the hour: every leased GPU was verified in the window
VERIFIED_HOURS: dict[tuple[str, str], tuple[datetime, ...]] = {}
for c in CHALLENGES:
    if c.outcome is Outcome.VERIFIED:
        key = (c.miner_hotkey, c.gpu_uuid)
        hour = c.issued_at.replace(minute=0, second=0, microsecond=0)
        VERIFIED_HOURS[key] = tuple(sorted({*VERIFIED_HOURS.get(key, ()), hour}))

AVAILABILITY = [
    AvailabilityCount("alice", "a1", gpus=2, online_buckets=1521),
    AvailabilityCount("bob", "b1", gpus=1, online_buckets=2028),
    AvailabilityCount("carol", "c1", gpus=1, online_buckets=2028),
    AvailabilityCount("carol", "c2", gpus=1, online_buckets=2028),
    AvailabilityCount("dave", "d1", gpus=1, online_buckets=1014),
]


@pytest.fixture(scope="module")
def result() -> WeightResult:
    return compute_weights(
        now=NOW,
        params=ScoringParams(),
        challenges=CHALLENGES,
        gpu_claims=CLAIMS,
        lease_intervals=LEASE_INTERVALS,
        lease_usage=LEASE_USAGE,
        availability_counts=AVAILABILITY,
        verified_hours=VERIFIED_HOURS,
    )


def test_gpu_level_numbers(result: WeightResult) -> None:
    a0, a1 = result.explain("alice").gpus
    assert (a0.gpu_uuid, a0.issued, a0.verified, a0.excused, a0.failed) == ("GPU-A0", 4, 3, 0, 1)
    assert a0.median_throughput_flops == pytest.approx(100 * TF)
    assert a0.success_rate == pytest.approx(0.75)
    assert a0.perf == pytest.approx(75 * TF)
    assert (a1.issued, a1.verified, a1.excused, a1.failed) == (4, 3, 1, 0)
    assert a1.success_rate == pytest.approx(1.0)
    assert a1.perf == pytest.approx(125 * TF)

    (b0,) = result.explain("bob").gpus
    assert b0.carried_over
    assert b0.window_start == ago(30)
    assert b0.leased_seconds_skipped == 6 * 3600
    assert (b0.issued, b0.verified, b0.excused, b0.failed) == (3, 2, 1, 0)
    assert b0.perf == pytest.approx(200 * TF)

    c0, c2 = result.explain("carol").gpus
    assert c0.fraud_locked and c0.perf == 0.0
    assert c0.measured_perf == pytest.approx(200 * TF)
    assert c2.excluded_conflict and c2.perf == 0.0
    assert c2.measured_perf == pytest.approx(125 * TF)

    (d0,) = result.explain("dave").gpus
    assert d0.success_rate == pytest.approx(0.5)
    assert d0.perf == pytest.approx(100 * TF)


def test_miner_level_numbers(result: WeightResult) -> None:
    expected = {
        # hotkey: (challenge_raw, revenue, availability, C_share, L_share, score)
        "alice": (200 * TF, 40.0, 0.75, 0.4, 0.4, 0.30),
        "bob": (200 * TF, 60.0, 1.0, 0.4, 0.6, 0.54),
        "carol": (0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
        "dave": (100 * TF, 0.0, 0.5, 0.2, 0.0, 0.03),
    }
    assert sorted(result.miners) == sorted(expected)
    for hotkey, (raw, revenue, avail, c_share, l_share, score) in expected.items():
        m = result.explain(hotkey)
        assert m.challenge_raw == pytest.approx(raw, abs=1e-3), hotkey
        assert m.lease_revenue == pytest.approx(revenue, abs=1e-12), hotkey
        assert m.availability == pytest.approx(avail, abs=1e-12), hotkey
        assert m.challenge_share == pytest.approx(c_share, abs=1e-12), hotkey
        assert m.lease_share == pytest.approx(l_share, abs=1e-12), hotkey
        assert m.score == pytest.approx(score, abs=1e-12), hotkey
    assert result.explain("carol").fraud_locked_workers == ("c1",)


def test_weights(result: WeightResult) -> None:
    assert result.reason is None
    assert result.weights == pytest.approx(
        {"alice": 10 / 29, "bob": 18 / 29, "carol": 0.0, "dave": 1 / 29}, abs=1e-12
    )
    assert result.weights["alice"] == pytest.approx(0.344828, abs=1e-6)
    assert result.weights["bob"] == pytest.approx(0.620690, abs=1e-6)
    assert result.weights["dave"] == pytest.approx(0.034483, abs=1e-6)


def test_conflict_is_reported(result: WeightResult) -> None:
    (conflict,) = result.conflicts
    assert (conflict.gpu_uuid, conflict.owner_hotkey, conflict.claimant_hotkey) == (
        "GPU-A1",
        "alice",
        "carol",
    )
    assert conflict.claimant_worker_id == "c2" and not conflict.implicit
    assert result.explain("carol").conflicts == (conflict,)


def test_explanation_is_json_and_text(result: WeightResult) -> None:
    data = json.loads(json.dumps(result.to_dict()))
    assert data["weights"]["bob"] == pytest.approx(18 / 29)
    assert data["miners"]["carol"]["fraud_locked"] is True
    assert data["miners"]["bob"]["gpus"][0]["carried_over"] is True
    assert data["conflicts"][0]["claimant_worker_id"] == "c2"
    text = format_explanation(result.explain("carol"))
    assert "FRAUD LOCKOUT on workers: c1" in text
    assert "excluded: UUID owned by an earlier claimant" in text
