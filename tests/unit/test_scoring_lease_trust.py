"""What a colluding validator can do to lease shares and weights (SPEC 5.5, docs/scoring.md
"Trust model"): at most its stake share, whatever receipts it signs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.errors import Outcome
from byteleap.scoring import (
    AvailabilityCount,
    ChallengeObservation,
    GpuClaim,
    ScoringParams,
    WeightResult,
    compute_weights,
)
from byteleap.scoring.leases import LeaseScores, ReceiptUsage, lease_scores
from tests.support.leases import usage

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
P = ScoringParams()
EPS = 1e-9
H200_PRICE, H200_CAP = 3.5, 7.0
MAX_PRICE = 1e9
Hours = dict[tuple[str, str], tuple[datetime, ...]]


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


# --------------------------------------------------------------------------- the bound

VALIDATORS = ["v0", "v1", "v2", "v3"]
MINERS = ["m0", "m1", "m2", "m3"]
UUIDS = ["g0", "g1", "g2", "g3"]
CAPS = {"g0": 1.0, "g1": 5.0, "g2": 50.0, "g3": 1e9}  # the cap of each GPU's model


@st.composite
def stakes(draw: st.DrawFn) -> dict[str, float]:
    raw = [draw(st.floats(min_value=0.0, max_value=1000.0)) for _ in VALIDATORS]
    total = math.fsum(raw)
    if total == 0.0:
        raw, total = [1.0] * len(VALIDATORS), float(len(VALIDATORS))
    return {v: x / total for v, x in zip(VALIDATORS, raw, strict=True)}


@st.composite
def receipt(draw: st.DrawFn, shares: dict[str, float], seller: str | None = None) -> ReceiptUsage:
    v = seller or draw(st.sampled_from(VALIDATORS))
    uuids = draw(st.lists(st.sampled_from(UUIDS), min_size=1, max_size=3, unique=True))
    start = ago(draw(st.floats(min_value=0.0, max_value=7 * 24 + 20)))
    length = timedelta(hours=draw(st.floats(min_value=0.0, max_value=30.0)))
    return usage(
        draw(st.sampled_from(MINERS)),
        draw(st.sampled_from(["L0", "L1", "L2"])),
        draw(st.sampled_from([0.0, 0.5, 2.0, 40.0, MAX_PRICE])),
        len(uuids),
        start,
        start + length,
        seller=v,
        share=shares[v],
        uuids=uuids,
        caps=[CAPS[u] for u in uuids],
    )


@st.composite
def world(draw: st.DrawFn) -> tuple[dict[str, float], list[ReceiptUsage], Hours, str]:
    shares = draw(stakes())
    others = draw(st.lists(receipt(shares), max_size=12))
    verified: Hours = {
        (m, g): (ago(draw(st.floats(min_value=0.5, max_value=9 * 24))),)
        for m in MINERS
        for g in UUIDS
        if draw(st.booleans())
    }
    colluder = draw(st.sampled_from(VALIDATORS))
    return shares, others, verified, colluder


def lease_shares(usages: list[ReceiptUsage], verified: Hours) -> dict[str, float]:
    result: LeaseScores = lease_scores(usages, P, NOW, verified_hours=verified)
    return {m: (result.miners[m].share if m in result.miners else 0.0) for m in MINERS}


@settings(max_examples=300, deadline=None)
@given(data=st.data(), setup=world())
def test_a_validator_moves_any_lease_share_by_at_most_its_stake_share(
    data: st.DataObject, setup: tuple[dict[str, float], list[ReceiptUsage], Hours, str]
) -> None:
    shares, y, verified, c = setup
    s = shares[c]
    x = data.draw(st.lists(receipt(shares, seller=c), min_size=1, max_size=8))
    before = lease_shares(y, verified)
    after = lease_shares(y + x, verified)
    billed = {u.miner_hotkey for u in x}
    for m in MINERS:
        # no miner gains more than s from anything c signs
        assert after[m] - before[m] <= s + EPS
        # a miner c did not bill moves by at most s either way
        if m not in billed:
            assert abs(after[m] - before[m]) <= s + EPS
    assert math.fsum(after.values()) <= 1.0 + EPS
    # what c hands out in all is at most its share
    result = lease_scores(y + x, P, NOW, verified_hours=verified)
    assert math.fsum(r.by_seller.get(c, 0.0) for r in result.miners.values()) <= s + EPS


@settings(max_examples=200, deadline=None)
@given(data=st.data(), setup=world())
def test_replacing_a_validators_receipts_moves_unbilled_miners_by_at_most_its_share(
    data: st.DataObject, setup: tuple[dict[str, float], list[ReceiptUsage], Hours, str]
) -> None:
    shares, y, verified, c = setup
    s = shares[c]
    base = [u for u in y if u.validator_hotkey != c]
    first = data.draw(st.lists(receipt(shares, seller=c), max_size=6))
    second = data.draw(st.lists(receipt(shares, seller=c), max_size=6))
    one, two = lease_shares(base + first, verified), lease_shares(base + second, verified)
    billed = {u.miner_hotkey for u in first + second}
    for m in MINERS:
        if m not in billed:
            assert abs(one[m] - two[m]) <= s + EPS


# --------------------------------------------------------------------------- the attack


HONEST, COLLUDER = "honest-validator", "colluder-validator"
STAKES = {HONEST: 99.0, COLLUDER: 1.0}
SHARE = {v: stake / sum(STAKES.values()) for v, stake in STAKES.items()}


def honest_network() -> dict[str, Any]:
    """Miner "real" has 8 H200s that every validator verifies; miner "fake" has one worker that
    reports 8 GPUs, never verified (it answers no challenge)."""
    challenges = [
        ChallengeObservation("real", "w1", f"H200-{i}", ago(h), Outcome.VERIFIED, 4e14)
        for i in range(8)
        for h in (2, 8, 14, 20)
    ]
    claims = [GpuClaim(f"H200-{i}", "real", "w1", ago(24 * 30)) for i in range(8)]
    claims += [GpuClaim(f"FAKE-{i}", "fake", "w1", ago(24 * 30)) for i in range(8)]
    counts = [
        AvailabilityCount("real", "w1", gpus=8, online_buckets=2028),
        AvailabilityCount("fake", "w1", gpus=8, online_buckets=2028),
    ]
    verified = {("real", f"H200-{i}"): tuple(ago(h) for h in (20, 14, 8, 2)) for i in range(8)}
    return {"challenges": challenges, "gpu_claims": claims, "availability_counts": counts,
            "verified_hours": verified}  # fmt: skip


def minted(gpus: list[str], *, miner: str = "fake", caps: float = H200_CAP) -> list[ReceiptUsage]:
    """A week of hourly receipts at the protocol's maximum price, sold by the colluder."""
    return [
        usage(miner, "mint", MAX_PRICE, len(gpus), ago(h + 1), ago(h), seller=COLLUDER,
              share=SHARE[COLLUDER], uuids=gpus, caps=[caps] * len(gpus))
        for h in range(7 * 24)
    ]  # fmt: skip


