"""Properties of the scorer over generated networks (SPEC 5)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.errors import Outcome
from byteleap.scoring import (
    AvailabilityCount,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    ScoringParams,
    WeightResult,
    challenge_scores,
    compute_weights,
    resolve_gpu_ownership,
)
from byteleap.scoring.leases import ReceiptUsage
from tests.support.leases import usage, verified_at

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
P = ScoringParams()
EPS = 1e-12
FAST = settings(max_examples=40, deadline=None)

MINERS = ["m0", "m1", "m2", "m3"]
#: the validators whose receipts count, by stake share
SELLERS = {"v0": 0.5, "v1": 0.3, "v2": 0.2}


@dataclasses.dataclass
class Network:
    challenges: list[ChallengeObservation]
    claims: list[GpuClaim]
    usage: list[ReceiptUsage]
    counts: list[AvailabilityCount]
    intervals: list[LeaseInterval]

    def run(self, params: ScoringParams = P) -> WeightResult:
        return compute_weights(
            now=NOW,
            params=params,
            challenges=self.challenges,
            gpu_claims=self.claims,
            lease_intervals=self.intervals,
            lease_usage=self.usage,
            verified_hours=verified_at(self.usage, NOW - timedelta(hours=1)),
            availability_counts=self.counts,
            miners=MINERS,
        )


outcomes = st.sampled_from(list(Outcome))
hours = st.floats(min_value=0.01, max_value=40.0, allow_nan=False)
throughputs = st.floats(min_value=1e12, max_value=1e15, allow_nan=False)


@st.composite
def challenge(draw: st.DrawFn) -> ChallengeObservation:
    outcome = draw(outcomes)
    return ChallengeObservation(
        draw(st.sampled_from(MINERS)),
        f"w{draw(st.integers(0, 2))}",
        f"g{draw(st.integers(0, 5))}",
        NOW - timedelta(hours=draw(hours)),
        outcome,
        draw(throughputs) if outcome is Outcome.VERIFIED else None,
    )


@st.composite
def network(draw: st.DrawFn) -> Network:
    challenges = draw(st.lists(challenge(), max_size=40))
    claims = [
        GpuClaim(
            f"g{draw(st.integers(0, 5))}",
            draw(st.sampled_from(MINERS)),
            f"w{draw(st.integers(0, 2))}",
            NOW - timedelta(days=draw(st.integers(1, 3))),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    leases = []
    for i in range(draw(st.integers(0, 4))):
        seller = draw(st.sampled_from(sorted(SELLERS)))
        leases.append(
            usage(
                draw(st.sampled_from(MINERS)),
                f"l{i}",
                draw(st.floats(min_value=0.0, max_value=10.0)),
                draw(st.integers(0, 8)),
                NOW - timedelta(hours=draw(st.floats(min_value=1.0, max_value=300.0))),
                NOW - timedelta(hours=draw(st.floats(min_value=0.0, max_value=1.0))),
                seller=seller,
                share=SELLERS[seller],
            )
        )
    counts = [
        AvailabilityCount(m, "w0", draw(st.integers(0, 8)), draw(st.integers(0, 2028)))
        for m in MINERS
        if draw(st.booleans())
    ]
    intervals = [
        LeaseInterval(
            draw(st.sampled_from(MINERS)),
            f"w{draw(st.integers(0, 2))}",
            NOW - timedelta(hours=draw(st.floats(min_value=0.5, max_value=30.0))),
            None,
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    return Network(challenges, claims, leases, counts, intervals)


def assert_not_lower(before: WeightResult, after: WeightResult, miner: str) -> None:
    b, a = before.explain(miner), after.explain(miner)
    assert a.score >= b.score - EPS
    assert a.weight >= b.weight - EPS


@FAST
@given(network())
def test_weights_sum_to_one_or_are_empty_with_a_reason(net: Network) -> None:
    result = net.run()
    assert set(result.miners) == set(MINERS)
    if result.weights:
        assert result.reason is None
        assert math.isclose(math.fsum(result.weights.values()), 1.0, abs_tol=1e-9)
        assert all(w >= 0.0 for w in result.weights.values())
    else:
        assert result.reason and result.reason.startswith("no weights")
        assert all(m.score == 0.0 for m in result.miners.values())
    for m in result.miners.values():
        assert 0.0 <= m.availability <= 1.0
        assert 0.0 <= m.score <= 1.0 + EPS


@FAST
@given(network(), st.sampled_from(MINERS), st.floats(min_value=1.0, max_value=10.0))
def test_faster_verified_challenges_never_lower_score_or_weight(
    net: Network, miner: str, factor: float
) -> None:
    before = net.run()
    faster = [
        dataclasses.replace(c, throughput_flops=c.throughput_flops * factor)
        if c.miner_hotkey == miner and c.throughput_flops is not None
        else c
        for c in net.challenges
    ]
    after = dataclasses.replace(net, challenges=faster).run()
    assert_not_lower(before, after, miner)
    assert after.explain(miner).challenge_raw >= before.explain(miner).challenge_raw


@FAST
@given(
    network(),
    st.sampled_from(MINERS),
    st.floats(min_value=0.01, max_value=50.0),
    st.integers(1, 8),
)
def test_more_revenue_never_lowers_score_or_weight(
    net: Network, miner: str, price: float, gpus: int
) -> None:
    before = net.run()
    extra = usage(
        miner, "extra", price, gpus, NOW - timedelta(hours=3), NOW, seller="v0", share=0.5
    )
    after = dataclasses.replace(net, usage=[*net.usage, extra]).run()
    assert_not_lower(before, after, miner)
    assert after.explain(miner).lease_revenue > before.explain(miner).lease_revenue


@FAST
@given(network(), st.sampled_from(MINERS), st.integers(1, 2028))
def test_more_online_buckets_never_lower_score_or_weight(
    net: Network, miner: str, more: int
) -> None:
    before = net.run()
    counts = [
        dataclasses.replace(c, online_buckets=min(2028, c.online_buckets + more))
        if c.miner_hotkey == miner
        else c
        for c in net.counts
    ]
    if not any(c.miner_hotkey == miner for c in counts):
        counts.append(AvailabilityCount(miner, "w0", 1, more))
    after = dataclasses.replace(net, counts=counts).run()
    assert_not_lower(before, after, miner)
    assert after.explain(miner).availability >= before.explain(miner).availability


@FAST
@given(network(), st.lists(st.sampled_from([Outcome.TIMEOUT, Outcome.EXCUSED, Outcome.FRAUD])))
def test_miner_without_verified_work_or_leases_gets_zero(
    net: Network, outcomes_of_newcomer: list[Outcome]
) -> None:
    newcomer = [
        ChallengeObservation("m3", "w9", f"fresh{i}", NOW - timedelta(hours=1 + i), outcome)
        for i, outcome in enumerate(outcomes_of_newcomer)
    ]
    others = [c for c in net.challenges if c.miner_hotkey != "m3"]
    usage = [u for u in net.usage if u.miner_hotkey != "m3"]
    counts = [c for c in net.counts if c.miner_hotkey != "m3"]
    counts.append(AvailabilityCount("m3", "w9", 4, 2028))
    result = Network([*others, *newcomer], net.claims, usage, counts, net.intervals).run()
    m3 = result.explain("m3")
    assert m3.challenge_raw == 0.0 and m3.lease_revenue == 0.0
    assert m3.score == 0.0 and result.weights.get("m3", 0.0) == 0.0


@FAST
@given(network(), st.sampled_from(MINERS), st.integers(0, 2), st.floats(0.01, 23.9))
def test_fraud_zeroes_the_workers_challenge_score(
    net: Network, miner: str, worker: int, hours_ago: float
) -> None:
    # on a GPU nobody else reports, so that no implicit first-seen moves
    fraud = ChallengeObservation(
        miner, f"w{worker}", "fraud-gpu", NOW - timedelta(hours=hours_ago), Outcome.FRAUD
    )
    before = net.run()
    after = dataclasses.replace(net, challenges=[*net.challenges, fraud]).run()
    m = after.explain(miner)
    assert f"w{worker}" in m.fraud_locked_workers
    for gpu in m.gpus:
        if gpu.worker_id == f"w{worker}":
            assert gpu.perf == 0.0 and gpu.fraud_locked
    # other workers are untouched
    untouched = {
        (g.worker_id, g.gpu_uuid): g.perf
        for g in before.explain(miner).gpus
        if g.worker_id != f"w{worker}"
    }
    assert untouched == {
        (g.worker_id, g.gpu_uuid): g.perf for g in m.gpus if g.worker_id != f"w{worker}"
    }
    assert m.challenge_raw <= before.explain(miner).challenge_raw + EPS


@FAST
@given(network(), st.lists(hours, min_size=1, max_size=5))
def test_our_excused_challenges_do_not_change_success_rate_or_perf(
    net: Network, excused_hours: list[float]
) -> None:
    """Challenges excused for the validator's own fault never move a score (the miner's own
    excuses draw on its budget instead: tests/unit/test_scoring_challenge.py)."""
    target = net.challenges[0] if net.challenges else None
    miner, worker, gpu = (
        (target.miner_hotkey, target.worker_id, target.gpu_uuid) if target else ("m0", "w0", "g0")
    )
    # a stored claim, so that the extra observations cannot move an implicit first-seen
    claim = GpuClaim(gpu, miner, worker, NOW - timedelta(days=30))
    net = dataclasses.replace(net, claims=[*net.claims, claim])
    excused = [
        ChallengeObservation(
            miner, worker, gpu, NOW - timedelta(hours=h), Outcome.EXCUSED, None, True
        )
        for h in excused_hours
    ]
    before = net.run()
    after = dataclasses.replace(net, challenges=[*net.challenges, *excused]).run()
    old = {(g.worker_id, g.gpu_uuid): g for g in before.explain(miner).gpus}
    for a in after.explain(miner).gpus:
        b = old.get((a.worker_id, a.gpu_uuid))
        if b is None:  # a GPU seen only through excused challenges
            assert a.success_rate is None and a.perf == 0.0
            continue
        assert a.success_rate == b.success_rate
        assert a.perf == b.perf
        assert a.verified == b.verified and a.failed == b.failed
    assert after.explain(miner).score == before.explain(miner).score


@FAST
@given(st.lists(challenge(), max_size=30), st.floats(min_value=0.5, max_value=20.0))
def test_a_lease_keeps_the_perf_from_its_start(
    history: list[ChallengeObservation], leased_hours: float
) -> None:
    start = NOW - timedelta(hours=leased_hours)
    before_lease = [c for c in history if c.issued_at < start]
    ownership = resolve_gpu_ownership([], challenges=history)
    intervals = [LeaseInterval(m, f"w{w}", start, None) for m in MINERS for w in range(3)]
    leased = challenge_scores(
        history, ownership=ownership, lease_intervals=intervals, params=P, now=NOW
    )
    at_start = challenge_scores(before_lease, ownership=ownership, params=P, now=start)
    then = {
        (g.miner_hotkey, g.worker_id, g.gpu_uuid): g for gs in at_start.gpus.values() for g in gs
    }
    for gpus in leased.gpus.values():
        for g in gpus:
            assert g.carried_over and g.window_start == start - P.challenge_window
            if g.fraud_locked:  # a fraud during the lease still locks (stricter, never kinder)
                assert g.perf == 0.0
                continue
            assert g.perf == then[(g.miner_hotkey, g.worker_id, g.gpu_uuid)].perf
