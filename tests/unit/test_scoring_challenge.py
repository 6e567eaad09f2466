"""Challenge perf, fraud lockout, lease carry-over and GPU UUID ownership (SPEC 5.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from byteleap.errors import Outcome
from byteleap.scoring import (
    ChallengeObservation,
    ChallengeWindow,
    GpuClaim,
    GpuScore,
    LeaseInterval,
    ScoringParams,
    challenge_scores,
    challenge_window,
    earliest_challenge_needed,
    gpu_perf,
    resolve_gpu_ownership,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(hours=24)
P = ScoringParams()
V, T, F, E = Outcome.VERIFIED, Outcome.TIMEOUT, Outcome.FRAUD, Outcome.EXCUSED


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def obs(
    hours_ago: float,
    outcome: Outcome = V,
    tp: float = 100.0,
    *,
    miner: str = "m",
    worker: str = "w",
    gpu: str = "g0",
) -> ChallengeObservation:
    return ChallengeObservation(
        miner, worker, gpu, ago(hours_ago), outcome, tp if outcome is V else None
    )


def score(
    observations: list[ChallengeObservation],
    *,
    leases: list[LeaseInterval] | None = None,
    claims: list[GpuClaim] | None = None,
    now: datetime = NOW,
) -> dict[tuple[str, str, str], GpuScore]:
    ownership = resolve_gpu_ownership(claims or [], challenges=observations)
    result = challenge_scores(
        observations, ownership=ownership, lease_intervals=leases or [], params=P, now=now
    )
    return {
        (g.miner_hotkey, g.worker_id, g.gpu_uuid): g for gpus in result.gpus.values() for g in gpus
    }


def one(observations: list[ChallengeObservation], **kwargs: object) -> GpuScore:
    (gpu,) = score(observations, **kwargs).values()  # type: ignore[arg-type]
    return gpu


# --------------------------------------------------------------------------- gpu_perf


def test_perf_is_median_times_success_rate() -> None:
    assert gpu_perf([10.0, 30.0, 20.0], issued=4, excused=0) == (20.0, 0.75, 15.0)
    assert gpu_perf([10.0, 20.0], issued=2, excused=0) == (15.0, 1.0, 15.0)


def test_nothing_countable_gives_zero() -> None:
    assert gpu_perf([], issued=0, excused=0) == (None, None, 0.0)
    assert gpu_perf([], issued=3, excused=3) == (None, None, 0.0)
    assert gpu_perf([], issued=3, excused=1) == (None, 0.0, 0.0)


def test_inconsistent_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        gpu_perf([1.0, 2.0], issued=2, excused=1)
    with pytest.raises(ValueError, match="inconsistent"):
        gpu_perf([], issued=1, excused=2)


# --------------------------------------------------------------------------- one GPU


def ours(hours: float) -> ChallengeObservation:
    """An excuse of the validator's own making (a restart)."""
    return ChallengeObservation("m", "w", "g0", ago(hours), E, None, True)


def test_timeouts_and_fraud_are_failures_our_excuses_are_not() -> None:
    g = one([obs(1, V, 100), obs(2, T), ours(3), ours(4)])
    assert (g.issued, g.verified, g.excused, g.timeouts, g.frauds, g.failed) == (4, 1, 2, 1, 0, 1)
    assert g.excused_ours == 2
    assert g.success_rate == 0.5
    assert g.perf == 50.0


def test_our_excuses_do_not_lower_the_success_rate() -> None:
    base = one([obs(1, V, 100), obs(2, V, 300)])
    excused = one([obs(1, V, 100), obs(2, V, 300), ours(3), ours(4), ours(5)])
    assert base.success_rate == excused.success_rate == 1.0
    assert base.perf == excused.perf == 200.0


def test_the_miners_excuses_drop_out_only_within_the_budget() -> None:
    # 20 challenges: 19 verified and one excuse by the miner: within 5 %, it drops out
    within = one([obs(h, V, 100) for h in range(1, 20)] + [obs(20, E)])
    assert within.success_rate == 1.0
    # one card behind two claims answers every other epoch and excuses the rest: 10 of 20
    # excused, 1 of them allowed (5 % of 20), 9 count as failures: 10 / 19
    half = one([obs(h, V, 100) if h % 2 else obs(h, E) for h in range(1, 21)])
    assert half.success_rate == pytest.approx(10 / 19)
    # two such claims earn 2 x 10/19 = 1.053 x one honest claim: the 1 / (1 - budget) bound
    assert 2 * half.perf / within.perf == pytest.approx(1 / (1 - 0.05))


