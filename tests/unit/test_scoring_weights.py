"""Shares, scores, weights and the reasons for having none (SPEC 5.4)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from byteleap.errors import Outcome
from byteleap.scoring import (
    AvailabilityCount,
    AvailabilityObservation,
    ChallengeObservation,
    GpuClaim,
    ScoringParams,
    WeightResult,
    compute_weights,
    shares,
)
from byteleap.scoring.leases import ReceiptUsage
from tests.support.leases import usage, verified_at

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def verified(
    miner: str, tp: float, worker: str = "w", gpu: str | None = None
) -> ChallengeObservation:
    return ChallengeObservation(miner, worker, gpu or f"{miner}-g", ago(1), Outcome.VERIFIED, tp)


def full(*miners: str) -> list[AvailabilityCount]:
    return [AvailabilityCount(m, "w", 1, 2028) for m in miners]


def leased(*usages: ReceiptUsage) -> dict[str, Any]:
    """``lease_usage`` sold by one validator (share 1), with every GPU verified an hour ago."""
    return {"lease_usage": list(usages), "verified_hours": verified_at(usages, ago(1))}


def test_shares() -> None:
    assert shares({"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}
    assert shares({"a": 0.0, "b": 0.0}) == {"a": 0.0, "b": 0.0}
    assert shares({}) == {}
    with pytest.raises(ValueError, match="overflow"):
        shares({"a": 1e308, "b": 1e308})


def test_score_formula_with_default_split() -> None:
    result = compute_weights(
        now=NOW,
        challenges=[verified("a", 300.0), verified("b", 100.0)],
        **leased(usage("b", "l", 1.0, 1, ago(2), NOW)),
        availability_counts=full("a", "b"),
    )
    a, b = result.explain("a"), result.explain("b")
    assert (a.challenge_share, a.lease_share) == (0.75, 0.0)
    assert (b.challenge_share, b.lease_share) == (0.25, 1.0)
    assert a.score == pytest.approx(0.3 * 0.75)
    assert b.score == pytest.approx(0.7 + 0.3 * 0.25)
    assert result.weights == pytest.approx({"a": 0.225 / 1.0, "b": 0.775 / 1.0})
    assert sum(result.weights.values()) == pytest.approx(1.0, abs=1e-12)


def test_availability_multiplies_the_score() -> None:
    counts = [AvailabilityCount("a", "w", 1, 1014), AvailabilityCount("b", "w", 1, 2028)]
    result = compute_weights(
        now=NOW, challenges=[verified("a", 1.0), verified("b", 1.0)], availability_counts=counts
    )
    assert result.explain("a").score == pytest.approx(0.5 * 0.3 * 0.5)
    assert result.weights["a"] == pytest.approx(1 / 3)


def test_split_is_a_parameter() -> None:
    params = ScoringParams(lease_weight=1.0, challenge_weight=0.0)
    result = compute_weights(
        now=NOW,
        params=params,
        challenges=[verified("a", 1e15)],
        **leased(usage("b", "l", 1.0, 1, ago(2), NOW)),
        availability_counts=full("a", "b"),
    )
    assert result.weights == {"a": 0.0, "b": 1.0}


def test_no_verified_work_and_no_leases_scores_zero() -> None:
    idle = [
        ChallengeObservation("idle", "w", "g", ago(1), Outcome.TIMEOUT),
        ChallengeObservation("idle", "w", "g", ago(2), Outcome.EXCUSED),
    ]
    result = compute_weights(
        now=NOW, challenges=[*idle, verified("busy", 1.0)], availability_counts=full("idle", "busy")
    )
    assert result.explain("idle").score == 0.0
    assert result.weights == {"busy": 1.0, "idle": 0.0}


def test_no_miners_means_no_weights_and_a_reason() -> None:
    result = compute_weights(now=NOW)
    assert result.weights == {} and result.miners == {}
    assert result.reason is not None and "no miner to score" in result.reason


def test_nobody_available() -> None:
    result = compute_weights(now=NOW, challenges=[verified("a", 1.0)])
    assert result.weights == {}
    assert result.reason is not None
    assert "availability is 0 for all" in result.reason
    assert "1 miners: 0 with availability > 0, 0 with lease revenue, 1 with a challenge score" in (
        result.reason
    )
    assert result.explain("a").challenge_share == 1.0 and result.explain("a").weight == 0.0


def test_nobody_earned_or_proved_anything() -> None:
    result = compute_weights(now=NOW, availability_counts=full("a", "b"))
    assert result.weights == {}
    assert result.reason is not None and "no miner has lease revenue" in result.reason


def test_zero_weight_side_is_named_in_the_reason() -> None:
    params = ScoringParams(lease_weight=0.0, challenge_weight=1.0)
    result = compute_weights(
        now=NOW,
        params=params,
        **leased(usage("a", "l", 1.0, 1, ago(2), NOW)),
        availability_counts=full("a"),
    )
    assert result.reason is not None and "lease_weight is 0" in result.reason


def test_earners_are_not_the_available_ones() -> None:
    counts = [AvailabilityCount("a", "w", 1, 0), AvailabilityCount("b", "w", 1, 10)]
    result = compute_weights(now=NOW, challenges=[verified("a", 1.0)], availability_counts=counts)
    assert result.reason is not None
    assert "no miner with availability > 0 has lease revenue or a challenge score" in result.reason


def test_miner_list_decides_who_is_scored() -> None:
    result = compute_weights(
        now=NOW,
        challenges=[verified("a", 100.0), verified("gone", 900.0)],
        **leased(usage("gone", "l", 50.0, 8, ago(20), NOW)),
        availability_counts=full("a", "gone", "new"),
        miners=["a", "new"],
    )
    assert set(result.miners) == {"a", "new"}
    assert result.weights == {"a": 1.0, "new": 0.0}
    assert result.explain("a").challenge_share == 1.0


def test_raw_polls_work_as_availability() -> None:
    polls = [
        AvailabilityObservation("a", "w", 1, ago(1) - timedelta(minutes=5 * i), True)
        for i in range(1014)
    ]
    result = compute_weights(now=NOW, challenges=[verified("a", 1.0)], availability=polls)
    assert result.explain("a").availability == pytest.approx(0.5)
    assert result.weights == {"a": 1.0}


def test_both_availability_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        compute_weights(now=NOW, availability=[], availability_counts=[])


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_weights(now=datetime(2025, 6, 1))


def _scenario(rng: random.Random) -> dict[str, list[Any]]:
    challenges = [
        ChallengeObservation(
            f"m{rng.randrange(6)}",
            f"w{rng.randrange(3)}",
            f"g{rng.randrange(8)}",
            ago(rng.uniform(0.01, 30)),
            outcome,
            rng.uniform(1e13, 5e14) if outcome is Outcome.VERIFIED else None,
        )
        for outcome in rng.choices(list(Outcome), weights=[8, 1, 1, 1], k=300)
    ]
    claims = [
        GpuClaim(f"g{i}", f"m{rng.randrange(6)}", f"w{rng.randrange(3)}", ago(rng.randrange(1, 4)))
        for i in range(8)
        for _ in range(2)
    ]
    leases = [
        usage(f"m{i}", f"l{i}", rng.uniform(0.5, 3.0), 2, ago(rng.uniform(5, 200)), ago(1))
        for i in range(6)
    ]
    counts = [AvailabilityCount(f"m{i}", "w0", 2, rng.randrange(2029)) for i in range(6)]
    return {"challenges": challenges, "gpu_claims": claims, "lease_usage": leases, "counts": counts}


def _run(inputs: dict[str, list[Any]]) -> WeightResult:
    return compute_weights(
        now=NOW,
        challenges=inputs["challenges"],
        gpu_claims=inputs["gpu_claims"],
        **leased(*inputs["lease_usage"]),
        availability_counts=inputs["counts"],
    )


def test_input_order_does_not_change_anything() -> None:
    rng = random.Random(7)
    inputs = _scenario(rng)
    first = _run(inputs)
    assert first.weights and first.conflicts
    for _ in range(3):
        shuffled = {key: rng.sample(values, len(values)) for key, values in inputs.items()}
        assert _run(shuffled).to_dict() == first.to_dict()


def test_result_is_json_serialisable() -> None:
    result = _run(_scenario(random.Random(3)))
    text = json.dumps(result.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert set(data) == {
        "now", "params", "weights", "reason", "conflicts", "miners", "lease_sellers"
    }  # fmt: skip
    sold = pytest.approx(sum(m["lease_revenue"] for m in data["miners"].values()))
    assert data["lease_sellers"] == {"v": {"share": 1.0, "billed": sold, "earned": sold}}
    assert sum(data["weights"].values()) == pytest.approx(1.0)
    gpu = next(g for m in data["miners"].values() for g in m["gpus"])
    assert {"verified", "issued", "excused", "failed", "median_throughput_flops"} <= set(gpu)
    assert {"success_rate", "perf", "carried_over", "excluded_conflict"} <= set(gpu)


def test_a_network_sized_round_stays_linear() -> None:
    # 1,000 workers x 4 GPUs x 6 challenges: a quick check that nothing is quadratic
    challenges = [
        ChallengeObservation(
            f"m{w % 256}", f"w{w}", f"g{w}-{g}", ago(1 + c), Outcome.VERIFIED, 1e14 + c
        )
        for w in range(1000)
        for g in range(4)
        for c in range(6)
    ]
    counts = [AvailabilityCount(f"m{w % 256}", f"w{w}", 4, 2028) for w in range(1000)]
    result = compute_weights(now=NOW, challenges=challenges, availability_counts=counts)
    assert len(result.weights) == 256
    assert result.explain("m0").gpus[0].median_throughput_flops == pytest.approx(1e14 + 2.5)
