"""The validator's store on real SQLite and real PostgreSQL: every test runs on both engines.

The availability tests feed the same polls to the store and to the pure scorer
(:func:`byteleap.scoring.count_availability`) and demand identical counts, including a Hypothesis
property over arbitrary poll sequences.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from byteleap.chain import Endpoint, NeuronView
from byteleap.challenge.params import CPU_DEFAULT
from byteleap.config.leasing import DEFAULT_MAX_PRICES
from byteleap.errors import Outcome, StorageError
from byteleap.leases.receipts import Receipt, canonical_bytes
from byteleap.scoring import (
    AvailabilityObservation,
    ScoringParams,
    bucket_index,
    bucket_start,
    compute_weights,
    count_availability,
)
from byteleap.scoring.leases import ReceiptUsage
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    SqlStore,
    WeightSubmission,
    WorkerRow,
    WorkerSnapshot,
    create_engine,
    open_store,
    upgrade_engine,
)
from neurons.validator.store.records import ScoringInputs
from neurons.validator.store.schema import Lease, LeaseReceipt, Renter
from tests.support.store import (
    ENGINES,
    create_scratch_database,
    drop_scratch_database,
    postgres_url,
)

T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
BUCKET = 300
H100 = "NVIDIA H100 80GB HBM3"
HOTKEY_A = "5A-miner"
HOTKEY_B = "5B-miner"
HOTKEY_C = "5C-miner"


def neuron(uid: int, hotkey: str, *, stake: float = 1.0, port: int | None = None) -> NeuronView:
    axon = Endpoint("10.0.0.1", port) if port else None
    return NeuronView(uid, hotkey, f"cold-{hotkey}", stake, False, axon)


def pubkey(n: int) -> str:
    return f"{n:064x}"


def gpus(*uuids: str) -> tuple[GpuSnapshot, ...]:
    return tuple(GpuSnapshot(uuid, H100, 81559) for uuid in uuids)


def worker(n: int, *uuids: str, healthy: bool = True, state: str = "idle") -> WorkerSnapshot:
    return WorkerSnapshot(pubkey(n), state, gpus(*uuids), healthy)  # type: ignore[arg-type]


def challenge(cid: str, hotkey: str, n: int, uuids: tuple[str, ...], at: datetime) -> ChallengeOpen:
    return ChallengeOpen(
        challenge_id=cid,
        miner_hotkey=hotkey,
        worker_pubkey=pubkey(n),
        gpu_uuids=uuids,
        gpu_models=dict.fromkeys(uuids, H100),
        params=CPU_DEFAULT,
        seed=bytes(range(32)),
        dispatched_at=at,
        deadline_at=at + timedelta(seconds=30),
    )


def verdict(
    cid: str, uuid: str, at: datetime, outcome: Outcome, throughput: float | None = None
) -> ChallengeVerdict:
    return ChallengeVerdict(
        cid, uuid, at, outcome, failure=None, throughput_flops=throughput, elapsed_s=1.0
    )


async def by_worker(store: SqlStore, now: datetime) -> dict[tuple[str, str], WorkerRow]:
    return {(w.miner_hotkey, w.worker_pubkey): w for w in await store.workers(now)}


async def counts_at(
    store: SqlStore, now: datetime, params: ScoringParams
) -> list[tuple[str, str, int, int, int]]:
    """The store's counts with every healthy GPU-bucket, counted or not (these tests have no
    verified challenges: the verification rule has tests of its own below)."""
    inputs = await store.scoring_inputs(now, params)
    return [
        (
            c.miner_hotkey, c.worker_id, c.gpus, c.online_buckets,
            c.gpu_buckets + c.unverified_gpu_buckets,
        )
        for c in inputs.availability_counts
    ]  # fmt: skip


def scorer_counts(
    polls: list[AvailabilityObservation], now: datetime, params: ScoringParams
) -> list[tuple[str, str, int, int, int]]:
    return [
        (c.miner_hotkey, c.worker_id, c.gpus, c.online_buckets, c.gpu_buckets)
        for c in count_availability(polls, params, now)
    ]


# --------------------------------------------------------------------------- metagraph


async def test_sync_miners_upserts_and_deregisters_missing_hotkeys(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, HOTKEY_A), neuron(2, HOTKEY_B, port=8091)])
    later = T0 + timedelta(minutes=20)
    await store.sync_miners(later, [neuron(1, HOTKEY_A, stake=5.5, port=9000), neuron(3, HOTKEY_C)])

    registered = await store.miners()
    assert [(m.uid, m.hotkey) for m in registered] == [(1, HOTKEY_A), (3, HOTKEY_C)]
    a = registered[0]
    assert (a.stake, a.endpoint, a.coldkey) == (5.5, "http://10.0.0.1:9000", f"cold-{HOTKEY_A}")
    assert a.last_synced == later and a.last_synced.tzinfo is UTC
    assert a.last_poll_ok is None and a.last_poll_error is None

    everyone = {m.hotkey: m for m in await store.miners(registered_only=False)}
    assert set(everyone) == {HOTKEY_A, HOTKEY_B, HOTKEY_C}
    b = everyone[HOTKEY_B]
    assert not b.registered
    assert (b.endpoint, b.last_synced) == ("http://10.0.0.1:8091", T0)


async def test_a_uid_taken_over_by_a_new_hotkey_is_a_new_miner(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(7, HOTKEY_A)])
    await store.record_inventory(T0, HOTKEY_A, [worker(1, "GPU-1")], bucket_seconds=BUCKET)
    await store.open_challenge(challenge("c-a", HOTKEY_A, 1, ("GPU-1",), T0))
    await store.close_challenge(verdict("c-a", "GPU-1", T0, Outcome.VERIFIED, 1e12))

    later = T0 + timedelta(hours=1)
    await store.sync_miners(later, [neuron(7, HOTKEY_B)])
    assert [(m.uid, m.hotkey) for m in await store.miners()] == [(7, HOTKEY_B)]
    old = {m.hotkey: m for m in await store.miners(registered_only=False)}[HOTKEY_A]
    assert (old.uid, old.registered) == (7, False)
    assert await store.workers(later) == []
    inputs = await store.scoring_inputs(later, ScoringParams())
    assert inputs.miners == (HOTKEY_B,)
    assert dict(inputs.uids) == {HOTKEY_B: 7}
    assert inputs.challenges == () and inputs.gpu_claims == ()

    # the old hotkey's history stayed with it: registering again brings it back
    await store.sync_miners(later, [neuron(7, HOTKEY_B), neuron(8, HOTKEY_A)])
    assert [w.worker_pubkey for w in await store.workers(later)] == [pubkey(1)]
    inputs = await store.scoring_inputs(later, ScoringParams())
    assert [c.gpu_uuid for c in inputs.challenges] == ["GPU-1"]


async def test_datetimes_are_aware_utc_whatever_zone_goes_in(store: SqlStore) -> None:
    tokyo = T0.astimezone(timezone(timedelta(hours=9)))
    await store.sync_miners(tokyo, [neuron(1, HOTKEY_A)])
    [miner] = await store.miners()
    assert miner.last_synced == T0
    assert miner.last_synced.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        await store.sync_miners(T0.replace(tzinfo=None), [neuron(1, HOTKEY_A)])


# --------------------------------------------------------------------------- inventory


async def test_first_seen_gpu_claims_survive_later_claimants(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, HOTKEY_A), neuron(2, HOTKEY_B)])
    t1, t2, t3, t4 = (T0 + timedelta(minutes=m) for m in (10, 20, 30, 40))
    await store.record_inventory(T0, HOTKEY_A, [worker(1, "GPU-X", "GPU-A")], bucket_seconds=BUCKET)
    await store.record_inventory(t1, HOTKEY_B, [worker(2, "GPU-X", "GPU-B")], bucket_seconds=BUCKET)
    # the owner moves the GPU from its first worker to its third (a re-keyed worker): still its
    await store.record_inventory(
        t2, HOTKEY_A, [worker(1, "GPU-A"), worker(3, "GPU-X")], bucket_seconds=BUCKET
    )
    await store.record_inventory(t3, HOTKEY_B, [worker(2, "GPU-X", "GPU-B")], bucket_seconds=BUCKET)

    rows = await by_worker(store, t3)
    assert rows[(HOTKEY_B, pubkey(2))].conflicted_gpus == {"GPU-X"}
    assert rows[(HOTKEY_A, pubkey(3))].conflicted_gpus == frozenset()  # moved, not lost
    assert rows[(HOTKEY_A, pubkey(1))].conflicted_gpus == frozenset()
    assert [g.uuid for g in rows[(HOTKEY_A, pubkey(1))].gpus] == ["GPU-A"]

    inputs = await store.scoring_inputs(t3, ScoringParams())
    claims = {(c.gpu_uuid, c.miner_hotkey, c.worker_id): (c.first_seen, c.last_seen)
              for c in inputs.gpu_claims}  # fmt: skip
    assert claims == {
        ("GPU-X", HOTKEY_A, pubkey(1)): (T0, T0),
        ("GPU-A", HOTKEY_A, pubkey(1)): (T0, t2),
        ("GPU-X", HOTKEY_B, pubkey(2)): (t1, t3),
        ("GPU-B", HOTKEY_B, pubkey(2)): (t1, t3),
        ("GPU-X", HOTKEY_A, pubkey(3)): (t2, t2),
    }
    # the same UUID on two of the owner's workers in one poll: one card, one copy counts
    await store.record_inventory(
        t4, HOTKEY_A, [worker(1, "GPU-A", "GPU-X"), worker(3, "GPU-X")], bucket_seconds=BUCKET
    )
    rows = await by_worker(store, t4)
    assert rows[(HOTKEY_A, pubkey(1))].conflicted_gpus == frozenset()
    assert rows[(HOTKEY_A, pubkey(3))].conflicted_gpus == {"GPU-X"}
    assert rows[(HOTKEY_B, pubkey(2))].conflicted_gpus == {"GPU-X"}


async def test_workers_absent_from_a_poll_go_offline(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(4, HOTKEY_A, port=8091)])
    await store.record_inventory(
        T0,
        HOTKEY_A,
        [worker(1, "GPU-1", "GPU-2"), worker(2, "GPU-3", state="busy")],
        bucket_seconds=BUCKET,
    )
    later = T0 + timedelta(minutes=1)
    await store.record_inventory(later, HOTKEY_A, [worker(1, "GPU-1")], bucket_seconds=BUCKET)

    rows = await by_worker(store, later)
    one, two = rows[(HOTKEY_A, pubkey(1))], rows[(HOTKEY_A, pubkey(2))]
    assert (one.online, one.last_seen, one.miner_uid) == (True, later, 4)
    assert one.endpoint == "http://10.0.0.1:8091"
    assert [g.uuid for g in one.gpus] == ["GPU-1"]
    assert (two.online, two.last_seen, two.state) == (False, T0, "busy")
    [miner] = await store.miners()
    assert miner.last_poll_ok == later


async def test_an_unhealthy_worker_is_offline_and_counts_no_availability(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
    await store.record_inventory(
        T0, HOTKEY_A, [worker(1, "GPU-1", "GPU-2", healthy=False)], bucket_seconds=BUCKET
    )
    [row] = await store.workers(T0)
    assert not row.online
    now = T0 + timedelta(hours=1)
    # its GPUs still count in the denominator (gpus), never in the numerator
    assert await counts_at(store, now, ScoringParams()) == [(HOTKEY_A, pubkey(1), 2, 0, 0)]


async def test_availability_is_idempotent_within_a_bucket(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a bucket boundary
    snapshot = [worker(1, "GPU-1", "GPU-2")]
    for seconds in (0, 1, 60, 299):
        await store.record_inventory(
            start + timedelta(seconds=seconds), HOTKEY_A, snapshot, bucket_seconds=BUCKET
        )
    now = start + timedelta(hours=2)
    assert await counts_at(store, now, ScoringParams()) == [(HOTKEY_A, pubkey(1), 2, 1, 2)]
    await store.record_inventory(
        start + timedelta(seconds=300), HOTKEY_A, snapshot, bucket_seconds=BUCKET
    )
    assert await counts_at(store, now, ScoringParams()) == [(HOTKEY_A, pubkey(1), 2, 2, 4)]


async def test_a_bucket_counts_its_largest_healthy_gpu_count(store: SqlStore) -> None:
    """As the scorer does: several healthy polls in a bucket count the most GPUs reported
    healthy, and an unhealthy poll raises only the worker's GPU count."""
    await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
    start = datetime(2026, 3, 2, 12, 5, tzinfo=UTC)
    for seconds, uuids, healthy in (
        (10, ["G1"], True),
        (70, ["G1", "G2", "G3"], True),
        (130, ["G1", "G2"], True),
        (190, ["G1", "G2", "G3", "G4"], False),
    ):
        await store.record_inventory(
            start + timedelta(seconds=seconds),
            HOTKEY_A,
            [worker(1, *uuids, healthy=healthy)],
            bucket_seconds=BUCKET,
        )
    now = start + timedelta(hours=1)
    assert await counts_at(store, now, ScoringParams()) == [(HOTKEY_A, pubkey(1), 4, 1, 3)]


