"""Lease revenue and the lease share (SPEC 5.2, 5.5): window, verified GPUs, price caps, one
GPU-hour once, stake-share pools."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from byteleap.scoring import LeaseUsage, ScoringParams, lease_revenue
from byteleap.scoring.leases import (
    LeaseScores,
    ReceiptUsage,
    VerifiedHours,
    lease_priority,
    lease_scores,
)
from tests.support.leases import usage, verified_at

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
P = ScoringParams()


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


_VERIFIED: Any = object()


def score(
    *usages: ReceiptUsage,
    now: datetime = NOW,
    params: ScoringParams = P,
    miners: list[str] | None = None,
    verified_hours: Any = _VERIFIED,
) -> LeaseScores:
    """Every GPU of ``usages`` verified an hour before ``now``, unless ``verified_hours`` says."""
    if verified_hours is _VERIFIED:
        verified_hours = verified_at(usages, now - timedelta(hours=1))
    return lease_scores(usages, params, now, miners=miners, verified_hours=verified_hours)


# --------------------------------------------------------------------------- revenue


def test_revenue_is_price_times_gpus_times_hours() -> None:
    r = score(usage("m", "l1", 2.5, 4, ago(10), ago(7)), usage("m", "l2", 1.0, 1, ago(1), NOW))
    m = r.miners["m"]
    assert m.revenue == pytest.approx(2.5 * 4 * 3 + 1.0)
    assert m.gpu_hours == pytest.approx(13.0)
    assert m.leases == 2
    assert m.share == pytest.approx(1.0)  # the only seller, share 1, sold only to m
    assert r.sellers["v"].billed == pytest.approx(31.0) and r.sellers["v"].earned == pytest.approx(
        31.0
    )


def test_only_the_part_inside_the_window_counts() -> None:
    m = score(
        usage("m", "old", 1.0, 1, ago(7 * 24 + 5), ago(7 * 24 - 2)),  # 2 h inside
        usage("m", "running", 1.0, 1, ago(1), NOW + timedelta(hours=3)),  # 1 h inside
        usage("m", "ancient", 9.0, 9, ago(400), ago(300)),  # outside
        usage("m", "future", 9.0, 9, NOW, NOW + timedelta(hours=1)),  # outside
    ).miners["m"]
    assert m.revenue == pytest.approx(3.0)
    assert m.leases == 2


def test_overlapping_stretches_of_one_lease_count_once() -> None:
    m = score(
        usage("m", "l", 2.0, 1, ago(10), ago(5)),
        usage("m", "l", 2.0, 1, ago(10), ago(5)),  # the same receipt fetched twice
        usage("m", "l", 2.0, 1, ago(8), ago(6)),  # inside the first
        usage("m", "l", 2.0, 1, ago(6), ago(3)),  # overlaps by 1 h
    ).miners["m"]
    assert m.revenue == pytest.approx(2.0 * 7)
    assert m.share == pytest.approx(1.0)


def test_different_leases_and_miners_are_separate() -> None:
    usages = [
        usage("m", "a", 1.0, 1, ago(2), NOW),
        usage("m", "b", 1.0, 1, ago(2), NOW),
        usage("n", "a", 3.0, 2, ago(2), NOW),
    ]
    result = score(*usages).miners
    assert result["m"].revenue == pytest.approx(4.0)
    assert result["n"].revenue == pytest.approx(12.0)
    assert (result["m"].share, result["n"].share) == pytest.approx((0.25, 0.75))
    only_n = score(*usages, miners=["n", "z"]).miners
    assert set(only_n) == {"n"}
    assert only_n["n"].share == pytest.approx(1.0)  # m's stretches are not in the pool either


def test_free_and_empty_leases_give_zero_revenue() -> None:
    m = score(
        usage("m", "free", 0.0, 8, ago(5), NOW), usage("m", "none", 5.0, 0, ago(5), NOW)
    ).miners["m"]
    assert (m.revenue, m.share) == (0.0, 0.0)


def test_custom_lease_window() -> None:
    short = ScoringParams(lease_window=timedelta(hours=12))
    m = score(usage("m", "l", 1.0, 1, ago(48), NOW), params=short).miners["m"]
    assert m.revenue == pytest.approx(12.0)


def test_lease_revenue_is_the_miners_part() -> None:
    u = usage("m", "l", 1.0, 1, ago(2), NOW)
    assert lease_revenue([u], P, NOW, verified_hours=verified_at([u], ago(1))) == (score(u).miners)


def test_usage_without_seller_and_gpus_is_refused() -> None:
    with pytest.raises(TypeError, match="ReceiptUsage"):
        lease_scores([LeaseUsage("m", "l", 1.0, 1, ago(2), NOW)], P, NOW)


# --------------------------------------------------------------------------- price caps


def test_each_gpu_is_priced_at_most_at_the_cap_of_its_model() -> None:
    m = score(usage("m", "l", 10.0, 3, ago(2), NOW, caps=(4.0, 10.0, 25.0))).miners["m"]
    assert m.revenue == pytest.approx(2 * (4.0 + 10.0 + 10.0))
    assert m.gpu_hours == pytest.approx(6.0)


def test_a_capped_price_changes_the_sellers_pool_and_so_the_shares() -> None:
    inflated = usage("m", "l1", 1e9, 1, ago(2), NOW, caps=(7.0,))
    honest = usage("n", "l2", 3.5, 1, ago(2), NOW, caps=(7.0,))
    shares = {k: v.share for k, v in score(inflated, honest).miners.items()}
    assert shares == pytest.approx({"m": 7 / 10.5, "n": 3.5 / 10.5})


# --------------------------------------------------------------------------- verified GPUs


def test_only_gpus_this_validator_verified_in_the_window_earn() -> None:
    u = usage("m", "l", 1.0, 3, ago(5), NOW, uuids=("g0", "g1", "g2"))
    hours = {
        ("m", "g0"): (hour(ago(30)),),  # verified inside the 7-day window
        ("m", "g1"): (hour(ago(8 * 24)),),  # too long ago
        ("other", "g2"): (hour(ago(1)),),  # another miner's copy of the UUID
    }
    m = score(u, verified_hours=hours).miners["m"]
    assert m.revenue == pytest.approx(5.0) and m.gpu_hours == pytest.approx(5.0)
    # the unverified GPUs are not billed either: the pool is the verified part
    assert m.share == pytest.approx(1.0)


def test_without_verified_hours_nothing_earns() -> None:
    u = usage("m", "l", 5.0, 2, ago(5), NOW)
    hours: VerifiedHours | None
    for hours in (None, {}):
        result = lease_scores([u], P, NOW, verified_hours=hours)
        assert (result.miners["m"].revenue, result.miners["m"].share) == (0.0, 0.0)
        assert result.sellers == {}


def test_a_verified_hour_counts_when_it_overlaps_the_window() -> None:
    now = NOW + timedelta(minutes=30)  # the window starts at 12:30, seven days back
    start = now - P.lease_window
    u = usage("m", "l", 1.0, 1, now - timedelta(hours=2), now)
    inside = {("m", "m/l/0"): (hour(start),)}  # 12:00-13:00 overlaps [12:30, ...)
    before = {("m", "m/l/0"): (hour(start) - timedelta(hours=1),)}  # 11:00-12:00 does not
    later = {("m", "m/l/0"): (hour(now),)}  # the current hour, before now
    assert score(u, now=now, verified_hours=inside).miners["m"].revenue == pytest.approx(2.0)
    assert score(u, now=now, verified_hours=before).miners["m"].revenue == 0.0
    assert score(u, now=now, verified_hours=later).miners["m"].revenue == pytest.approx(2.0)


# --------------------------------------------------------------------------- one GPU-hour once


def test_one_gpu_hour_earns_once_and_the_larger_stake_wins() -> None:
    big = usage("m", "L1", 2.0, 1, ago(10), ago(4), seller="big", share=0.6, uuids=["g"])
    small = usage("m", "L2", 3.0, 1, ago(6), NOW, seller="small", share=0.4, uuids=["g"])
    result = score(big, small)
    m = result.miners["m"]
    assert m.gpu_hours == pytest.approx(10.0)  # not 12: the 2 shared hours count once
    assert m.revenue == pytest.approx(2.0 * 6 + 3.0 * 4)
    assert result.sellers["big"].earned == pytest.approx(12.0)
    assert result.sellers["small"].billed == pytest.approx(18.0)
    assert result.sellers["small"].earned == pytest.approx(12.0)
    assert m.by_seller == pytest.approx({"big": 0.6, "small": 0.4 * 12 / 18})
    assert m.share == pytest.approx(0.6 + 0.4 * 12 / 18)


def test_between_equal_stakes_the_earlier_lease_then_the_smaller_hotkey_wins() -> None:
    later = usage("m", "A", 1.0, 1, ago(6), ago(2), seller="x", share=0.5, uuids=["g"])
    earlier = usage("m", "B", 1.0, 1, ago(8), ago(4), seller="y", share=0.5, uuids=["g"])
    sellers = score(later, earlier).sellers
    assert sellers["y"].earned == pytest.approx(4.0)
    assert sellers["x"].earned == pytest.approx(2.0)
    a = usage("m", "A", 1.0, 1, ago(4), NOW, seller="x", share=0.5, uuids=["g"])
    b = usage("m", "B", 1.0, 1, ago(4), NOW, seller="y", share=0.5, uuids=["g"])
    sellers = score(b, a).sellers
    assert (sellers["x"].earned, sellers["y"].earned) == pytest.approx((4.0, 0.0))
    assert lease_priority(0.5, ago(4), "x", "A") < lease_priority(0.5, ago(4), "y", "B")
    assert lease_priority(0.6, ago(1), "z", "Z") < lease_priority(0.5, ago(9), "a", "A")


def test_a_whole_lease_wins_not_each_hour_separately() -> None:
    # B started first, so it keeps every shared instant, also those of A's earlier receipts
    a1 = usage("m", "A", 1.0, 1, ago(6), ago(5), seller="x", share=0.5, uuids=["g"])
    a2 = usage("m", "A", 1.0, 1, ago(5), ago(3), seller="x", share=0.5, uuids=["g"])
    b = usage("m", "B", 1.0, 1, ago(7), ago(4), seller="y", share=0.5, uuids=["g"])
    sellers = score(a1, a2, b).sellers
    assert sellers["y"].earned == pytest.approx(3.0)
    assert sellers["x"].earned == pytest.approx(1.0)  # only ago(4)..ago(3)


def test_one_sellers_two_leases_of_one_gpu_count_once_and_waste_its_pool() -> None:
    result = score(
        usage("m", "L1", 1.0, 1, ago(4), NOW, uuids=["g"]),
        usage("m", "L2", 1.0, 1, ago(4), NOW, uuids=["g"]),
        usage("n", "L3", 1.0, 1, ago(4), NOW),
    )
    m, n = result.miners["m"], result.miners["n"]
    assert m.revenue == pytest.approx(4.0)
    assert result.sellers["v"].billed == pytest.approx(12.0)
    assert (m.share, n.share) == pytest.approx((1 / 3, 1 / 3))


def test_the_same_uuid_of_two_miners_is_two_gpus() -> None:
    # a UUID is only a string: reporting another miner's takes nothing from it
    result = score(
        usage("m", "L1", 1.0, 1, ago(4), NOW, seller="x", share=0.5, uuids=["g"]),
        usage("n", "L2", 1.0, 1, ago(4), NOW, seller="y", share=0.5, uuids=["g"]),
    )
    assert result.miners["m"].revenue == result.miners["n"].revenue == pytest.approx(4.0)


# --------------------------------------------------------------------------- stake-share pools


def test_each_seller_hands_out_its_stake_share_and_no_more() -> None:
    result = score(
        usage("m", "a1", 1.0, 1, ago(10), NOW, seller="a", share=0.5),
        usage("n", "a2", 1.0, 3, ago(10), NOW, seller="a", share=0.5),
        usage("n", "b1", 100.0, 1, ago(1), NOW, seller="b", share=0.3),
        # "c" holds the other 0.2 and sold nothing: that part of the pool goes to nobody
    )
    m, n = result.miners["m"], result.miners["n"]
    assert m.share == pytest.approx(0.5 * 10 / 40)
    assert n.share == pytest.approx(0.5 * 30 / 40 + 0.3)
    assert n.by_seller == pytest.approx({"a": 0.375, "b": 0.3})
    assert {k: s.share for k, s in result.sellers.items()} == {"a": 0.5, "b": 0.3}


def test_a_seller_without_stake_adds_nothing() -> None:
    m = score(usage("m", "l", 5.0, 1, ago(2), NOW, seller="z", share=0.0)).miners["m"]
    assert m.revenue == pytest.approx(10.0) and m.share == 0.0


def test_shares_must_be_consistent_and_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="two stake shares"):
        score(
            usage("m", "a", 1.0, 1, ago(2), NOW, seller="a", share=0.5),
            usage("m", "b", 1.0, 1, ago(2), NOW, seller="a", share=0.6),
        )
    with pytest.raises(ValueError, match="more than 1"):
        score(
            usage("m", "a", 1.0, 1, ago(2), NOW, seller="a", share=0.7),
            usage("m", "b", 1.0, 1, ago(2), NOW, seller="b", share=0.7),
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"share": 1.5}, "validator_share"),
        ({"share": float("nan")}, "validator_share"),
        ({"uuids": ["g0"]}, "needs 2 gpu_uuids"),
        ({"uuids": ["g0", "g0"]}, "distinct"),
        ({"uuids": ["g0", ""]}, "distinct"),
        ({"caps": [1.0]}, "needs 2 gpu_uuids"),
        ({"caps": [1.0, -1.0]}, "gpu_price_caps"),
        ({"caps": [1.0, float("inf")]}, "gpu_price_caps"),
        ({"seller": ""}, "validator_hotkey"),
    ],
)
def test_receipt_usage_refuses_what_would_corrupt_a_share(
    changes: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"uuids": ["g0", "g1"], "caps": [1.0, 1.0], **changes}
    with pytest.raises(ValueError, match=message):
        usage("m", "l", 1.0, 2, ago(2), NOW, **args)  # type: ignore[arg-type]


def test_result_is_plain_data() -> None:
    result = score(usage("m", "l", 1.0, 1, ago(2), NOW))
    assert result.miners["m"].to_dict() == {
        "revenue": pytest.approx(2.0),
        "gpu_hours": pytest.approx(2.0),
        "leases": 1,
        "share": pytest.approx(1.0),
        "by_seller": {"v": pytest.approx(1.0)},
    }
    assert result.sellers["v"].to_dict() == {
        "share": 1.0,
        "billed": pytest.approx(2.0),
        "earned": pytest.approx(2.0),
    }


# --------------------------------------------------------------------------- docs/scoring.md


def test_the_worked_example_of_the_lease_rules() -> None:
    """docs/scoring.md, section 3, "Worked example": if this changes, the document must too."""
    share = {"A": 0.6, "B": 0.3, "C": 0.1}  # stakes 600, 300, 100
    h100, h200 = 5.0, 7.0  # the default caps: twice the default prices

    def sold(seller: str, miner: str, lease: str, price: float, gpus: list[str], caps: list[float],
             start: float, end: float) -> ReceiptUsage:  # fmt: skip
        return usage(miner, lease, price, len(gpus), ago(start), ago(end), seller=seller,
                     share=share[seller], uuids=gpus, caps=caps)  # fmt: skip

    mallory = [f"m{i}" for i in range(8)]
    receipts = [
        sold("A", "alice", "A-1", 2.5, ["a0"], [h100], 30, 20),
        sold("A", "bob", "A-2", 3.5, ["b0"], [h200], 20, 0),
        sold("B", "bob", "B-1", 3.0, ["b0"], [h200], 8, 3),  # b0 sold twice: A has more stake
        sold("B", "alice", "B-2", 20.0, ["a1"], [h100], 12, 2),  # above the H100 cap
        # C colludes with mallory: a week of hourly receipts at the protocol maximum, for 8
        # GPUs of which this validator verified one (m0, an H100) and never saw the others
        *(sold("C", "mallory", "C-1", 1e9, mallory, [h100] + [2.0] * 7, h + 1, h)
          for h in range(7 * 24)),
    ]  # fmt: skip
    verified = {(m, g): (hour(ago(40)),) for m, g in
                [("alice", "a0"), ("alice", "a1"), ("bob", "b0"), ("mallory", "m0")]}  # fmt: skip
    result = lease_scores(receipts, P, NOW, verified_hours=verified)

    pools = {k: (s.billed, s.earned) for k, s in result.sellers.items()}
    assert list(pools) == ["A", "B", "C"]
    assert pools["A"] == pytest.approx((95.0, 95.0))
    assert pools["B"] == pytest.approx((65.0, 50.0))
    assert pools["C"] == pytest.approx((840.0, 840.0))
    alice, bob, mal = (result.miners[m] for m in ("alice", "bob", "mallory"))
    assert (alice.revenue, bob.revenue, mal.revenue) == pytest.approx((75.0, 70.0, 840.0))
    assert alice.by_seller == pytest.approx({"A": 0.6 * 25 / 95, "B": 0.3 * 50 / 65})
    assert bob.by_seller == pytest.approx({"A": 0.6 * 70 / 95})
    assert alice.share == pytest.approx(0.388664, abs=1e-6)
    assert bob.share == pytest.approx(0.442105, abs=1e-6)
    assert mal.share == pytest.approx(0.1)
    assert alice.share + bob.share + mal.share == pytest.approx(0.930769, abs=1e-6)
    assert bob.gpu_hours == pytest.approx(20.0)  # B's 5 hours on b0 count once, for A
