"""Bucket arithmetic and the availability multiplier (SPEC 5.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from byteleap.scoring import (
    AvailabilityCount,
    AvailabilityObservation,
    ScoringParams,
    availability_bucket_range,
    availability_from_counts,
    availability_from_observations,
    bucket_index,
    bucket_start,
    count_availability,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
P = ScoringParams()
# small horizon for readable tests: 6 buckets of 10 minutes
SMALL = ScoringParams(bucket_seconds=600, availability_horizon=timedelta(hours=1))
NOW = datetime(2025, 6, 1, 12, 3, tzinfo=UTC)  # 3 minutes into a 10-minute bucket


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def test_bucket_index_is_floor_of_epoch_seconds() -> None:
    assert bucket_index(at(0)) == 0
    assert bucket_index(at(299.999999)) == 0
    assert bucket_index(at(300)) == 1
    assert bucket_index(at(-0.5)) == -1
    assert bucket_index(at(3600), 600) == 6
    now = datetime(2025, 6, 1, 12, 7, 31, tzinfo=UTC)
    assert bucket_index(now) == int(now.timestamp()) // 300


def test_bucket_index_ignores_the_timezone_it_is_written_in() -> None:
    utc = datetime(2025, 6, 1, 12, 7, tzinfo=UTC)
    tokyo = utc.astimezone(timezone(timedelta(hours=9)))
    assert bucket_index(utc) == bucket_index(tokyo)


def test_bucket_start_inverts_bucket_index() -> None:
    for index in (-3, 0, 1, 5_832_000):
        assert bucket_index(bucket_start(index)) == index
        assert bucket_index(bucket_start(index) - timedelta(microseconds=1)) == index - 1
    assert bucket_start(2, 600) == at(1200)
    assert bucket_start(0).tzinfo is UTC


def test_bucket_index_refuses_naive_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bucket_index(datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="bucket_seconds"):
        bucket_index(at(0), 0)


def test_horizon_is_the_completed_buckets_before_now() -> None:
    first, stop = availability_bucket_range(NOW, P)
    assert stop == bucket_index(NOW)
    assert stop - first == 2028
    first, stop = availability_bucket_range(NOW, SMALL)
    assert (stop - first, bucket_start(stop, 600)) == (6, datetime(2025, 6, 1, 12, tzinfo=UTC))


def poll(
    minutes_ago: float, healthy: bool = True, gpus: int = 1, worker: str = "w"
) -> AvailabilityObservation:
    return AvailabilityObservation("m", worker, gpus, NOW - timedelta(minutes=minutes_ago), healthy)


def test_online_means_a_healthy_report_in_the_bucket() -> None:
    # completed buckets start at 11:00, 11:10, ... 11:50; now is 12:03
    polls = [
        poll(5),  # 11:58 -> bucket 11:50: healthy
        poll(4),  # same bucket again: counts once
        poll(14, healthy=False),  # 11:49 -> bucket 11:40: unhealthy only
        poll(24),  # 11:39 -> 11:30
        poll(24, healthy=False),  # an unhealthy poll beside a healthy one does not undo it
        poll(2),  # 12:01: current, incomplete bucket: ignored
        poll(64),  # 10:59: before the horizon: ignored
    ]
    result = availability_from_observations(polls, SMALL, NOW)
    m = result["m"]
    assert m.availability == pytest.approx(2 / 6)
    assert (m.online_gpu_buckets, m.possible_gpu_buckets) == (2, 6)
    assert m.workers[0].online_buckets == 2


def test_availability_weights_workers_by_gpus() -> None:
    counts = [
        AvailabilityCount("m", "big", gpus=8, online_buckets=1014),
        AvailabilityCount("m", "small", gpus=2, online_buckets=2028),
        AvailabilityCount("other", "x", gpus=1, online_buckets=0),
    ]
    result = availability_from_counts(counts, P)
    assert result["m"].availability == pytest.approx((8 * 1014 + 2 * 2028) / (10 * 2028))
    assert result["m"].availability == pytest.approx(0.6)
    assert result["other"].availability == 0.0
    assert [w.worker_id for w in result["m"].workers] == ["big", "small"]


def test_worker_without_gpus_contributes_nothing() -> None:
    result = availability_from_counts([AvailabilityCount("m", "w", 0, 2028)], P)
    assert result["m"].availability == 0.0


def test_observations_and_counts_agree() -> None:
    polls = [poll(5 + 10 * i, gpus=2, worker="a") for i in range(4)]
    polls += [poll(5 + 10 * i, gpus=1, worker="b", healthy=i % 2 == 0) for i in range(6)]
    counts = count_availability(polls, SMALL, NOW)
    assert counts == [
        AvailabilityCount("m", "a", gpus=2, online_buckets=4, online_gpu_buckets=8),
        AvailabilityCount("m", "b", gpus=1, online_buckets=3, online_gpu_buckets=3),
    ]
    plain = [AvailabilityCount("m", "a", 2, 4), AvailabilityCount("m", "b", 1, 3)]
    from_obs = availability_from_observations(polls, SMALL, NOW)["m"].availability
    assert from_obs == availability_from_counts(plain, SMALL)["m"].availability
    assert from_obs == pytest.approx((2 * 4 + 1 * 3) / (3 * 6))


def test_added_gpus_ramp_up_and_brief_claims_do_not_pay() -> None:
    # 1 GPU online for 6 buckets, then reports 4 GPUs in the last bucket only
    polls = [poll(5 + 10 * i, gpus=1) for i in range(1, 6)] + [poll(5, gpus=4)]
    (count,) = count_availability(polls, SMALL, NOW)
    assert (count.gpus, count.online_buckets, count.online_gpu_buckets) == (4, 6, 9)
    assert availability_from_counts([count], SMALL)["m"].availability == pytest.approx(9 / 24)


def test_counts_beyond_the_horizon_or_twice_are_refused() -> None:
    with pytest.raises(ValueError, match="exceeds the 2028 buckets"):
        availability_from_counts([AvailabilityCount("m", "w", 1, 2029)], P)
    with pytest.raises(ValueError, match="counted twice"):
        availability_from_counts([AvailabilityCount("m", "w", 1, 1)] * 2, P)


def test_miners_filter() -> None:
    counts = [AvailabilityCount("m", "w", 1, 10), AvailabilityCount("n", "w", 1, 10)]
    assert set(availability_from_counts(counts, P, miners=["n"])) == {"n"}
    polls = [poll(5)]
    assert availability_from_observations(polls, SMALL, NOW, miners=["n"]) == {}