async def test_a_failed_poll_takes_the_miners_workers_offline(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, HOTKEY_A), neuron(2, HOTKEY_B)])
    await store.record_inventory(T0, HOTKEY_A, [worker(1, "GPU-1")], bucket_seconds=BUCKET)
    await store.record_inventory(T0, HOTKEY_B, [worker(2, "GPU-2")], bucket_seconds=BUCKET)
    later = T0 + timedelta(minutes=5)
    await store.record_poll_failure(later, HOTKEY_A, "link: connection refused")

    rows = await by_worker(store, later)
    assert not rows[(HOTKEY_A, pubkey(1))].online
    assert rows[(HOTKEY_B, pubkey(2))].online
    miner = {m.hotkey: m for m in await store.miners()}[HOTKEY_A]
    assert miner.last_poll_error == "link: connection refused"
    assert miner.last_poll_ok == T0
    # the failure added no availability: only the one successful poll counts
    now = T0 + timedelta(hours=1)
    assert (HOTKEY_A, pubkey(1), 1, 1, 1) in await counts_at(store, now, ScoringParams())


async def test_polls_of_an_unknown_miner_are_refused(store: SqlStore) -> None:
    with pytest.raises(StorageError, match="sync_miners"):
        await store.record_inventory(T0, HOTKEY_A, [worker(1, "GPU-1")], bucket_seconds=BUCKET)
    with pytest.raises(StorageError, match="sync_miners"):
        await store.record_poll_failure(T0, HOTKEY_A, "timeout")