def test_only_excused_challenges_score_zero() -> None:
    g = one([ours(1), ours(2)])
    assert g.success_rate is None and g.median_throughput_flops is None and g.perf == 0.0
    theirs = one([obs(1, E), obs(2, E)])
    assert theirs.success_rate == 0.0 and theirs.perf == 0.0


def test_throughput_of_failed_challenges_is_ignored() -> None:
    g = one([obs(1, V, 100), ChallengeObservation("m", "w", "g0", ago(2), T, 1e30)])
    assert g.median_throughput_flops == 100.0


def test_window_is_half_open_and_ends_at_now() -> None:
    g = one(
        [
            obs(24, V, 10),  # exactly now - 24 h: inside
            obs(24.001, V, 1000),  # just older: outside
            obs(0, T),  # exactly now: not yet
            obs(-1, T),  # the future: ignored
        ]
    )
    assert (g.issued, g.verified) == (1, 1)
    assert g.window_start == ago(24)
    assert g.perf == 10.0


def test_challenge_raw_sums_owned_gpus() -> None:
    observations = [obs(1, V, 100, gpu="g0"), obs(1, V, 50, gpu="g1"), obs(1, V, 7, worker="x")]
    ownership = resolve_gpu_ownership([], challenges=observations)
    result = challenge_scores(observations, ownership=ownership, params=P, now=NOW)
    assert result.raw == {"m": 150.0}  # the copy of g0 on worker x does not count
    assert [(g.worker_id, g.gpu_uuid) for g in result.gpus["m"]] == [
        ("w", "g0"),
        ("w", "g1"),
        ("x", "g0"),
    ]
    # ("x", "g0") reports the UUID "w" claimed first (implicitly, same instant): tie -> "w"
    assert result.gpus["m"][2].excluded_conflict


# --------------------------------------------------------------------------- fraud


def test_one_fraud_zeroes_every_gpu_of_the_worker_only() -> None:
    observations = [
        obs(3, V, 100, gpu="g0"),
        obs(2, V, 100, gpu="g1"),
        obs(1, F, gpu="g1"),
        obs(1, V, 100, worker="other", gpu="g2"),
    ]
    gpus = score(observations)
    assert gpus[("m", "w", "g0")].fraud_locked and gpus[("m", "w", "g0")].perf == 0.0
    assert gpus[("m", "w", "g0")].measured_perf == 100.0
    assert gpus[("m", "w", "g1")].perf == 0.0
    other = gpus[("m", "other", "g2")]
    assert not other.fraud_locked and other.perf == 100.0


def test_fraud_older_than_the_window_is_forgiven() -> None:
    g = one([obs(25, F), obs(1, V, 100)])
    assert not g.fraud_locked and g.perf == 100.0


def test_fraud_locks_even_inside_leased_time() -> None:
    # a fraud recorded while the worker was leased (it should not be challenged then) still counts
    lease = LeaseInterval("m", "w", ago(10), None)
    g = one([obs(20, V, 100), obs(5, F)], leases=[lease])
    assert g.fraud_locked and g.perf == 0.0
    assert (g.issued, g.verified) == (1, 1)  # the leased-time fraud is not a window sample


def test_fraud_locks_via_the_carried_window_too() -> None:
    lease = LeaseInterval("m", "w", ago(20), None)
    g = one([obs(30, F), obs(21, V, 100)], leases=[lease])  # window [now-44h, now-20h)
    assert g.fraud_locked and g.perf == 0.0


def test_fraud_on_an_excluded_copy_still_locks_the_worker() -> None:
    claims = [
        GpuClaim("stolen", "victim", "v", ago(1000)),
        GpuClaim("stolen", "m", "w", ago(500)),
        GpuClaim("g0", "m", "w", ago(500)),
    ]
    gpus = score([obs(2, V, 100, gpu="g0"), obs(1, F, gpu="stolen")], claims=claims)
    assert gpus[("m", "w", "g0")].perf == 0.0
    assert gpus[("m", "w", "stolen")].excluded_conflict


# --------------------------------------------------------------------------- lease carry-over


