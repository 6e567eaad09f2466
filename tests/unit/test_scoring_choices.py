"""What a miner cannot choose (SPEC 5.5), in the pure scorer: whose excuse a challenge was,
availability counting verified capacity only, GPU claims that expire and UUIDs that move
between a miner's own workers, and the explanation of each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.errors import Outcome
from byteleap.scoring import (
    OUR_FAILURES,
    AvailabilityCount,
    AvailabilityObservation,
    ChallengeObservation,
    GpuClaim,
    GpuOwnership,
    LeaseInterval,
    ScoringParams,
    availability_bucket_range,
    availability_coverage,
    availability_from_counts,
    bucket_index,
    bucket_start,
    compute_weights,
    count_availability,
    format_explanation,
    hour_index,
    hour_start,
    is_ours,
    resolve_gpu_ownership,
    verification_since,
    worker_coverage,
)

NOW = datetime(2025, 6, 1, 12, 3, tzinfo=UTC)  # 3 minutes into a bucket and an hour
P = ScoringParams()
DAY = timedelta(days=1)
FAST = settings(max_examples=60, deadline=None)


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


# --------------------------------------------------------------------------- whose excuse


def test_only_the_validators_own_failures_are_ours() -> None:
    assert {"restart", "internal", "storage", "transient"} == OUR_FAILURES
    for failure in OUR_FAILURES:
        assert is_ours(Outcome.EXCUSED, failure)
        assert not is_ours(Outcome.TIMEOUT, failure)
    for other in ("unavailable", "link", "malformed", "rate_limited", "forbidden", None):
        assert not is_ours(Outcome.EXCUSED, other)


def test_the_explanation_splits_excuses_and_shows_the_budget() -> None:
    """20 challenges: 8 verified, 2 excused by us, 10 by the miner. 5 % of the 18 that were not
    ours may be excused (0.9); the other 9.1 count as failures."""
    observations = [
        ChallengeObservation("m", "w", "g", ago(1 + i), Outcome.VERIFIED, 100e12) for i in range(8)
    ]
    observations += [
        ChallengeObservation("m", "w", "g", ago(9.5 + i), Outcome.EXCUSED, None, True)
        for i in range(2)
    ]
    observations += [
        ChallengeObservation("m", "w", "g", ago(12 + i), Outcome.EXCUSED) for i in range(10)
    ]
    result = compute_weights(now=NOW, challenges=observations)
    explanation = result.explain("m")
    [g] = explanation.gpus
    assert (g.issued, g.excused, g.excused_ours, g.excused_theirs) == (20, 12, 2, 10)
    assert g.excused_over_budget == pytest.approx(9.1)
    assert g.success_rate == pytest.approx(8 / (18 - 0.9))
    assert explanation.excuse_rate == pytest.approx(10 / 18)
    assert explanation.excused_over_budget == pytest.approx(9.1)
    data = json.loads(json.dumps(explanation.to_dict()))
    assert data["excuse_rate"] == pytest.approx(10 / 18)
    assert data["gpus"][0]["excused_theirs"] == 10
    assert data["gpus"][0]["excused_over_budget"] == pytest.approx(9.1)
    text = format_explanation(explanation)
    assert "12 excused: 2 ours + 10 miner's, 9.10 over budget" in text
    assert "excuse rate 0.5556" in text


def test_within_the_budget_nothing_is_over_it() -> None:
    observations = [
        ChallengeObservation("m", "w", "g", ago(1 + i / 2), Outcome.VERIFIED, 1e12)
        for i in range(39)
    ] + [ChallengeObservation("m", "w", "g", ago(23), Outcome.EXCUSED)]
    [g] = compute_weights(now=NOW, challenges=observations).explain("m").gpus
    assert (g.excused_theirs, g.excused_over_budget, g.success_rate) == (1, 0.0, 1.0)


# --------------------------------------------------------------------------- availability


def test_hours_and_the_verification_span() -> None:
    assert hour_index(datetime(1970, 1, 1, 1, 59, tzinfo=UTC)) == 1
    assert hour_start(hour_index(NOW)) == datetime(2025, 6, 1, 12, tzinfo=UTC)
    first, _ = availability_bucket_range(NOW, P)
    # the horizon: the 2028 buckets before now's (12:00), from 11:00 seven days earlier; a
    # verification counts for a bucket up to 24 hours after the hour it fell in
    assert bucket_start(first) == datetime(2025, 5, 25, 11, tzinfo=UTC)
    assert verification_since(NOW, P) == datetime(2025, 5, 24, 11, tzinfo=UTC)


def test_a_verified_hour_covers_itself_and_the_next_24() -> None:
    h = hour_index(ago(30))  # 06:00 the day before
    (covered,) = worker_coverage([h], [], P, NOW)
    assert bucket_start(covered[0]) == hour_start(h)
    assert bucket_start(covered[1]) == hour_start(h + 25)
    # hours 25 apart still touch; 26 apart leave the 26th uncovered
    assert len(worker_coverage([h, h + 25], [], P, NOW)) == 1
    assert len(worker_coverage([h - 26, h], [], P, NOW)) == 2
    # clipped to the horizon: nothing after now's bucket, nothing before the first
    first, stop = availability_bucket_range(NOW, P)
    assert worker_coverage([hour_index(NOW)], [], P, NOW) == ()  # covers only what follows
    assert worker_coverage([hour_index(NOW) - 1], [], P, NOW) == ((stop - 12, stop),)
    assert worker_coverage([hour_index(ago(400))], [], P, NOW) == ()
    assert worker_coverage([hour_index(bucket_start(first)) - 24], [], P, NOW)[0][0] == first


def test_a_lease_covers_every_bucket_it_overlaps() -> None:
    start, end = ago(5) + timedelta(minutes=1), ago(4) - timedelta(minutes=1)
    (covered,) = worker_coverage([], [LeaseInterval("m", "w", start, end)], P, NOW)
    assert covered == (bucket_index(start), bucket_index(end) + 1)
    (open_lease,) = worker_coverage([], [LeaseInterval("m", "w", start, None)], P, NOW)
    assert open_lease == (bucket_index(start), bucket_index(NOW))
    empty = LeaseInterval("m", "w", start, start)
    assert worker_coverage([], [empty], P, NOW) == ()
    # every worker with a verified hour or a lease, each with its own ranges
    both = availability_coverage(
        {("m", "v"): [ago(30)], ("m", "none"): []},
        [LeaseInterval("m", "w", start, end), LeaseInterval("n", "w", start, end)],
        P,
        NOW,
    )
    assert set(both) == {("m", "v"), ("m", "w"), ("n", "w")}
    assert both[("m", "w")] == both[("n", "w")] == (covered,)


def polls_every_bucket(
    worker: str, gpus: int, hours: float = 169.0
) -> list[AvailabilityObservation]:
    first, stop = availability_bucket_range(NOW, P)
    begin = max(first, stop - int(hours * 12))
    return [
        AvailabilityObservation("m", worker, gpus, bucket_start(b) + timedelta(seconds=30), True)
        for b in range(begin, stop)
    ]


def test_the_phantom_worker_worked_example() -> None:
    """docs/scoring.md, "Only verified capacity counts": an honest 8-GPU worker online half the
    week, verified whenever online, and a 64-GPU worker that reports healthy and busy all week
    and is never challenged."""
    real = [p for p in polls_every_bucket("real", 8) if bucket_index(p.observed_at) % 2 == 0]
    phantom = polls_every_bucket("phantom", 64)
    first, stop = availability_bucket_range(NOW, P)
    verified = {
        ("m", "real"): [hour_start(h) for h in range(hour_index(ago(200)), hour_index(NOW))]
    }

    before = count_availability(real + phantom, P, NOW)
    a_before = availability_from_counts(before, P)["m"]
    assert a_before.availability == pytest.approx((8 * 1014 + 64 * 2028) / (72 * 2028))
    assert round(a_before.availability, 4) == 0.9444

    after = count_availability(real + phantom, P, NOW, verified_hours=verified)
    a_after = availability_from_counts(after, P)["m"]
    assert [c.unverified_gpu_buckets for c in after] == [64 * 2028, 0]
    assert a_after.availability == pytest.approx(8 * 1014 / (72 * 2028))
    assert round(a_after.availability, 4) == 0.0556
    assert a_after.unverified_gpu_buckets == 64 * 2028
    # without the phantom the miner has its honest 0.5
    alone = count_availability(real, P, NOW, verified_hours=verified)
    assert availability_from_counts(alone, P)["m"].availability == pytest.approx(0.5)
    assert stop - first == 2028


def test_no_verification_information_is_the_old_count_and_none_verified_counts_nothing() -> None:
    polls = polls_every_bucket("w", 2, hours=10)
    old = count_availability(polls, P, NOW)
    assert [(c.gpu_buckets, c.unverified_gpu_buckets) for c in old] == [(240, 0)]
    nothing = count_availability(polls, P, NOW, verified_hours={})
    assert [(c.gpu_buckets, c.unverified_gpu_buckets) for c in nothing] == [(0, 240)]
    # a lease counts without a verification; here the last 2 hours are leased
    lease = LeaseInterval("m", "w", ago(2) - timedelta(minutes=3), None)
    leased = count_availability(polls, P, NOW, verified_hours={}, lease_intervals=[lease])
    assert [(c.gpu_buckets, c.unverified_gpu_buckets) for c in leased] == [(48, 192)]


def test_compute_weights_applies_the_rule_to_raw_polls() -> None:
    polls = polls_every_bucket("a", 1) + [
        AvailabilityObservation("m", "b", 1, p.observed_at, True)
        for p in polls_every_bucket("a", 1)
    ]
    # verified at 06:xx the day before: worker a counts from 06:00 then to 06:55 today
    verified = {("m", "a"): [ago(30)]}
    result = compute_weights(
        now=NOW, availability=polls, worker_verified_hours=verified, miners=["m"]
    )
    detail = result.explain("m").availability_detail
    assert detail is not None
    assert detail.online_gpu_buckets == 25 * 12
    assert detail.unverified_gpu_buckets == 2 * 2028 - detail.online_gpu_buckets
    assert "not counted: no verified challenge within 24 h" in format_explanation(
        result.explain("m")
    )
    assert compute_weights(now=NOW, availability=polls, miners=["m"]).explain(
        "m"
    ).availability == pytest.approx(1.0)


def test_counts_refuse_more_than_the_worker_reported() -> None:
    with pytest.raises(ValueError, match="exceeds gpus"):
        AvailabilityCount("m", "w", 2, 10, online_gpu_buckets=15, unverified_gpu_buckets=6)
    with pytest.raises(ValueError, match="explicit online_gpu_buckets"):
        AvailabilityCount("m", "w", 2, 10, unverified_gpu_buckets=1)
    with pytest.raises(ValueError, match="unverified_gpu_buckets"):
        AvailabilityCount("m", "w", 2, 10, online_gpu_buckets=1, unverified_gpu_buckets=-1)
    assert AvailabilityCount("m", "w", 2, 10, 15, 5).gpu_buckets == 15


availability_polls = st.lists(
    st.tuples(
        st.sampled_from(["w0", "w1"]),
        st.integers(0, 2100),  # buckets before now's
        st.integers(0, 4),
        st.booleans(),
    ),
    max_size=40,
)
hour_lists = st.lists(st.integers(0, 200), max_size=6)  # hours before now's
lease_lists = st.lists(
    st.tuples(st.sampled_from(["w0", "w1"]), st.integers(0, 200 * 60), st.integers(0, 3000)),
    max_size=2,
)


def _polls(raw: list[tuple[str, int, int, bool]]) -> list[AvailabilityObservation]:
    now_bucket = bucket_index(NOW)
    return [
        AvailabilityObservation("m", w, g, bucket_start(now_bucket - back), healthy)
        for w, back, g, healthy in raw
    ]


def _verified(hours: dict[str, list[int]]) -> dict[tuple[str, str], list[datetime]]:
    return {("m", w): [hour_start(hour_index(NOW) - h) for h in hs] for w, hs in hours.items()}


def _leases(raw: list[tuple[str, int, int]]) -> list[LeaseInterval]:
    return [
        LeaseInterval("m", w, NOW - timedelta(minutes=back), NOW - timedelta(minutes=back - length))
        for w, back, length in raw
        if back - length >= 0
    ]


@FAST
@given(availability_polls, hour_lists, hour_lists, lease_lists, st.sampled_from(["w0", "w1"]))
def test_a_verification_or_lease_never_lowers_availability(
    raw: list[tuple[str, int, int, bool]],
    hours0: list[int],
    hours1: list[int],
    leases: list[tuple[str, int, int]],
    extra_worker: str,
) -> None:
    polls = _polls(raw)
    verified = _verified({"w0": hours0, "w1": hours1})
    base = count_availability(
        polls, P, NOW, verified_hours=verified, lease_intervals=_leases(leases)
    )
    plain = {c.worker_id: c for c in count_availability(polls, P, NOW)}
    for c in base:  # the rule only moves GPU-buckets out of the numerator, never adds any
        assert c.gpu_buckets + c.unverified_gpu_buckets == plain[c.worker_id].gpu_buckets
        assert (c.gpus, c.online_buckets) == (
            plain[c.worker_id].gpus,
            plain[c.worker_id].online_buckets,
        )
    a_base = availability_from_counts(base, P).get("m")
    more_hours = dict(verified)
    more_hours[("m", extra_worker)] = [*verified[("m", extra_worker)], ago(50)]
    more_leases = [*_leases(leases), LeaseInterval("m", extra_worker, ago(100), ago(90))]
    for kwargs in (
        {"verified_hours": more_hours, "lease_intervals": _leases(leases)},
        {"verified_hours": verified, "lease_intervals": more_leases},
    ):
        more = count_availability(polls, P, NOW, **kwargs)  # type: ignore[arg-type]
        for before, after in zip(base, more, strict=True):
            assert after.gpu_buckets >= before.gpu_buckets
        a_more = availability_from_counts(more, P).get("m")
        if a_base is not None and a_more is not None:
            assert a_more.availability >= a_base.availability


# --------------------------------------------------------------------------- claims


def claim(uuid: str, miner: str, worker: str, first: float, last: float | None = None) -> GpuClaim:
    """A claim first seen ``first`` days ago and last seen ``last`` days ago."""
    return GpuClaim(
        uuid, miner, worker, NOW - first * DAY, None if last is None else NOW - last * DAY
    )


def resolve(claims: list[GpuClaim]) -> GpuOwnership:
    return resolve_gpu_ownership(claims, now=NOW, claim_expiry=P.claim_expiry)


def test_the_squatter_worked_example() -> None:
    """docs/scoring.md: the squatter reported GPU-S from day 0 to day 3, the holder from day 2
    on. Until day 10 the squatter owns it; from day 10 the holder does."""
    for day, owner in ((9, "squatter"), (9.99, "squatter"), (10, "holder"), (12, "holder")):
        now = NOW - 20 * DAY + day * DAY
        claims = [
            GpuClaim("GPU-S", "squatter", "s", NOW - 20 * DAY, NOW - 17 * DAY),
            GpuClaim("GPU-S", "holder", "h", NOW - 18 * DAY, now),
        ]
        ownership = resolve_gpu_ownership(claims, now=now, claim_expiry=P.claim_expiry)
        assert ownership.owners["GPU-S"].miner_hotkey == owner, day
        expected = [("holder", "squatter")] if owner == "squatter" else []
        assert [(c.claimant_hotkey, c.owner_hotkey) for c in ownership.conflicts] == expected


def test_an_expired_claim_blocks_nobody_and_a_live_one_does() -> None:
    claims = [claim("G", "old", "o", 30, 7), claim("G", "new", "n", 5, 0)]
    assert resolve(claims).owners["G"].miner_hotkey == "new"
    assert resolve(claims).conflicts == ()
    claims = [claim("G", "old", "o", 30, 6.9), claim("G", "new", "n", 5, 0)]
    ownership = resolve(claims)
    assert ownership.owners["G"].miner_hotkey == "old"
    assert [c.claimant_hotkey for c in ownership.conflicts] == ["new"]
    # without a clock nothing expires (and claims without last_seen never do)
    assert resolve_gpu_ownership(claims).owners["G"].miner_hotkey == "old"
    assert (
        resolve([claim("G", "old", "o", 30), claim("G", "new", "n", 5, 0)]).owners["G"].miner_hotkey
        == "old"
    )


def test_a_rekeyed_worker_keeps_its_gpu() -> None:
    """docs/scoring.md: worker k1 reported GPU-K for 10 days, then the miner re-keyed it as k2.
    Ten days on, k1's claim is long unseen, and the copy on k2 still owns the UUID against a
    claimant that reported it since day 3."""
    claims = [
        claim("GPU-K", "m", "k1", 30, 20),
        claim("GPU-K", "m", "k2", 20, 0),
        claim("GPU-K", "other", "x", 27, 0),
    ]
    ownership = resolve(claims)
    owner = ownership.owners["GPU-K"]
    assert (owner.miner_hotkey, owner.worker_id) == ("m", "k2")
    [conflict] = ownership.conflicts
    assert (conflict.claimant_hotkey, conflict.owner_worker_id) == ("other", "k2")
    assert conflict.owner_first_seen == NOW - 30 * DAY  # the claim's start moved with the card
    assert ownership.owns("m", "k2", "GPU-K") and not ownership.owns("m", "k1", "GPU-K")
    # a gap of a week between the old key and the new breaks the chain: the other miner wins
    gap = [claim("GPU-K", "m", "k1", 30, 20), claim("GPU-K", "m", "k2", 13, 0), claims[2]]
    assert resolve(gap).owners["GPU-K"].miner_hotkey == "other"


def test_one_card_on_two_workers_of_one_miner_counts_once() -> None:
    claims = [claim("G", "m", "w1", 10, 0), claim("G", "m", "w2", 5, 0)]
    ownership = resolve(claims)
    assert ownership.owners["G"].worker_id == "w1"
    [conflict] = ownership.conflicts
    assert conflict.same_miner and conflict.claimant_worker_id == "w2"


def test_compute_weights_lets_claims_expire_after_the_configured_time() -> None:
    claims = [claim("G", "old", "o", 30, 3), claim("G", "new", "n", 5, 0)]
    observations = [
        ChallengeObservation("new", "n", "G", ago(1), Outcome.VERIFIED, 1e12),
        ChallengeObservation("old", "o", "G", ago(80), Outcome.VERIFIED, 1e12),
    ]
    week = compute_weights(now=NOW, challenges=observations, gpu_claims=claims)
    assert week.explain("new").challenge_raw == 0.0  # blocked: old's claim is 3 days unseen
    short = ScoringParams(claim_expiry=timedelta(days=2))
    two_days = compute_weights(now=NOW, params=short, challenges=observations, gpu_claims=claims)
    assert two_days.explain("new").challenge_raw == 1e12
    assert two_days.conflicts == ()


claim_lists = st.lists(
    st.builds(
        lambda uuid, miner, worker, first, span: GpuClaim(
            uuid, miner, worker, NOW - first * DAY, NOW - max(first - span, 0.0) * DAY
        ),
        st.sampled_from(["G0", "G1"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["w0", "w1", "w2"]),
        st.floats(0.0, 30.0),
        st.floats(0.0, 30.0),
    ),
    max_size=10,
)


@FAST
@given(claim_lists)
def test_each_uuid_counts_once_and_never_for_an_expired_miner(claims: list[GpuClaim]) -> None:
    ownership = resolve(claims)
    triples = {(c.miner_hotkey, c.worker_id, c.gpu_uuid) for c in claims}
    for uuid in {c.gpu_uuid for c in claims}:
        counting = [t for t in triples if t[2] == uuid and ownership.owns(*t)]
        # claim_lists always sets last_seen (``or NOW``: a claim without one never expires)
        latest = {
            m: max(c.last_seen or NOW for c in claims if c.gpu_uuid == uuid and c.miner_hotkey == m)
            for m in {c.miner_hotkey for c in claims if c.gpu_uuid == uuid}
        }
        live = [m for m, seen in latest.items() if NOW - seen < P.claim_expiry]
        if live:
            assert len(counting) == 1
            assert counting[0][0] in live
        else:
            assert uuid not in ownership.owners
    for conflict in ownership.conflicts:
        assert not ownership.owns(
            conflict.claimant_hotkey, conflict.claimant_worker_id, conflict.gpu_uuid
        )


@FAST
@given(claim_lists, st.sampled_from(["a", "b", "c"]), st.floats(0.0, 5.0))
def test_moving_a_uuid_to_another_own_worker_keeps_it(
    claims: list[GpuClaim], miner: str, days_ago: float
) -> None:
    """If a miner owns a UUID, handing it to a new worker key (the old key stops reporting it
    as the new one starts) leaves the UUID with that miner."""
    before = resolve(claims)
    for uuid, owner in before.owners.items():
        if owner.miner_hotkey != miner or owner.last_seen is None:
            continue
        moved_at = max(owner.last_seen, NOW - days_ago * DAY)
        rekeyed = [
            *claims,
            GpuClaim(uuid, miner, "rekeyed", owner.last_seen, moved_at),
        ]
        after = resolve(rekeyed)
        assert after.owners[uuid].miner_hotkey == miner