# --------------------------------------------------------------------------- availability


@pytest.mark.slow
async def test_availability_matches_the_scorer_on_a_worked_week(store: SqlStore) -> None:
    """Hourly rows, partial hours at both ends of the horizon, GPU counts that change within a
    bucket, unhealthy polls and a worker seen only before the horizon."""
    params = ScoringParams()
    now = datetime(2026, 3, 9, 12, 37, 12, tzinfo=UTC)  # not on an hour: both edges are partial
    first = now - params.availability_horizon - timedelta(minutes=10)
    await store.sync_miners(first, [neuron(1, HOTKEY_A), neuron(2, HOTKEY_B)])
    polls: list[AvailabilityObservation] = []

    async def poll(at: datetime, hotkey: str, n: int, count: int, healthy: bool = True) -> None:
        uuids = [f"GPU-{hotkey}-{n}-{i}" for i in range(count)]
        await store.record_inventory(
            at, hotkey, [worker(n, *uuids, healthy=healthy)], bucket_seconds=BUCKET
        )
        polls.append(AvailabilityObservation(hotkey, pubkey(n), count, at, healthy))

    # dense polling across both edges of the horizon, sparse in between
    dense = timedelta(minutes=4)
    stretches = [
        (first, first + timedelta(hours=2), dense),
        (first + timedelta(hours=2), now - timedelta(hours=2), timedelta(minutes=47)),
        (now - timedelta(hours=2), now + timedelta(minutes=9), dense),
    ]
    i = 0
    for begin, end, step in stretches:
        at = begin
        while at < end:
            await poll(at, HOTKEY_A, 1, 2 if i % 11 else 3, healthy=i % 17 != 5)
            if i % 3 == 0:
                await poll(at + timedelta(seconds=30), HOTKEY_B, 2, 1 + i % 4)
            at += step
            i += 1
    await poll(first - timedelta(hours=1), HOTKEY_B, 3, 4)  # before the horizon: not counted
    # A's worker is verified now and then (B's never is): its GPUs count within 24 h of each
    for i, hours_ago in enumerate((180, 100, 60, 59.5, 10)):
        at = now - timedelta(hours=hours_ago)
        await store.open_challenge(challenge(f"v{i}", HOTKEY_A, 1, ("GPU-5A-miner-1-0",), at))
        passed = verdict(f"v{i}", "GPU-5A-miner-1-0", at, Outcome.VERIFIED, 1e12)
        await store.close_challenge(passed)

    assert await counts_at(store, now, params) == scorer_counts(polls, now, params)
    inputs = await store.scoring_inputs(now, params)
    assert list(inputs.worker_verified_hours) == [(HOTKEY_A, pubkey(1))]
    split = count_availability(
        polls, params, now, verified_hours=inputs.worker_verified_hours,
        lease_intervals=inputs.lease_intervals,
    )  # fmt: skip
    assert list(inputs.availability_counts) == split
    a, b = split
    assert a.gpu_buckets > 0 and a.unverified_gpu_buckets > 0
    assert b.gpu_buckets == 0 and b.unverified_gpu_buckets > 0
    from_store = compute_weights(
        now=now, params=params, availability_counts=inputs.availability_counts,
        miners=inputs.miners,
    )  # fmt: skip
    from_polls = compute_weights(
        now=now, params=params, availability=polls, miners=inputs.miners,
        worker_verified_hours=inputs.worker_verified_hours,
    )  # fmt: skip
    assert {h: m.availability for h, m in from_store.miners.items()} == {
        h: m.availability for h, m in from_polls.miners.items()
    }
    assert 0.0 < from_store.miners[HOTKEY_A].availability < 1.0
    assert from_store.miners[HOTKEY_B].availability == 0.0


