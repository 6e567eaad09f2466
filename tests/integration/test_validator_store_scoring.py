"""What a miner cannot choose (SPEC 5.5), as the store reads it: on real SQLite and PostgreSQL.

- whose excuse a challenge was (``ours``), from the stored failure code;
- the verified hours per GPU and per worker, and availability counting verified (or leased)
  buckets only, equal to the pure scorer's count over arbitrary polls, challenges and leases;
- GPU claims that lapse after ``claim_expiry`` unseen, and UUIDs moved between a miner's workers.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from byteleap.chain import NeuronView
from byteleap.challenge.params import CPU_DEFAULT
from byteleap.errors import Outcome
from byteleap.scoring import (
    OUR_FAILURES,
    AvailabilityObservation,
    ScoringParams,
    compute_weights,
    count_availability,
)
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    SqlStore,
    WorkerSnapshot,
    open_store,
)
from neurons.validator.store.schema import Lease, Renter

T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
BUCKET = 300
H100 = "NVIDIA H100 80GB HBM3"
A, B, C = "5A-miner", "5B-miner", "5C-miner"
P = ScoringParams()


def neuron(uid: int, hotkey: str) -> NeuronView:
    return NeuronView(uid, hotkey, f"cold-{hotkey}", 1.0, False, None)


def pubkey(n: int) -> str:
    return f"{n:064x}"


def worker(n: int, *uuids: str, healthy: bool = True, state: str = "idle") -> WorkerSnapshot:
    gpus = tuple(GpuSnapshot(uuid, H100, 81559) for uuid in uuids)
    return WorkerSnapshot(pubkey(n), state, gpus, healthy)  # type: ignore[arg-type]


_ids = itertools.count()


async def challenged(
    store: SqlStore,
    hotkey: str,
    n: int,
    uuid: str,
    at: datetime,
    outcome: Outcome = Outcome.VERIFIED,
    failure: str | None = None,
) -> str:
    """One closed challenge of one GPU, dispatched at ``at``."""
    cid = f"c{next(_ids)}"
    await store.open_challenge(
        ChallengeOpen(
            cid, hotkey, pubkey(n), (uuid,), {uuid: H100}, CPU_DEFAULT, bytes(32), at,
            at + timedelta(seconds=30),
        )
    )  # fmt: skip
    throughput = 1e12 if outcome is Outcome.VERIFIED else None
    await store.close_challenge(
        ChallengeVerdict(cid, uuid, at, outcome, failure=failure, throughput_flops=throughput)
    )
    return cid


async def own_lease(
    store: SqlStore, hotkey: str, n: int, start: datetime, end: datetime | None
) -> None:
    """A lease this validator sold, started at ``start`` (still running when ``end`` is None)."""
    lease_id = f"lease-{next(_ids)}"
    async with store.engine.begin() as conn:
        renter = (
            await conn.execute(sa.select(Renter.id).where(Renter.name == "lab"))
        ).scalar_one_or_none()
        if renter is None:
            renter = (
                await conn.execute(
                    sa.insert(Renter)
                    .values(name="lab", key_hash="h" * 64, created_at=start)
                    .returning(Renter.id)
                )
            ).scalar_one()
        await conn.execute(
            sa.insert(Lease).values(
                id=lease_id, renter_id=renter, miner_hotkey=hotkey, worker_pubkey=pubkey(n),
                gpu_uuids=[], price_per_gpu_hour=1.0, created_at=start, started_at=start,
                ends_at=(end or start) + timedelta(days=30), ended_at=end,
                status="active" if end is None else "ended",
            )
        )  # fmt: skip


# --------------------------------------------------------------------------- whose excuse


async def test_ours_comes_from_the_failure_code(store: SqlStore) -> None:
    """Only the validator's own failures are ``ours``; every other excuse is the miner's."""
    now = T0 + timedelta(days=1)
    await store.sync_miners(T0, [neuron(1, A)])
    at = now - timedelta(hours=2)
    theirs = ["unavailable", "link", "malformed", "rate_limited", "forbidden", None]
    failures = [*sorted(OUR_FAILURES - {"restart"}), *theirs]
    expected = {}
    for i, failure in enumerate(failures):
        uuid = f"GPU-{i}"
        await challenged(store, A, 1, uuid, at, Outcome.EXCUSED, failure)
        expected[uuid] = failure in OUR_FAILURES
    # a timeout never is (whatever its code), and a restart closes what was in flight
    await challenged(store, A, 1, "GPU-t", at, Outcome.TIMEOUT, "internal")
    expected["GPU-t"] = False
    await store.open_challenge(
        ChallengeOpen(
            "in-flight", A, pubkey(1), ("GPU-r",), {"GPU-r": H100}, CPU_DEFAULT, bytes(32), at,
            at + timedelta(seconds=30),
        )
    )  # fmt: skip
    assert await store.close_in_flight(at + timedelta(minutes=1), "validator restarted") == 1
    expected["GPU-r"] = True

    inputs = await store.scoring_inputs(now, P)
    assert {o.gpu_uuid: o.ours for o in inputs.challenges} == expected
    assert {"restart", "internal", "storage", "transient"} == OUR_FAILURES


async def test_the_miners_excuses_draw_on_its_budget(store: SqlStore) -> None:
    """Ten excuses of the validator's own cannot lower a success rate; ten of the miner's do."""
    now = T0 + timedelta(days=1)
    await store.sync_miners(T0, [neuron(1, A), neuron(2, B)])
    for i in range(10):
        at = now - timedelta(hours=20 - i)
        await challenged(store, A, 1, "GPU-A", at)
        await challenged(
            store, A, 1, "GPU-A", at + timedelta(minutes=5), Outcome.EXCUSED, "restart"
        )
        await challenged(store, B, 2, "GPU-B", at)
        await challenged(store, B, 2, "GPU-B", at + timedelta(minutes=5), Outcome.EXCUSED, "link")
    inputs = await store.scoring_inputs(now, P)
    result = compute_weights(
        now=now, params=P, challenges=inputs.challenges, gpu_claims=inputs.gpu_claims,
        miners=inputs.miners,
    )  # fmt: skip
    [a] = result.explain(A).gpus
    [b] = result.explain(B).gpus
    assert (a.excused_ours, a.excused_theirs, a.success_rate) == (10, 0, 1.0)
    assert result.explain(A).excuse_rate == 0.0
    # 20 issued, 5 % of them may be excused: 1; the other 9 count as failures
    assert (b.excused_ours, b.excused_theirs, b.excused_over_budget) == (0, 10, 9.0)
    assert b.success_rate == 10 / 19
    assert result.explain(B).excuse_rate == 0.5


# --------------------------------------------------------------------------- verified hours


async def test_verified_hours_per_gpu_and_per_worker(store: SqlStore) -> None:
    now = datetime(2026, 3, 9, 12, 37, 12, tzinfo=UTC)
    await store.sync_miners(T0, [neuron(1, A), neuron(2, B)])
    hours_ago = [1.5, 1.2, 30.0, 150.0, 192.0]  # two in one hour; some read in SQL, some not
    for h in hours_ago:
        await challenged(store, A, 1, "GPU-1", now - timedelta(hours=h))
    await challenged(store, A, 2, "GPU-2", now - timedelta(hours=100))
    await challenged(store, A, 2, "GPU-2", now - timedelta(hours=99), Outcome.TIMEOUT)
    await challenged(store, A, 2, "GPU-2", now - timedelta(hours=98), Outcome.EXCUSED, "link")
    await challenged(store, A, 2, "GPU-2", now - timedelta(hours=300))  # before the span
    await challenged(store, B, 3, "GPU-3", now - timedelta(hours=5))
    await store.sync_miners(T0, [neuron(1, A)])  # B leaves the metagraph

    inputs = await store.scoring_inputs(now, P)

    def truncated(h: float) -> datetime:
        at = now - timedelta(hours=h)
        return at.replace(minute=0, second=0, microsecond=0)

    gpu1 = tuple(sorted({truncated(h) for h in hours_ago}))
    assert len(gpu1) == 4
    assert dict(inputs.verified_hours) == {(A, "GPU-1"): gpu1, (A, "GPU-2"): (truncated(100),)}
    assert dict(inputs.worker_verified_hours) == {
        (A, pubkey(1)): gpu1,
        (A, pubkey(2)): (truncated(100),),
    }
    assert all(at.tzinfo is UTC for hours in inputs.verified_hours.values() for at in hours)


async def test_a_phantom_worker_kept_busy_adds_nothing(store: SqlStore) -> None:
    """The padding attack: a 64-GPU worker reporting healthy and busy all week is never
    challenged, so never verified; only the verified worker's GPU-buckets count. (Hourly
    buckets keep the test short; the rule does not depend on the bucket size.)"""
    params = ScoringParams(bucket_seconds=3600)
    now = T0 + timedelta(days=8)
    await store.sync_miners(T0, [neuron(1, A)])
    at = now - params.availability_horizon - timedelta(hours=1)
    while at < now:
        real_worker = worker(1, "GPU-real")
        phantom_worker = worker(2, *(f"GPU-ph-{i}" for i in range(64)), state="busy")
        await store.record_inventory(at, A, [real_worker, phantom_worker], bucket_seconds=3600)
        at += timedelta(hours=1)
    at = now - params.availability_horizon - timedelta(hours=24)
    while at < now:  # the real worker passes a challenge twice a day
        await challenged(store, A, 1, "GPU-real", at)
        at += timedelta(hours=12)

    inputs = await store.scoring_inputs(now, params)
    counts = {c.worker_id: c for c in inputs.availability_counts}
    real, phantom = counts[pubkey(1)], counts[pubkey(2)]
    assert (real.gpus, real.online_buckets, real.gpu_buckets) == (1, 169, 169)
    assert real.unverified_gpu_buckets == 0
    assert (phantom.gpus, phantom.online_buckets, phantom.gpu_buckets) == (64, 169, 0)
    assert phantom.unverified_gpu_buckets == 64 * 169
    result = compute_weights(
        now=now, params=params, availability_counts=inputs.availability_counts,
        miners=inputs.miners,
    )  # fmt: skip
    explanation = result.explain(A)
    assert explanation.availability == 1 / 65  # was 1.0 before the rule
    assert explanation.availability_detail is not None
    assert explanation.availability_detail.unverified_gpu_buckets == 64 * 169


async def test_a_leased_worker_counts_without_challenges(store: SqlStore) -> None:
    """A worker under a known lease is not challenged, and its buckets count anyway; the
    buckets of a lease that starts or ends mid-hour are cut bucket by bucket."""
    params = ScoringParams(bucket_seconds=900, availability_horizon=timedelta(hours=48))
    now = datetime(2026, 3, 9, 12, 37, 12, tzinfo=UTC)
    await store.sync_miners(T0, [neuron(1, A)])
    at = now - params.availability_horizon - timedelta(minutes=20)
    polls = []
    while at < now:
        await store.record_inventory(at, A, [worker(1, "G1", "G2")], bucket_seconds=900)
        polls.append(AvailabilityObservation(A, pubkey(1), 2, at, True))
        at += timedelta(minutes=15)
    leases = [
        (now - timedelta(hours=40, minutes=17), now - timedelta(hours=20, minutes=2)),
        (now - timedelta(hours=7, minutes=3), None),
    ]
    for start, end in leases:
        await own_lease(store, A, 1, start, end)

    inputs = await store.scoring_inputs(now, params)
    assert inputs.worker_verified_hours == {}
    [count] = inputs.availability_counts
    assert count.gpu_buckets + count.unverified_gpu_buckets == 2 * params.availability_buckets
    assert [count] == count_availability(
        polls, params, now, verified_hours={}, lease_intervals=inputs.lease_intervals
    )
    # every bucket that overlaps a lease counts, with both GPUs: the first lease (20:20:12 to
    # 16:35:12 the next day) overlaps the buckets from 20:15 to 16:30, 82 of them; the second
    # (since 05:34:12) those from 05:30 to 12:15, 28 (12:30 is now's bucket, not yet counted)
    assert count.gpu_buckets == 2 * (82 + 28)


@pytest.mark.slow
def test_availability_property_store_equals_scorer_with_verification(database_url: str) -> None:
    """Arbitrary polls, verified challenges and leases: the store counts exactly the GPU-buckets
    the pure scorer counts, and leaves out exactly the ones it leaves out."""
    with asyncio.Runner() as runner:
        opened = runner.run(open_store(database_url, auto_upgrade=True))
        examples = iter(range(1_000_000))
        minutes = st.integers(0, 193 * 60)

        @settings(
            max_examples=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(
            now_offset=st.integers(0, 86_399),
            # (worker, minutes before now, GPUs, healthy), spread over the horizon and its edges
            polls=st.lists(
                st.tuples(st.integers(0, 1), minutes, st.integers(0, 3), st.booleans()),
                min_size=1,
                max_size=30,
            ),
            # (worker, minutes before now, outcome verified?)
            verifications=st.lists(
                st.tuples(st.integers(0, 1), minutes, st.booleans()), max_size=8
            ),
            # (worker, start minutes before now, length in minutes or None: still running)
            leases=st.lists(
                st.tuples(st.integers(0, 1), minutes, st.none() | st.integers(0, 80 * 60)),
                max_size=2,
            ),
        )
        @example(
            now_offset=1_000,
            polls=[(0, m, 2, True) for m in range(0, 193 * 60, 47)],
            verifications=[(0, 30 * 60, True), (0, 100 * 60 + 7, True), (1, 60, False)],
            leases=[(0, 170 * 60 + 2, 61), (1, 12 * 60 + 31, None)],
        )
        def check(
            now_offset: int,
            polls: list[tuple[int, int, int, bool]],
            verifications: list[tuple[int, int, bool]],
            leases: list[tuple[int, int, int | None]],
        ) -> None:
            n = next(examples)
            now = T0 + timedelta(days=9, seconds=now_offset)
            hotkey = f"5Ev{n}"
            base = 10 * n  # worker keys of this example

            async def run() -> None:
                await opened.sync_miners(now, [neuron(n, hotkey)])
                observations = []
                for w, ago, count, healthy in polls:
                    at = now - timedelta(minutes=ago, seconds=13)
                    uuids = [f"G-{n}-{w}-{i}" for i in range(count)]
                    await opened.record_inventory(
                        at, hotkey, [worker(base + w, *uuids, healthy=healthy)],
                        bucket_seconds=BUCKET,
                    )  # fmt: skip
                    observations.append(
                        AvailabilityObservation(hotkey, pubkey(base + w), count, at, healthy)
                    )
                expected_hours: dict[tuple[str, str], set[datetime]] = {}
                for w, ago, passed in verifications:
                    at = now - timedelta(minutes=ago, seconds=7)
                    outcome = Outcome.VERIFIED if passed else Outcome.TIMEOUT
                    await challenged(opened, hotkey, base + w, f"G-{n}-{w}-0", at, outcome)
                    if passed:
                        hour = at.replace(minute=0, second=0, microsecond=0)
                        expected_hours.setdefault((hotkey, pubkey(base + w)), set()).add(hour)
                for w, ago, length in leases:
                    start = now - timedelta(minutes=ago, seconds=11)
                    end = None if length is None else start + timedelta(minutes=length)
                    await own_lease(opened, hotkey, base + w, start, end)

                inputs = await opened.scoring_inputs(now, P)
                assert {
                    key: set(hours) for key, hours in inputs.worker_verified_hours.items()
                } == expected_hours
                mine = [i for i in inputs.lease_intervals if i.miner_hotkey == hotkey]
                expected = count_availability(
                    observations, P, now, verified_hours=inputs.worker_verified_hours,
                    lease_intervals=mine,
                )  # fmt: skip
                got = [c for c in inputs.availability_counts if c.miner_hotkey == hotkey]
                assert got == expected

            runner.run(run())

        try:
            check()
        finally:
            runner.run(opened.close())


# --------------------------------------------------------------------------- claim expiry


async def test_a_squatters_claim_expires(store: SqlStore) -> None:
    """A miner claims a UUID first and stops reporting it; the later claimant is blocked for a
    week, then the UUID is its own, and the squatter cannot come back and take it again."""
    await store.sync_miners(T0, [neuron(1, A), neuron(2, B)])
    await store.record_inventory(T0, A, [worker(1, "GPU-S")], bucket_seconds=BUCKET)
    day = timedelta(days=1)
    await store.record_inventory(T0 + day, A, [worker(1)], bucket_seconds=BUCKET)  # drops it
    await store.record_inventory(T0 + 2 * day, B, [worker(2, "GPU-S")], bucket_seconds=BUCKET)

    async def conflicted(at: datetime) -> dict[str, frozenset[str]]:
        await store.record_inventory(at, B, [worker(2, "GPU-S")], bucket_seconds=BUCKET)
        return {w.miner_hotkey: w.conflicted_gpus for w in await store.workers(at)}

    assert (await conflicted(T0 + 6 * day))[B] == {"GPU-S"}  # A's claim is 6 days unseen
    assert (await conflicted(T0 + 7 * day))[B] == frozenset()  # 7 days: it has expired
    inputs = await store.scoring_inputs(T0 + 7 * day, P)
    result = compute_weights(
        now=T0 + 7 * day, params=P, gpu_claims=inputs.gpu_claims, miners=inputs.miners
    )
    assert result.conflicts == ()
    # A reports it again: its claim starts afresh, after B's, so B keeps the UUID
    back = T0 + 8 * day
    await store.record_inventory(back, A, [worker(1, "GPU-S")], bucket_seconds=BUCKET)
    rows = {w.miner_hotkey: w.conflicted_gpus for w in await store.workers(back)}
    assert rows == {A: {"GPU-S"}, B: frozenset()}
    claims = {c.miner_hotkey: c for c in (await store.scoring_inputs(back, P)).gpu_claims}
    assert (claims[A].first_seen, claims[A].last_seen) == (back, back)
    assert claims[B].first_seen == T0 + 2 * day


async def test_a_rekeyed_worker_keeps_its_gpus(store: SqlStore) -> None:
    """A miner moves its GPUs to a new worker key; weeks later the old key's claim has lapsed,
    and still nobody who claimed the UUIDs in between takes them."""
    await store.sync_miners(T0, [neuron(1, A), neuron(2, B)])
    day = timedelta(days=1)
    await store.record_inventory(T0, A, [worker(1, "GPU-K")], bucket_seconds=BUCKET)
    await store.record_inventory(T0 + day, B, [worker(2, "GPU-K")], bucket_seconds=BUCKET)
    await store.record_inventory(T0 + 3 * day, A, [worker(1, "GPU-K")], bucket_seconds=BUCKET)
    # re-keyed: the same card now behind worker 9
    for d in range(4, 21):
        at = T0 + d * day
        await store.record_inventory(at, A, [worker(9, "GPU-K")], bucket_seconds=BUCKET)
        await store.record_inventory(at, B, [worker(2, "GPU-K")], bucket_seconds=BUCKET)
    now = T0 + 20 * day
    rows = {(w.miner_hotkey, w.worker_pubkey): w for w in await store.workers(now)}
    assert rows[(A, pubkey(9))].conflicted_gpus == frozenset()
    assert rows[(B, pubkey(2))].conflicted_gpus == {"GPU-K"}
    inputs = await store.scoring_inputs(now, P)
    result = compute_weights(now=now, params=P, gpu_claims=inputs.gpu_claims, miners=inputs.miners)
    [conflict] = result.conflicts
    assert (conflict.owner_hotkey, conflict.owner_worker_id) == (A, pubkey(9))
    assert conflict.owner_first_seen == T0  # the claim's start moved with the card
    assert conflict.claimant_hotkey == B