def test_leased_worker_keeps_the_perf_it_had_when_the_lease_began() -> None:
    start = ago(30)
    history = [obs(50, V, 80), obs(40, V, 100), obs(35, T), obs(31, V, 120)]
    at_start = one(history, now=start)
    leased = one(history, leases=[LeaseInterval("m", "w", start, None)])
    assert leased.carried_over and not at_start.carried_over
    assert leased.window_start == start - DAY
    assert leased.perf == at_start.perf == 100.0 * 0.75
    # without the lease the plain window would be empty
    assert one(history).perf == 0.0


def test_lease_covering_now_with_an_end_is_carried_over() -> None:
    lease = LeaseInterval("m", "w", ago(30), NOW + timedelta(hours=5))
    g = one([obs(31, V, 100)], leases=[lease])
    assert g.carried_over and g.perf == 100.0


def test_challenges_during_the_lease_are_ignored() -> None:
    lease = LeaseInterval("m", "w", ago(10), None)
    g = one([obs(12, V, 100), obs(9, E), obs(5, T), obs(1, T)], leases=[lease])
    assert (g.issued, g.timeouts) == (1, 0)
    assert g.perf == 100.0


def test_back_to_back_leases_do_not_cost_score() -> None:
    leases = [
        LeaseInterval("m", "w", ago(80), ago(40)),
        LeaseInterval("m", "w", ago(40), ago(10)),
        LeaseInterval("m", "w", ago(10), None),
    ]
    g = one([obs(81, V, 100), obs(100, V, 100), obs(105, V, 999)], leases=leases)
    assert g.window_start == ago(104)
    assert (g.issued, g.perf) == (2, 100.0)


def test_window_reaches_back_after_a_lease_ends() -> None:
    # leased from 50 h ago to 2 h ago: 2 h of fresh unleased time, then 22 h before the lease
    lease = LeaseInterval("m", "w", ago(50), ago(2))
    g = one([obs(1, V, 200), obs(60, V, 100), obs(73, V, 999)], leases=[lease])
    assert not g.carried_over
    assert g.window_start == ago(72)
    assert g.leased_seconds_skipped == 48 * 3600
    assert (g.issued, g.median_throughput_flops) == (2, 150.0)


def test_short_gap_between_leases_counts_as_unleased_time() -> None:
    leases = [LeaseInterval("m", "w", ago(30), ago(20)), LeaseInterval("m", "w", ago(18), None)]
    win = challenge_window(leases, DAY, NOW)
    assert win.carried_over
    assert win.leased == ((ago(30), ago(20)), (ago(18), NOW))
    assert win.start == ago(18 + 2 + 10 + 22)
    assert win.contains(ago(19)) and not win.contains(ago(25)) and not win.contains(ago(5))
    assert win.contains(ago(31)) and not win.contains(ago(52.5))


def test_leases_in_the_future_or_long_past_change_nothing() -> None:
    leases = [
        LeaseInterval("m", "w", NOW + timedelta(hours=1), None),
        LeaseInterval("m", "w", ago(100), ago(90)),
    ]
    win = challenge_window(leases, DAY, NOW)
    assert win == ChallengeWindow(start=ago(24), end=NOW)


def test_lease_starting_exactly_now_is_carried_over_with_the_plain_window() -> None:
    win = challenge_window([LeaseInterval("m", "w", NOW, None)], DAY, NOW)
    assert win.carried_over and win.start == ago(24) and win.leased == ()


def test_overlapping_lease_intervals_merge() -> None:
    leases = [LeaseInterval("m", "w", ago(10), ago(4)), LeaseInterval("m", "w", ago(6), ago(2))]
    win = challenge_window(leases, DAY, NOW)
    assert win.leased == ((ago(10), ago(2)),)
    assert win.start == ago(32)


def test_earliest_challenge_needed() -> None:
    leases = [LeaseInterval("m", "w", ago(100), None), LeaseInterval("n", "x", ago(3), ago(1))]
    assert earliest_challenge_needed(leases, P, NOW) == ago(124)
    assert earliest_challenge_needed([], P, NOW) == ago(24)