def run(network: dict[str, Any], lease_usage: list[ReceiptUsage]) -> WeightResult:
    return compute_weights(now=NOW, params=P, lease_usage=lease_usage, **network)


def test_receipts_for_gpus_nobody_verified_earn_nothing() -> None:
    """The attack as it was: a 1 %-stake permit holder mints a week of max-price receipts for
    8 GPUs of its miner that no validator ever verified. Counted as before (no caps, no check,
    no stake weighting) this gave the colluder's miner the whole lease pool, weight 0.70 against
    0.30 for the miner with 8 real H200s. Now it earns nothing."""
    network = honest_network()
    attack = run(network, minted([f"FAKE-{i}" for i in range(8)]))
    fake, real = attack.explain("fake"), attack.explain("real")
    assert (fake.lease_revenue, fake.lease_share, fake.weight) == (0.0, 0.0, 0.0)
    assert real.weight == pytest.approx(1.0)
    assert attack.lease_sellers == {}


def test_minting_for_verified_gpus_gains_at_most_the_stake_share() -> None:
    """The best the colluder can do: its miner really has one verified GPU, and the colluder
    mints max-price receipts for it (capped at its model's cap) and for 7 made-up ones."""
    network = honest_network()
    challenges = list(network["challenges"])
    challenges.append(ChallengeObservation("fake", "w1", "FAKE-0", ago(3), Outcome.VERIFIED, 4e14))
    verified = dict(network["verified_hours"])
    verified[("fake", "FAKE-0")] = (ago(3),)
    network = {**network, "challenges": challenges, "verified_hours": verified}

    without = run(network, [])
    attack = run(network, minted([f"FAKE-{i}" for i in range(8)]))
    fake = attack.explain("fake")
    s = SHARE[COLLUDER]
    assert fake.lease_share == pytest.approx(s)  # the colluder's whole pool, and not more
    assert fake.lease_revenue == pytest.approx(H200_CAP * 7 * 24)  # one GPU, at the cap
    gain = fake.weight - without.explain("fake").weight
    # the score rises by at most lease_weight * s; the weight by that over the sum of scores
    assert fake.score - without.explain("fake").score <= P.lease_weight * s + EPS
    total = sum(m.score for m in attack.miners.values())
    assert gain <= P.lease_weight * s / total + EPS
    assert gain < 0.03  # 0.7 % of the score; 2.3 % of the weight on an idle lease market

    # an honest lease of the real miner's GPUs by the 99 % validator keeps its place
    honest = [
        usage("real", "rent", H200_PRICE, 8, ago(48), NOW, seller=HONEST, share=SHARE[HONEST],
              uuids=[f"H200-{i}" for i in range(8)], caps=[H200_CAP] * 8)
    ]  # fmt: skip
    both = run(network, honest + minted([f"FAKE-{i}" for i in range(8)]))
    assert both.explain("real").lease_share == pytest.approx(SHARE[HONEST])
    assert both.explain("fake").lease_share == pytest.approx(s)
    # every miner fully available and the whole pool sold (0.99 + 0.01): scores add up to 1
    expected = P.lease_weight * s + P.challenge_weight * without.explain("fake").challenge_share
    assert both.explain("fake").weight == pytest.approx(expected)