@pytest.mark.parametrize("bucket_seconds", [420, 7200, 60])
async def test_bucket_sizes_that_do_not_fill_an_hour_evenly(
    store: SqlStore, bucket_seconds: int
) -> None:
    """7-minute and 2-hour buckets fall back to one row per bucket; 1-minute ones pack 60."""
    params = ScoringParams(
        bucket_seconds=bucket_seconds, availability_horizon=timedelta(seconds=bucket_seconds * 30)
    )
    now = T0 + timedelta(days=3, seconds=123)
    await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
    polls = []
    at = now - params.availability_horizon - timedelta(seconds=bucket_seconds)
    n = 0
    while at < now:
        count = 1 + n % 3
        healthy = n % 5 != 0
        uuids = [f"GPU-{i}" for i in range(count)]
        await store.record_inventory(
            at, HOTKEY_A, [worker(1, *uuids, healthy=healthy)], bucket_seconds=bucket_seconds
        )
        polls.append(AvailabilityObservation(HOTKEY_A, pubkey(1), count, at, healthy))
        at += timedelta(seconds=bucket_seconds * 0.7)
        n += 1
    assert await counts_at(store, now, params) == scorer_counts(polls, now, params)


@pytest.mark.slow
def test_availability_property_store_equals_scorer(database_url: str) -> None:
    """Arbitrary poll sequences, in any order: the store's counts are the scorer's counts."""
    with asyncio.Runner() as runner:
        opened = runner.run(open_store(database_url, auto_upgrade=True))
        examples = iter(range(1_000_000))

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        @given(
            bucket_seconds=st.sampled_from([300, 300, 600, 420]),
            horizon_buckets=st.integers(1, 40),
            now_offset=st.integers(0, 86_399),
            # polls land in a few buckets (so many share one) spaced 1 or 5 buckets apart, which
            # spreads them over several hours and both edges of the horizon
            stride=st.sampled_from([1, 5]),
            polls=st.lists(
                st.tuples(
                    st.integers(0, 1),  # miner
                    st.integers(0, 1),  # worker
                    st.integers(-1, 12),  # buckets (times stride) before now's bucket
                    st.floats(0.0, 1.0, exclude_max=True),  # where in that bucket
                    st.integers(0, 4),  # GPUs
                    st.booleans(),  # healthy
                ),
                min_size=1,
                max_size=25,
            ),
            # more polls of the same worker in the same bucket as an earlier one
            repeats=st.lists(
                st.tuples(
                    st.integers(0, 24),  # which earlier poll (modulo their number)
                    st.floats(0.0, 1.0, exclude_max=True),
                    st.integers(0, 4),
                    st.booleans(),
                ),
                max_size=10,
            ),
        )
        # polls sharing a bucket with rising and falling GPU counts, one unhealthy
        @example(
            bucket_seconds=300,
            horizon_buckets=24,
            now_offset=1_000,
            stride=1,
            polls=[(0, 0, 2, 0.1, 1, True)],
            repeats=[(0, 0.5, 3, True), (0, 0.9, 2, True), (0, 0.7, 4, False)],
        )
        # polls across both partial edges of the horizon and in the current bucket
        @example(
            bucket_seconds=300,
            horizon_buckets=40,
            now_offset=1_000,
            stride=5,
            polls=[
                (0, 0, 7, 0.2, 2, True),
                (1, 1, 0, 0.0, 1, True),
                (0, 1, -1, 0.5, 2, True),
                (1, 0, 8, 0.9, 0, True),
            ],
            repeats=[(0, 0.9, 3, True), (3, 0.1, 2, False)],
        )
        def check(
            bucket_seconds: int,
            horizon_buckets: int,
            now_offset: int,
            stride: int,
            polls: list[tuple[int, int, int, float, int, bool]],
            repeats: list[tuple[int, float, int, bool]],
        ) -> None:
            example = next(examples)
            params = ScoringParams(
                bucket_seconds=bucket_seconds,
                availability_horizon=timedelta(seconds=bucket_seconds * horizon_buckets),
            )
            now = T0 + timedelta(seconds=now_offset)
            current = bucket_index(now, bucket_seconds)
            hotkeys = [f"5Ex{example}-{m}" for m in range(2)]
            observations = [
                AvailabilityObservation(
                    hotkeys[m],
                    pubkey(w),
                    count,
                    bucket_start(current - back * stride, bucket_seconds)
                    + timedelta(seconds=int(within * bucket_seconds)),
                    healthy,
                )
                for m, w, back, within, count, healthy in polls
            ]
            for which, within, count, healthy in repeats:
                m, w, back = polls[which % len(polls)][:3]
                observations.append(
                    AvailabilityObservation(
                        hotkeys[m],
                        pubkey(w),
                        count,
                        bucket_start(current - back * stride, bucket_seconds)
                        + timedelta(seconds=int(within * bucket_seconds)),
                        healthy,
                    )
                )

            async def run() -> list[tuple[str, str, int, int, int]]:
                await opened.sync_miners(now, [neuron(i, h) for i, h in enumerate(hotkeys)])
                for obs in observations:
                    uuids = [f"GPU-{obs.worker_id[-1]}-{i}" for i in range(obs.gpus)]
                    snapshot = WorkerSnapshot(obs.worker_id, "idle", gpus(*uuids), obs.healthy)
                    await opened.record_inventory(
                        obs.observed_at, obs.miner_hotkey, [snapshot], bucket_seconds=bucket_seconds
                    )
                return await counts_at(opened, now, params)

            assert runner.run(run()) == scorer_counts(observations, now, params)

        try:
            check()
        finally:
            runner.run(opened.close())