def test_leases_apply_per_worker() -> None:
    observations = [obs(30, V, 100, worker="a"), obs(30, V, 100, worker="b", gpu="g1")]
    gpus = score(observations, leases=[LeaseInterval("m", "a", ago(10), None)])
    assert gpus[("m", "a", "g0")].perf == 100.0
    assert gpus[("m", "b", "g1")].perf == 0.0


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        challenge_window([], DAY, datetime(2025, 1, 1))


# --------------------------------------------------------------------------- ownership


def test_first_claimant_keeps_the_uuid_and_later_ones_are_flagged() -> None:
    claims = [
        GpuClaim("G", "thief", "t", ago(10)),
        GpuClaim("G", "owner", "o", ago(100)),
        GpuClaim("G", "copycat", "c", ago(50)),
    ]
    ownership = resolve_gpu_ownership(claims)
    assert ownership.owners["G"].miner_hotkey == "owner"
    assert [(c.claimant_hotkey, c.owner_hotkey) for c in ownership.conflicts] == [
        ("copycat", "owner"),
        ("thief", "owner"),
    ]
    assert ownership.owns("owner", "o", "G") and not ownership.owns("thief", "t", "G")
    assert ownership.owns("anyone", "w", "never-claimed")


def test_reporting_someone_elses_uuid_neither_gains_nor_hurts() -> None:
    observations = [
        obs(2, V, 100, miner="owner", worker="o", gpu="G"),
        obs(1, V, 900, miner="thief", worker="t", gpu="G"),
    ]
    claims = [GpuClaim("G", "owner", "o", ago(100)), GpuClaim("G", "thief", "t", ago(5))]
    gpus = score(observations, claims=claims)
    assert gpus[("owner", "o", "G")].perf == 100.0
    assert gpus[("thief", "t", "G")].perf == 0.0
    assert gpus[("thief", "t", "G")].excluded_conflict


def test_identical_first_seen_goes_to_smaller_hotkey_then_worker() -> None:
    at = ago(10)
    claims = [
        GpuClaim("G", "b", "w1", at),
        GpuClaim("G", "a", "w2", at),
        GpuClaim("G", "a", "w1", at),
    ]
    for order in (claims, claims[::-1], [claims[1], claims[0], claims[2]]):
        ownership = resolve_gpu_ownership(order)
        owner = ownership.owners["G"]
        assert (owner.miner_hotkey, owner.worker_id) == ("a", "w1")
        assert [(c.claimant_hotkey, c.claimant_worker_id) for c in ownership.conflicts] == [
            ("a", "w2"),
            ("b", "w1"),
        ]
        assert ownership.conflicts[0].same_miner and not ownership.conflicts[1].same_miner


def test_duplicate_claims_keep_the_earliest_first_seen() -> None:
    claims = [
        GpuClaim("G", "a", "w", ago(5)),
        GpuClaim("G", "b", "w", ago(8)),
        GpuClaim("G", "a", "w", ago(10)),
    ]
    ownership = resolve_gpu_ownership(claims)
    assert ownership.owners["G"].miner_hotkey == "a"
    assert len(ownership.conflicts) == 1


def test_unclaimed_uuids_get_an_implicit_claim_from_challenges() -> None:
    observations = [
        obs(5, V, miner="late", gpu="G"),
        obs(9, V, miner="early", gpu="G"),
        obs(3, V, miner="stored", gpu="G"),
    ]
    ownership = resolve_gpu_ownership(
        [GpuClaim("G", "stored", "w", ago(1))], challenges=observations
    )
    assert ownership.owners["G"].miner_hotkey == "early"
    assert {(c.claimant_hotkey, c.implicit) for c in ownership.conflicts} == {
        ("late", True),
        ("stored", False),
    }


def test_claims_of_unlisted_miners_are_dropped() -> None:
    claims = [GpuClaim("G", "gone", "w", ago(100)), GpuClaim("G", "here", "w", ago(10))]
    assert resolve_gpu_ownership(claims).owners["G"].miner_hotkey == "gone"
    ownership = resolve_gpu_ownership(claims, miners=["here"])
    assert ownership.owners["G"].miner_hotkey == "here"
    assert ownership.conflicts == ()


def test_claimed_gpus_without_challenges_are_listed_with_zero() -> None:
    claims = [GpuClaim("G", "m", "w", ago(10))]
    gpus = score([], claims=claims)
    g = gpus[("m", "w", "G")]
    assert (g.issued, g.perf, g.success_rate) == (0, 0.0, None)