def test_double_selling_an_honestly_leased_gpu_only_costs_the_miner() -> None:
    """A colluder with more stake than the honest seller re-sells the GPU-hours the honest
    validator sold: they are counted once, for the larger stake, and the honest pool keeps its
    denominator, so the colluding miner cannot earn them twice."""
    shares = {"colluder": 0.6, "honest": 0.4}
    gpus = ["g0", "g1"]
    verified = {("m", g): (ago(1),) for g in gpus}
    honest = usage("m", "rent", 2.0, 2, ago(10), NOW, seller="honest", share=shares["honest"],
                   uuids=gpus, caps=[7.0, 7.0])  # fmt: skip
    resold = usage("m", "mint", 1e9, 2, ago(10), NOW, seller="colluder", share=shares["colluder"],
                   uuids=gpus, caps=[7.0, 7.0])  # fmt: skip
    alone = lease_scores([honest], P, NOW, verified_hours=verified).miners["m"]
    both = lease_scores([honest, resold], P, NOW, verified_hours=verified).miners["m"]
    assert alone.share == pytest.approx(0.4)
    assert both.share == pytest.approx(0.6)  # gained 0.2 <= 0.6: the colluder's whole pool
    assert both.gpu_hours == pytest.approx(alone.gpu_hours)  # each GPU-hour once
