"""Lease revenue inside the lease window (SPEC 5.2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from byteleap.scoring import LeaseUsage, ScoringParams, lease_revenue

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
P = ScoringParams()


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def test_revenue_is_price_times_gpus_times_hours() -> None:
    usage = [
        LeaseUsage("m", "l1", 2.5, 4, ago(10), ago(7)),
        LeaseUsage("m", "l2", 1.0, 1, ago(1), NOW),
    ]
    r = lease_revenue(usage, P, NOW)["m"]
    assert r.revenue == pytest.approx(2.5 * 4 * 3 + 1.0)
    assert r.gpu_hours == pytest.approx(13.0)
    assert r.leases == 2


def test_only_the_part_inside_the_window_counts() -> None:
    usage = [
        LeaseUsage("m", "old", 1.0, 1, ago(7 * 24 + 5), ago(7 * 24 - 2)),  # 2 h inside
        LeaseUsage("m", "running", 1.0, 1, ago(1), NOW + timedelta(hours=3)),  # 1 h inside
        LeaseUsage("m", "ancient", 9.0, 9, ago(400), ago(300)),  # outside
        LeaseUsage("m", "future", 9.0, 9, NOW, NOW + timedelta(hours=1)),  # outside
    ]
    r = lease_revenue(usage, P, NOW)["m"]
    assert r.revenue == pytest.approx(3.0)
    assert r.leases == 2


def test_overlapping_stretches_of_one_lease_count_once() -> None:
    usage = [
        LeaseUsage("m", "l", 2.0, 1, ago(10), ago(5)),
        LeaseUsage("m", "l", 2.0, 1, ago(10), ago(5)),  # the same receipt fetched twice
        LeaseUsage("m", "l", 2.0, 1, ago(8), ago(6)),  # inside the first
        LeaseUsage("m", "l", 2.0, 1, ago(6), ago(3)),  # overlaps by 1 h
    ]
    assert lease_revenue(usage, P, NOW)["m"].revenue == pytest.approx(2.0 * 7)


def test_different_leases_and_miners_are_separate() -> None:
    usage = [
        LeaseUsage("m", "a", 1.0, 1, ago(2), NOW),
        LeaseUsage("m", "b", 1.0, 1, ago(2), NOW),
        LeaseUsage("n", "a", 3.0, 2, ago(2), NOW),
    ]
    result = lease_revenue(usage, P, NOW)
    assert result["m"].revenue == pytest.approx(4.0)
    assert result["n"].revenue == pytest.approx(12.0)
    assert set(lease_revenue(usage, P, NOW, miners=["n", "z"])) == {"n"}


def test_free_and_empty_leases_give_zero_revenue() -> None:
    usage = [
        LeaseUsage("m", "free", 0.0, 8, ago(5), NOW),
        LeaseUsage("m", "none", 5.0, 0, ago(5), NOW),
    ]
    assert lease_revenue(usage, P, NOW)["m"].revenue == 0.0


def test_custom_lease_window() -> None:
    usage = [LeaseUsage("m", "l", 1.0, 1, ago(48), NOW)]
    short = ScoringParams(lease_window=timedelta(hours=12))
    assert lease_revenue(usage, short, NOW)["m"].revenue == pytest.approx(12.0)