# --------------------------------------------------------------------------- challenges


async def test_challenge_lifecycle_open_commit_close(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
    await store.record_inventory(T0, HOTKEY_A, [worker(1, "GPU-1", "GPU-2")], bucket_seconds=BUCKET)
    opened = challenge("c-1", HOTKEY_A, 1, ("GPU-1", "GPU-2"), T0)
    await store.open_challenge(opened)

    rows = await store.challenge("c-1")
    assert [(r.gpu_uuid, r.status) for r in rows] == [
        ("GPU-1", "dispatched"),
        ("GPU-2", "dispatched"),
    ]
    assert rows[0].params == CPU_DEFAULT and rows[0].seed == bytes(range(32))
    assert rows[0].deadline_at == T0 + timedelta(seconds=30) and rows[0].roots is None
    [w] = await store.workers(T0)
    assert (w.in_flight, w.last_challenge_at) == (True, T0)

    roots = [bytes([i]) * 32 for i in range(CPU_DEFAULT.stages)]
    committed = T0 + timedelta(seconds=2)
    await store.record_commit("c-1", committed, {"GPU-1": roots, "GPU-2": roots[::-1]})
    rows = await store.challenge("c-1")
    assert [(r.status, r.committed_at) for r in rows] == [("committed", committed)] * 2
    assert rows[0].roots == tuple(roots) and rows[1].roots == tuple(roots[::-1])

    closed = T0 + timedelta(seconds=3)
    await store.close_challenge(
        ChallengeVerdict(
            "c-1", "GPU-1", closed, Outcome.VERIFIED, throughput_flops=2.5e12, elapsed_s=2.0,
            verify_s=0.03, checked_entries=256,
        )
    )  # fmt: skip
    await store.close_challenge(
        ChallengeVerdict(
            "c-1", "GPU-2", closed, Outcome.FRAUD, failure="wrong_entry", detail="stage 2 row 9"
        )
    )
    one, two = await store.challenge("c-1")
    assert (one.status, one.outcome, one.throughput_flops, one.elapsed_s, one.verify_s) == (
        "closed", Outcome.VERIFIED, 2.5e12, 2.0, 0.03,
    )  # fmt: skip
    assert (two.outcome, two.failure, two.detail) == (Outcome.FRAUD, "wrong_entry", "stage 2 row 9")
    assert two.closed_at == closed
    [w] = await store.workers(closed)
    assert not w.in_flight

    recent = await store.recent_challenges()
    assert [r.gpu_uuid for r in recent] == ["GPU-1", "GPU-2"]
    tally = await store.tally(T0 - timedelta(hours=1))
    assert [(t.miner_hotkey, t.by_outcome, t.by_failure) for t in tally] == [
        (HOTKEY_A, {"verified": 1, "fraud": 1, "timeout": 0, "excused": 0}, {"wrong_entry": 1})
    ]
    assert await store.tally(T0 + timedelta(seconds=1)) == []


async def test_a_closed_challenge_cannot_be_closed_again(store: SqlStore) -> None:
    await store.open_challenge(challenge("c-2", HOTKEY_A, 1, ("GPU-1",), T0))
    late = T0 + timedelta(minutes=1)
    await store.close_challenge(
        ChallengeVerdict("c-2", "GPU-1", late, Outcome.TIMEOUT, failure="timeout")
    )
    with pytest.raises(StorageError, match="already closed"):
        await store.close_challenge(verdict("c-2", "GPU-1", late, Outcome.VERIFIED, 1e12))
    with pytest.raises(StorageError, match="does not exist"):
        await store.close_challenge(verdict("c-2", "GPU-9", late, Outcome.EXCUSED))
    # a commit that arrives after the timeout changes nothing
    await store.record_commit("c-2", late, {"GPU-1": [b"\x01" * 32] * 4})
    [row] = await store.challenge("c-2")
    assert (row.status, row.outcome, row.roots) == ("closed", Outcome.TIMEOUT, None)
    with pytest.raises(StorageError, match="no row for GPU"):
        await store.record_commit("c-2", late, {"GPU-7": [b"\x01" * 32]})
    with pytest.raises(StorageError):  # the same challenge id and GPU twice
        await store.open_challenge(challenge("c-2", HOTKEY_A, 1, ("GPU-1",), T0))


async def test_verdicts_that_would_corrupt_a_score_are_refused(store: SqlStore) -> None:
    await store.open_challenge(challenge("c-3", HOTKEY_A, 1, ("GPU-1",), T0))
    with pytest.raises(ValueError, match="throughput"):
        await store.close_challenge(verdict("c-3", "GPU-1", T0, Outcome.VERIFIED, None))
    with pytest.raises(ValueError, match="finite"):
        await store.close_challenge(verdict("c-3", "GPU-1", T0, Outcome.VERIFIED, float("nan")))
    [row] = await store.challenge("c-3")
    assert row.status == "dispatched"


async def test_close_in_flight_excuses_dispatched_and_committed_rows(store: SqlStore) -> None:
    await store.open_challenge(challenge("c-d", HOTKEY_A, 1, ("GPU-1", "GPU-2"), T0))
    await store.open_challenge(challenge("c-c", HOTKEY_A, 2, ("GPU-3",), T0))
    await store.record_commit("c-c", T0, {"GPU-3": [b"\x02" * 32] * 4})
    await store.open_challenge(challenge("c-x", HOTKEY_A, 3, ("GPU-4",), T0))
    await store.close_challenge(verdict("c-x", "GPU-4", T0, Outcome.VERIFIED, 1e12))

    restart = T0 + timedelta(minutes=3)
    assert await store.close_in_flight(restart, "validator restarted") == 3
    for cid in ("c-d", "c-c"):
        for row in await store.challenge(cid):
            assert (row.status, row.outcome, row.closed_at) == ("closed", Outcome.EXCUSED, restart)
            assert row.detail == "validator restarted"
    [done] = await store.challenge("c-x")
    assert done.outcome is Outcome.VERIFIED
    assert await store.close_in_flight(restart, "again") == 0


async def test_scoring_inputs_hold_closed_challenges_of_the_window(store: SqlStore) -> None:
    params = ScoringParams()
    now = T0 + timedelta(days=2)
    await store.sync_miners(T0, [neuron(1, HOTKEY_A), neuron(2, HOTKEY_B)])
    inside, old = now - timedelta(hours=3), now - params.challenge_window - timedelta(minutes=1)
    await store.open_challenge(challenge("in-v", HOTKEY_A, 1, ("GPU-1",), inside))
    await store.close_challenge(verdict("in-v", "GPU-1", inside, Outcome.VERIFIED, 3e12))
    await store.open_challenge(challenge("in-t", HOTKEY_A, 1, ("GPU-1",), inside))
    await store.close_challenge(
        ChallengeVerdict("in-t", "GPU-1", inside, Outcome.TIMEOUT, throughput_flops=1e9)
    )
    await store.open_challenge(challenge("open", HOTKEY_A, 1, ("GPU-1",), inside))
    await store.open_challenge(challenge("old", HOTKEY_B, 2, ("GPU-2",), old))
    await store.close_challenge(verdict("old", "GPU-2", old, Outcome.VERIFIED, 1e12))
    await store.open_challenge(
        challenge("edge", HOTKEY_B, 2, ("GPU-2",), now - params.challenge_window)
    )
    await store.close_challenge(verdict("edge", "GPU-2", now, Outcome.FRAUD))

    inputs = await store.scoring_inputs(now, params)
    got = sorted(
        (o.miner_hotkey, o.worker_id, o.gpu_uuid, o.issued_at, o.outcome, o.throughput_flops)
        for o in inputs.challenges
    )
    assert got == sorted([
        (HOTKEY_A, pubkey(1), "GPU-1", inside, Outcome.VERIFIED, 3e12),
        (HOTKEY_A, pubkey(1), "GPU-1", inside, Outcome.TIMEOUT, None),
        (HOTKEY_B, pubkey(2), "GPU-2", now - params.challenge_window, Outcome.FRAUD, None),
    ])  # fmt: skip
    assert (inputs.now, inputs.params, inputs.miners) == (now, params, (HOTKEY_A, HOTKEY_B))
    assert dict(inputs.uids) == {HOTKEY_A: 1, HOTKEY_B: 2}


async def test_scoring_inputs_read_leases_and_receipts(store: SqlStore) -> None:
    params = ScoringParams()
    now = T0 + timedelta(days=1)
    # receipts count only when their seller is a validator of the metagraph (with a permit)
    seller = NeuronView(9, "5Val", "cold-5Val", 10.0, True)
    await store.sync_miners(T0, [neuron(1, HOTKEY_A), seller])
    leased_at = now - timedelta(hours=30)
    # this validator's inventory: GPU-1 and GPU-2 are H100s (capped at 5.0 per GPU-hour)
    await store.record_inventory(
        leased_at - timedelta(hours=3), HOTKEY_A, [worker(1, "GPU-1"), worker(2, "GPU-2")],
        bucket_seconds=BUCKET,
    )  # fmt: skip
    async with store.engine.begin() as conn:
        renter = await conn.execute(
            sa.insert(Renter).values(name="lab", key_hash="h" * 64, created_at=T0)
            .returning(Renter.id)
        )  # fmt: skip
        renter_id = renter.scalar_one()
        await conn.execute(
            sa.insert(Lease),
            [
                {
                    "id": "lease-1", "renter_id": renter_id, "miner_hotkey": HOTKEY_A,
                    "worker_pubkey": pubkey(1), "gpu_uuids": ["GPU-1"], "price_per_gpu_hour": 2.0,
                    "created_at": leased_at, "started_at": leased_at,
                    "ends_at": now + timedelta(hours=5), "ended_at": None, "status": "active",
                },
                {
                    "id": "lease-0", "renter_id": renter_id, "miner_hotkey": HOTKEY_A,
                    "worker_pubkey": pubkey(1), "gpu_uuids": ["GPU-1"], "price_per_gpu_hour": 2.0,
                    "created_at": now, "started_at": None, "ends_at": now + timedelta(hours=1),
                    "ended_at": None, "status": "pending",
                },
            ],
        )  # fmt: skip

        def row(
            lease: str,
            seq: int,
            start: datetime,
            end: datetime,
            *,
            price: float = 2.0,
            worker_n: int = 1,
            uuids: tuple[str, ...] = ("GPU-1",),
            validator: str = "5Val",
        ) -> dict[str, object]:
            signed = Receipt(
                netuid=1,
                lease_id=lease,
                seq=seq,
                kind="start" if seq == 0 else "hourly",
                validator_hotkey=validator,
                miner_hotkey=HOTKEY_A,
                worker_pubkey=pubkey(worker_n),
                gpu_uuids=list(uuids),
                gpus=len(uuids),
                price_per_gpu_hour_micros=round(price * 1_000_000),
                period_start=int(start.timestamp()),
                period_end=int(end.timestamp()),
                issued_at=int(end.timestamp()),
            )
            return {
                "lease_id": lease,
                "miner_hotkey": HOTKEY_A,
                "validator_hotkey": validator,
                "seq": seq,
                "period_start": start,
                "period_end": end,
                "gpus": len(uuids),
                "price_per_gpu_hour": price,
                "payload": canonical_bytes(signed),
                "validator_signature": b"v",
                "miner_signature": b"m",
                "received_at": now,
            }

        middle = leased_at + timedelta(hours=20)
        await conn.execute(
            sa.insert(LeaseReceipt),
            [
                row("lease-1", 0, leased_at, leased_at),
                row("lease-1", 1, leased_at, middle),
                row("lease-1", 2, middle, now),
                # sold far above any cap: GPU-2 is an H100 here, GPU-9 this validator never saw
                row("lease-2", 1, now - timedelta(hours=2), now, price=50.0, worker_n=2,
                    uuids=("GPU-2", "GPU-9")),
                row("lease-1", 0, now - timedelta(days=9), now - timedelta(days=8),
                    validator="5Other"),
            ],
        )  # fmt: skip

    inputs = await store.scoring_inputs(now, params)
    # no GPU was verified yet: the receipts carry over no challenge record, only our own lease
    assert [(i.miner_hotkey, i.worker_id, i.start, i.end) for i in inputs.lease_intervals] == [
        (HOTKEY_A, pubkey(1), leased_at, None)
    ]
    assert sorted(
        (u.lease_id, u.gpus, u.price_per_gpu_hour, u.start, u.end) for u in inputs.lease_usage
    ) == [
        ("5Val/lease-1", 1, 2.0, leased_at, leased_at),
        ("5Val/lease-1", 1, 2.0, leased_at, middle),
        ("5Val/lease-1", 1, 2.0, middle, now),
        ("5Val/lease-2", 2, 50.0, now - timedelta(hours=2), now),
    ]
    terms = {
        (u.lease_id, u.validator_hotkey, u.validator_share, u.gpu_uuids, u.gpu_price_caps)
        for u in inputs.lease_usage
        if isinstance(u, ReceiptUsage)
    }
    unknown_cap = DEFAULT_MAX_PRICES["default"]
    assert terms == {
        ("5Val/lease-1", "5Val", 1.0, ("GPU-1",), (5.0,)),
        ("5Val/lease-2", "5Val", 1.0, ("GPU-2", "GPU-9"), (5.0, unknown_cap)),
    }

    def revenue(inputs: ScoringInputs) -> tuple[float, float]:
        result = compute_weights(
            now=now, params=params, lease_usage=inputs.lease_usage, miners=inputs.miners,
            verified_hours=inputs.verified_hours,
        )  # fmt: skip
        m = result.miners[HOTKEY_A]
        return m.lease_revenue, m.lease_share

    assert revenue(inputs) == (0.0, 0.0)  # nothing verified, nothing earns

    # GPU-1 and GPU-9 pass a challenge (on workers 1 and 2) before the lease
    verified_at = leased_at - timedelta(hours=2)
    await store.open_challenge(challenge("c1", HOTKEY_A, 1, ("GPU-1",), verified_at))
    await store.close_challenge(verdict("c1", "GPU-1", verified_at, Outcome.VERIFIED, 1e12))
    await store.open_challenge(challenge("c9", HOTKEY_A, 2, ("GPU-9",), verified_at))
    await store.close_challenge(verdict("c9", "GPU-9", verified_at, Outcome.VERIFIED, 1e12))
    inputs = await store.scoring_inputs(now, params)
    # lease-1 now carries over worker 1's record; lease-2 still names an unverified GPU-2
    assert (
        sorted((i.miner_hotkey, i.worker_id, i.start, i.end) for i in inputs.lease_intervals)
        == [(HOTKEY_A, pubkey(1), leased_at, None)] * 2
    )
    # GPU-1 at 2.0 for 30 hours; GPU-9 at the unknown cap for 2 hours, GPU-2 unverified
    assert revenue(inputs) == pytest.approx((2.0 * 30 + unknown_cap * 2, 1.0))
    # a week after the verification, it no longer vouches for the receipts
    later = verified_at + params.lease_window + timedelta(hours=1)
    assert await store.receipts.lease_intervals(later) == []


# --------------------------------------------------------------------------- weights, pruning


async def test_weight_submissions_round_trip_newest_first(store: SqlStore) -> None:
    first = WeightSubmission(
        T0, "set", (1, 2), (0.25, 0.75), {"reason": None, "miners": {"a": 1}}, block=100,
        version_key=1000,
    )  # fmt: skip
    second = WeightSubmission(
        T0 + timedelta(minutes=72), "skipped", (), (), {}, reason="no weights: every score is 0"
    )
    first_id = await store.record_weights(first)
    second_id = await store.record_weights(second)
    assert second_id != first_id
    newest, oldest = await store.weight_submissions()
    assert newest.id == second_id and newest.reason == second.reason and newest.uids == ()
    assert oldest.id == first_id
    assert (oldest.uids, oldest.weights, oldest.block, oldest.version_key) == (
        (1, 2), (0.25, 0.75), 100, 1000,
    )  # fmt: skip
    assert dict(oldest.inputs) == {"reason": None, "miners": {"a": 1}}
    assert [s.id for s in await store.weight_submissions(limit=1)] == [second_id]


async def test_prune_respects_both_retentions(store: SqlStore) -> None:
    now = T0 + timedelta(days=30)
    retention, availability_retention = timedelta(days=14), timedelta(hours=169)
    await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
    ages = {"ancient": timedelta(days=20), "recent": timedelta(days=10)}
    for name, age in ages.items():
        await store.open_challenge(challenge(name, HOTKEY_A, 1, ("GPU-1",), now - age))
        await store.close_challenge(verdict(name, "GPU-1", now - age, Outcome.EXCUSED))
        await store.record_weights(WeightSubmission(now - age, "set", (1,), (1.0,)))
    await store.open_challenge(
        challenge("open-old", HOTKEY_A, 1, ("GPU-1",), now - ages["ancient"])
    )
    for hours in (400, 200, 168, 1):
        # a second worker's GPU is seen only 400 hours ago: a claim older than the retention
        listed = [worker(1, "GPU-1")] + ([worker(2, "GPU-OLD")] if hours == 400 else [])
        await store.record_inventory(
            now - timedelta(hours=hours), HOTKEY_A, listed, bucket_seconds=BUCKET
        )

    deleted = await store.prune(
        now, retention=retention, availability_retention=availability_retention
    )
    assert deleted == {
        "challenges": 1, "weight_submissions": 1, "lease_receipts": 0, "gpus": 1,
        "availability": 3,
    }  # fmt: skip
    claims = (await store.scoring_inputs(now, ScoringParams())).gpu_claims
    assert [(c.gpu_uuid, c.worker_id) for c in claims] == [("GPU-1", pubkey(1))]
    assert {r.challenge_id for r in await store.recent_challenges()} == {"recent", "open-old"}
    assert [w.submitted_at for w in await store.weight_submissions()] == [now - ages["recent"]]
    params = ScoringParams()
    assert await counts_at(store, now, params) == [(HOTKEY_A, pubkey(1), 1, 2, 2)]
    assert await store.prune(
        now, retention=retention, availability_retention=availability_retention
    ) == dict.fromkeys(deleted, 0)


async def test_ping_returns_seconds(store: SqlStore) -> None:
    latency = await store.ping()
    assert isinstance(latency, float)
    assert 0.0 <= latency < 60.0


# --------------------------------------------------------------------------- failures


async def test_a_closed_store_raises_storage_error(store: SqlStore) -> None:
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.ping()
    with pytest.raises(StorageError):
        await store.miners()


async def test_a_locked_sqlite_database_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = await open_store(
        f"sqlite+aiosqlite:///{path}", auto_upgrade=True, sqlite_busy_timeout_s=0.05
    )
    try:
        await store.sync_miners(T0, [neuron(1, HOTKEY_A)])
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StorageError, match="locked") as caught:
                await store.record_poll_failure(T0, HOTKEY_A, "boom")
            assert not isinstance(caught.value, sa.exc.SQLAlchemyError)
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        await store.record_poll_failure(T0, HOTKEY_A, "boom")  # the lock is gone: it works
        assert (await store.miners())[0].last_poll_error == "boom"
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_connection_loss_raises_storage_error(postgres_dsn: str) -> None:
    name = create_scratch_database(postgres_dsn)
    try:
        store = await open_store(postgres_url(postgres_dsn, name), auto_upgrade=True)
        try:
            assert await store.ping() >= 0.0
            # the server drops every connection: the pool notices and reconnects
            admin = await asyncpg.connect(postgres_dsn)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()",
                    name,
                )
            finally:
                await admin.close()
            assert await store.ping() >= 0.0
            # the database goes away under the store: a typed, transient error
            drop_scratch_database(postgres_dsn, name)
            with pytest.raises(StorageError) as caught:
                await store.miners()
            assert not isinstance(caught.value, sa.exc.SQLAlchemyError)
        finally:
            await store.close()
    finally:
        drop_scratch_database(postgres_dsn, name)


