"""ScoringParams and the observation records refuse what would corrupt a score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from byteleap.errors import Outcome
from byteleap.scoring import (
    AvailabilityCount,
    AvailabilityObservation,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    LeaseUsage,
    ScoringParams,
)

T0 = datetime(2025, 6, 1, tzinfo=UTC)
NAIVE = datetime(2025, 6, 1)


def test_params_defaults_match_the_spec() -> None:
    p = ScoringParams()
    assert p.challenge_window == timedelta(hours=24)
    assert p.lease_window == timedelta(days=7)
    assert p.bucket_seconds == 300
    assert p.availability_horizon == timedelta(hours=169)
    assert p.availability_buckets == 2028
    assert (p.lease_weight, p.challenge_weight) == (0.7, 0.3)
    assert p.claim_expiry == timedelta(days=7)


def test_params_accept_yaml_style_values() -> None:
    p = ScoringParams.model_validate(
        {
            "challenge_window": 3600,
            "lease_window": "P2D",
            "bucket_seconds": 600,
            "availability_horizon": "PT2H",
            "lease_weight": 0.5,
            "challenge_weight": 0.5,
        }
    )
    assert p.challenge_window == timedelta(hours=1)
    assert p.lease_window == timedelta(days=2)
    assert p.availability_buckets == 12


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"lease_weight": 0.6}, "must be 1"),
        ({"lease_weight": -0.1, "challenge_weight": 1.1}, "greater than or equal to 0"),
        ({"lease_weight": float("nan")}, "finite"),
        ({"challenge_window": 0}, "challenge_window must be positive"),
        ({"lease_window": -5}, "lease_window must be positive"),
        ({"availability_horizon": 301}, "whole number"),
        ({"claim_expiry": 0}, "claim_expiry must be positive"),
        ({"bucket_seconds": 0}, "greater than or equal to 1"),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_params_refuse_bad_values(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ScoringParams.model_validate(changes)


def test_params_tolerate_float_rounding_in_the_split() -> None:
    p = ScoringParams(lease_weight=0.1 + 0.2, challenge_weight=0.7)
    assert p.lease_weight + p.challenge_weight == pytest.approx(1.0)


def test_params_are_frozen() -> None:
    p = ScoringParams()
    with pytest.raises(ValidationError):
        p.bucket_seconds = 60  # type: ignore[misc]


def test_records_refuse_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ChallengeObservation("m", "w", "g", NAIVE, Outcome.TIMEOUT)
    with pytest.raises(ValueError, match="timezone-aware"):
        AvailabilityObservation("m", "w", 1, NAIVE, True)
    with pytest.raises(ValueError, match="timezone-aware"):
        LeaseUsage("m", "l", 1.0, 1, T0, NAIVE)
    with pytest.raises(ValueError, match="timezone-aware"):
        LeaseInterval("m", "w", NAIVE)
    with pytest.raises(ValueError, match="timezone-aware"):
        GpuClaim("g", "m", "w", NAIVE)


def test_records_accept_any_aware_timezone() -> None:
    plus2 = timezone(timedelta(hours=2))
    claim = GpuClaim("g", "m", "w", datetime(2025, 6, 1, 2, tzinfo=plus2))
    assert claim.first_seen == T0


def test_verified_challenge_needs_a_throughput() -> None:
    with pytest.raises(ValueError, match="positive throughput"):
        ChallengeObservation("m", "w", "g", T0, Outcome.VERIFIED)
    with pytest.raises(ValueError, match="positive throughput"):
        ChallengeObservation("m", "w", "g", T0, Outcome.VERIFIED, 0.0)
    with pytest.raises(ValueError, match="finite"):
        ChallengeObservation("m", "w", "g", T0, Outcome.VERIFIED, float("inf"))
    # other outcomes may carry a throughput or not; it is ignored
    assert ChallengeObservation("m", "w", "g", T0, Outcome.FRAUD, 5.0).throughput_flops == 5.0


def test_challenge_outcome_must_be_the_enum() -> None:
    with pytest.raises(TypeError, match="Outcome"):
        ChallengeObservation("m", "w", "g", T0, "verified", 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["miner_hotkey", "worker_id", "gpu_uuid"])
def test_identities_must_be_non_empty(field: str) -> None:
    values = {"miner_hotkey": "m", "worker_id": "w", "gpu_uuid": "g", field: ""}
    with pytest.raises(ValueError, match=field):
        ChallengeObservation(issued_at=T0, outcome=Outcome.TIMEOUT, **values)  # type: ignore[arg-type]


def test_counts_and_prices_are_checked() -> None:
    with pytest.raises(ValueError, match="gpus"):
        AvailabilityObservation("m", "w", -1, T0, True)
    with pytest.raises(ValueError, match="gpus"):
        AvailabilityObservation("m", "w", True, T0, True)
    with pytest.raises(ValueError, match="online_buckets"):
        AvailabilityCount("m", "w", 1, -2)
    with pytest.raises(ValueError, match="exceeds gpus"):
        AvailabilityCount("m", "w", 2, 10, online_gpu_buckets=21)
    with pytest.raises(ValueError, match="price_per_gpu_hour"):
        LeaseUsage("m", "l", -1.0, 1, T0, T0)
    with pytest.raises(ValueError, match="price_per_gpu_hour"):
        LeaseUsage("m", "l", float("nan"), 1, T0, T0)
    with pytest.raises(ValueError, match="before it starts"):
        LeaseUsage("m", "l", 1.0, 1, T0, T0 - timedelta(seconds=1))
    with pytest.raises(ValueError, match="before it starts"):
        LeaseInterval("m", "w", T0, T0 - timedelta(seconds=1))


def test_availability_count_gpu_buckets_default() -> None:
    assert AvailabilityCount("m", "w", 3, 10).gpu_buckets == 30
    assert AvailabilityCount("m", "w", 3, 10, online_gpu_buckets=25).gpu_buckets == 25


def test_a_claim_is_not_last_seen_before_it_was_first_seen() -> None:
    assert GpuClaim("g", "m", "w", T0, T0).last_seen == T0
    with pytest.raises(ValueError, match="last seen"):
        GpuClaim("g", "m", "w", T0, T0 - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        GpuClaim("g", "m", "w", T0, NAIVE)