@pytest.mark.postgres
async def test_an_unreachable_server_raises_storage_error() -> None:
    url = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"
    with pytest.raises(StorageError):
        await open_store(url)
    store = SqlStore(create_engine(url))
    try:
        with pytest.raises(StorageError):
            await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_store_serves_a_whole_scoring_round(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The rounds' path end to end on each engine: sync, poll, challenge, score, store weights."""
    if engine == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'v.db'}", None
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        name = create_scratch_database(dsn)
        url = postgres_url(dsn, name)
    try:
        database = create_engine(url)
        await upgrade_engine(database)
        store = SqlStore(database)
        try:
            await store.sync_miners(T0, [neuron(1, HOTKEY_A), neuron(2, HOTKEY_B)])
            at = T0
            for i in range(36):
                await store.record_inventory(
                    at, HOTKEY_A, [worker(1, "GPU-1")], bucket_seconds=BUCKET
                )
                if i % 2:
                    await store.record_inventory(
                        at, HOTKEY_B, [worker(2, "GPU-2")], bucket_seconds=BUCKET
                    )
                at += timedelta(minutes=5)
            for hotkey, n, uuid, tp in ((HOTKEY_A, 1, "GPU-1", 4e12), (HOTKEY_B, 2, "GPU-2", 2e12)):
                cid = f"c-{uuid}"
                await store.open_challenge(challenge(cid, hotkey, n, (uuid,), T0))
                await store.close_challenge(verdict(cid, uuid, T0, Outcome.VERIFIED, tp))
            inputs = await store.scoring_inputs(at, ScoringParams())
            result = compute_weights(
                now=at, params=inputs.params, challenges=inputs.challenges,
                gpu_claims=inputs.gpu_claims, availability_counts=inputs.availability_counts,
                lease_intervals=inputs.lease_intervals, lease_usage=inputs.lease_usage,
                miners=inputs.miners,
            )  # fmt: skip
            assert result.weights[HOTKEY_A] > result.weights[HOTKEY_B] > 0.0
            uids = tuple(inputs.uids[h] for h in result.weights)
            sid = await store.record_weights(
                WeightSubmission(
                    at, "dry_run", uids, tuple(result.weights.values()), result.to_dict()
                )
            )
            [stored] = await store.weight_submissions()
            assert stored.id == sid and stored.inputs["weights"] == result.weights
        finally:
            await store.close()
    finally:
        if name is not None:
            drop_scratch_database(request.getfixturevalue("postgres_dsn"), name)
