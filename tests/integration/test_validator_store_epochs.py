"""The store's epoch operations on real SQLite and real PostgreSQL (every test on both engines):
bulk open and close of challenge rows, the verified throughputs that calibrate deadlines, each
GPU's compute capability, and migration 0003 that added it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from byteleap.chain import NeuronView
from byteleap.challenge.params import CPU_DEFAULT
from byteleap.errors import Outcome, StorageError
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeRow,
    ChallengeVerdict,
    GpuSnapshot,
    SqlStore,
    VerifiedSample,
    WorkerSnapshot,
    create_engine,
    current_revision,
    downgrade_engine,
    upgrade_engine,
)
from neurons.validator.store import challenge_rows as challenge_rows_module
from neurons.validator.store import challenges as challenges_module

T0 = datetime(2026, 7, 1, 12, 0, 0, tzinfo=UTC)
BUCKET = 300
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
MINER_A = "5A-epoch"
MINER_B = "5B-epoch"


def pubkey(n: int) -> str:
    return f"{n:064x}"


def neuron(uid: int, hotkey: str) -> NeuronView:
    return NeuronView(uid, hotkey, f"cold-{hotkey}", 1.0, False, None)


def uuids(n: int, count: int) -> tuple[str, ...]:
    return tuple(f"GPU-{n}-{g}" for g in range(count))


def opening(
    cid: str, hotkey: str, n: int, gpus: tuple[str, ...], at: datetime, *, model: str = H100
) -> ChallengeOpen:
    return ChallengeOpen(
        challenge_id=cid,
        miner_hotkey=hotkey,
        worker_pubkey=pubkey(n),
        gpu_uuids=gpus,
        gpu_models=dict.fromkeys(gpus, model),
        params=CPU_DEFAULT,
        seed=bytes([n % 256]) * 32,
        dispatched_at=at,
        deadline_at=at + timedelta(seconds=20),
    )


async def setup_workers(store: SqlStore, workers: dict[int, tuple[str, int]]) -> None:
    """``workers``: number -> (miner, GPUs), all idle and polled at T0."""
    await store.sync_miners(T0, [neuron(1, MINER_A), neuron(2, MINER_B)])
    for hotkey in (MINER_A, MINER_B):
        snapshots = [
            WorkerSnapshot(
                pubkey(n), "idle", tuple(GpuSnapshot(u, H100, 81559) for u in uuids(n, c))
            )
            for n, (owner, c) in workers.items()
            if owner == hotkey
        ]
        await store.record_inventory(T0, hotkey, snapshots, bucket_seconds=BUCKET)


def mirrored(challenges: list[ChallengeOpen], prefix: str, shift: int) -> list[ChallengeOpen]:
    """The same challenges under another id prefix, on worker ``n + shift`` (same GPU count)."""
    out = []
    for c in challenges:
        n = int(c.worker_pubkey, 16) + shift
        gpus = tuple(u.replace(f"GPU-{n - shift}-", f"GPU-{n}-") for u in c.gpu_uuids)
        out.append(
            dataclasses.replace(
                c,
                challenge_id=f"{prefix}-{c.challenge_id}",
                worker_pubkey=pubkey(n),
                gpu_uuids=gpus,
                gpu_models={g: c.gpu_models[u] for g, u in zip(gpus, c.gpu_uuids, strict=True)},
                seed=c.seed,
            )
        )
    return out


async def rows_of(store: SqlStore, challenges: list[ChallengeOpen]) -> list[ChallengeRow]:
    return [row for c in challenges for row in await store.challenge(c.challenge_id)]


def normalised(rows: list[ChallengeRow]) -> list[tuple[object, ...]]:
    """Rows with the challenge id's prefix, the worker and the GPU's worker number dropped."""
    out = []
    for r in rows:
        gpu_index = r.gpu_uuid.rsplit("-", 1)[1]
        rest = dataclasses.replace(r, challenge_id="", worker_pubkey="", gpu_uuid="")
        out.append((r.challenge_id.split("-", 1)[1], gpu_index, *dataclasses.astuple(rest)))
    return out


# ------------------------------------------------------------------------- bulk open


async def test_open_challenges_stores_what_open_challenge_stores(store: SqlStore) -> None:
    """Several workers of two miners, one worker twice (its later challenge listed first), a
    GPU listed twice, and a worker whose newest challenge is later than this batch: the rows
    and the workers' challenge times equal one ``open_challenge`` call per challenge."""
    # workers 1-4 are opened one call at a time, 11-14 in one bulk call
    await setup_workers(
        store,
        {1: (MINER_A, 8), 2: (MINER_A, 2), 3: (MINER_B, 1), 4: (MINER_B, 4)}
        | {11: (MINER_A, 8), 12: (MINER_A, 2), 13: (MINER_B, 1), 14: (MINER_B, 4)},
    )
    later = T0 + timedelta(minutes=10)
    for n in (4, 14):  # already challenged after this batch's dispatch time
        await store.open_challenge(opening(f"x{n}-early", MINER_B, n, uuids(n, 1), later))
    batch = [
        opening("w1", MINER_A, 1, uuids(1, 8), T0),
        opening("w2-late", MINER_A, 2, uuids(2, 2), T0 + timedelta(seconds=2)),
        opening("w2-early", MINER_A, 2, uuids(2, 2), T0),
        opening("w3", MINER_B, 3, ("GPU-3-0", "GPU-3-0"), T0, model=A100),
        opening("w4", MINER_B, 4, uuids(4, 4), T0 + timedelta(seconds=1)),
    ]
    single = mirrored(batch, "s", 0)
    bulk = mirrored(batch, "b", 10)
    for c in single:
        await store.open_challenge(c)
    await store.open_challenges(bulk)

    single_rows, bulk_rows = await rows_of(store, single), await rows_of(store, bulk)
    assert len(bulk_rows) == 8 + 2 + 2 + 1 + 4
    assert {r.status for r in bulk_rows} == {"dispatched"}
    assert normalised(bulk_rows) == normalised(single_rows)
    assert [r.gpu_model for r in await store.challenge("b-w3")] == [A100]

    workers = {int(w.worker_pubkey, 16): w for w in await store.workers(later)}
    for n in (1, 2, 3, 4):
        one, other = workers[n], workers[n + 10]
        assert (one.last_challenge_at, one.in_flight) == (other.last_challenge_at, other.in_flight)
    assert workers[12].last_challenge_at == T0 + timedelta(seconds=2)
    assert workers[14].last_challenge_at == later  # never moved backwards
    assert all(w.in_flight for w in workers.values())


async def test_open_challenges_is_all_or_nothing(store: SqlStore) -> None:
    await setup_workers(store, {1: (MINER_A, 2), 2: (MINER_A, 2), 3: (MINER_B, 2)})
    await store.open_challenge(opening("taken", MINER_B, 3, uuids(3, 2), T0))
    later = T0 + timedelta(minutes=1)
    batch = [
        opening("new-1", MINER_A, 1, uuids(1, 2), later),
        opening("new-2", MINER_A, 2, uuids(2, 2), later),
        opening("taken", MINER_B, 3, uuids(3, 2), later),  # its rows exist already
    ]
    with pytest.raises(StorageError):
        await store.open_challenges(batch)
    assert await store.challenge("new-1") == [] and await store.challenge("new-2") == []
    workers = {int(w.worker_pubkey, 16): w for w in await store.workers(later)}
    assert workers[1].last_challenge_at is None and not workers[1].in_flight
    assert workers[3].last_challenge_at == T0

    # the same challenge twice in one batch is refused the same way
    with pytest.raises(StorageError):
        await store.open_challenges([batch[0], batch[0]])
    assert await store.challenge("new-1") == []

    # invalid challenges are refused before anything is written
    naive = dataclasses.replace(batch[0], dispatched_at=later.replace(tzinfo=None))
    with pytest.raises(ValueError, match="naive"):
        await store.open_challenges([batch[1], naive])
    no_model = dataclasses.replace(batch[0], gpu_models={})
    with pytest.raises(ValueError, match="gpu_models"):
        await store.open_challenges([batch[1], no_model])
    no_gpu = dataclasses.replace(batch[0], gpu_uuids=())
    with pytest.raises(ValueError, match="at least one GPU"):
        await store.open_challenges([batch[1], no_gpu])
    assert await store.challenge("new-2") == []

    await store.open_challenges([])  # nothing to do
    await store.open_challenges(batch[:2])
    assert len(await store.challenge("new-1")) == len(await store.challenge("new-2")) == 2


async def test_open_challenges_in_many_chunks(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk sizes far below the batch: every row and worker still lands, once."""
    monkeypatch.setattr(challenges_module, "BULK_CHUNK_ROWS", 7)
    monkeypatch.setattr(challenge_rows_module, "BULK_COPY_ROWS", 5)
    monkeypatch.setattr(challenges_module, "BULK_CHUNK_KEYS", 3)
    workers = {n: (MINER_A if n % 2 else MINER_B, 3) for n in range(1, 21)}
    await setup_workers(store, workers)
    batch = [
        opening(f"e-{n}", owner, n, uuids(n, c), T0 + timedelta(milliseconds=n))
        for n, (owner, c) in workers.items()
    ]
    await store.open_challenges(batch)
    rows = await rows_of(store, batch)
    assert len(rows) == 60 and {r.status for r in rows} == {"dispatched"}
    assert {(int(w.worker_pubkey, 16), w.last_challenge_at) for w in await store.workers(T0)} == {
        (n, T0 + timedelta(milliseconds=n)) for n in workers
    }
    await store.close_challenges(
        [
            ChallengeVerdict(r.challenge_id, r.gpu_uuid, T0, Outcome.TIMEOUT, failure="timeout")
            for r in rows
        ]
    )
    assert {(r.status, r.outcome) for r in await rows_of(store, batch)} == {
        ("closed", Outcome.TIMEOUT)
    }


# ------------------------------------------------------------------------- bulk close


def verdicts_for(
    challenge: ChallengeOpen, at: datetime, outcomes: list[Outcome]
) -> list[ChallengeVerdict]:
    out = []
    for i, (uuid, outcome) in enumerate(zip(challenge.gpu_uuids, outcomes, strict=True)):
        verified = outcome is Outcome.VERIFIED
        out.append(
            ChallengeVerdict(
                challenge.challenge_id,
                uuid,
                at,
                outcome,
                failure=None
                if verified
                else ("wrong_entry" if outcome is Outcome.FRAUD else "timeout"),
                detail=None if verified else f"gpu {i}",
                throughput_flops=1e12 * (i + 1) if verified else None,
                elapsed_s=1.5 + i,
                verify_s=0.01 * i,
                checked_entries=256 if verified else None,
            )
        )
    return out


async def test_close_challenges_closes_like_close_challenge(store: SqlStore) -> None:
    await setup_workers(
        store, {1: (MINER_A, 4), 2: (MINER_B, 2), 11: (MINER_A, 4), 12: (MINER_B, 2)}
    )
    batch = [opening("w1", MINER_A, 1, uuids(1, 4), T0), opening("w2", MINER_B, 2, uuids(2, 2), T0)]
    single, bulk = mirrored(batch, "s", 0), mirrored(batch, "b", 10)
    await store.open_challenges(single + bulk)
    commit_at = T0 + timedelta(seconds=3)
    for c in (single[0], bulk[0]):  # worker 1's GPUs committed, worker 2's never did
        await store.record_commit(
            c.challenge_id, commit_at, {u: [b"\x07" * 32] * CPU_DEFAULT.stages for u in c.gpu_uuids}
        )
    closed = T0 + timedelta(seconds=5)
    outcomes = [[Outcome.VERIFIED, Outcome.VERIFIED, Outcome.FRAUD, Outcome.VERIFIED],
                [Outcome.TIMEOUT, Outcome.TIMEOUT]]  # fmt: skip
    for c, o in zip(single, outcomes, strict=True):
        for v in verdicts_for(c, closed, o):
            await store.close_challenge(v)
    for c, o in zip(bulk, outcomes, strict=True):  # per worker, as the challenger closes
        await store.close_challenges(verdicts_for(c, closed, o))

    bulk_rows = await rows_of(store, bulk)
    assert {r.status for r in bulk_rows} == {"closed"}
    assert normalised(bulk_rows) == normalised(await rows_of(store, single))
    assert [r.outcome for r in await store.challenge("b-w1")] == outcomes[0]
    assert not any(w.in_flight for w in await store.workers(closed))

    # repeating a call changes nothing: every row is already closed
    with pytest.raises(StorageError, match="already closed"):
        await store.close_challenges(
            verdicts_for(bulk[1], closed + timedelta(hours=1), [Outcome.VERIFIED] * 2)
        )
    assert normalised(await rows_of(store, bulk)) == normalised(bulk_rows)


async def test_close_challenges_closes_what_is_open_and_names_the_rest(store: SqlStore) -> None:
    await setup_workers(store, {1: (MINER_A, 3)})
    c = opening("w1", MINER_A, 1, uuids(1, 3), T0)
    await store.open_challenge(c)
    first, second, third = verdicts_for(c, T0, [Outcome.VERIFIED] * 3)
    await store.close_challenge(first)
    stranger = dataclasses.replace(second, gpu_uuid="GPU-nobody")
    timeout = ChallengeVerdict("w1", third.gpu_uuid, T0, Outcome.TIMEOUT, failure="timeout")
    with pytest.raises(StorageError, match="already closed") as caught:
        await store.close_challenges([first, second, stranger, third, timeout])
    assert "does not exist" in caught.value.message and "GPU-nobody" in caught.value.message
    rows = {r.gpu_uuid: r for r in await store.challenge("w1")}
    assert {r.status for r in rows.values()} == {"closed"}
    # the row named twice took the first verdict; the already closed one kept its own
    assert rows[third.gpu_uuid].outcome is Outcome.VERIFIED
    assert rows[second.gpu_uuid].throughput_flops == second.throughput_flops


async def test_close_challenges_across_epochs_of_the_same_gpus(store: SqlStore) -> None:
    """Successive epochs challenge the same GPUs under new ids: closing one epoch's rows while
    the other's are closed already (or open) touches and reports only the rows named."""
    await setup_workers(store, {1: (MINER_A, 2)})
    first = opening("epoch1-w1", MINER_A, 1, uuids(1, 2), T0)
    second = opening("epoch2-w1", MINER_A, 1, uuids(1, 2), T0 + timedelta(minutes=10))
    await store.open_challenges([first, second])
    await store.close_challenges(verdicts_for(first, T0, [Outcome.TIMEOUT] * 2))
    mixed = [
        verdicts_for(second, T0, [Outcome.VERIFIED] * 2)[0],
        dataclasses.replace(verdicts_for(first, T0, [Outcome.VERIFIED] * 2)[1], gpu_uuid="GPU-x"),
    ]
    with pytest.raises(StorageError) as caught:
        await store.close_challenges(mixed)
    assert "already closed" not in caught.value.message
    assert "epoch1-w1 GPU GPU-x: does not exist" in caught.value.message
    assert [(r.status, r.outcome) for r in await store.challenge("epoch2-w1")] == [
        ("closed", Outcome.VERIFIED),
        ("dispatched", None),
    ]
    assert {r.outcome for r in await store.challenge("epoch1-w1")} == {Outcome.TIMEOUT}


async def test_close_challenges_refuses_bad_verdicts_before_writing(store: SqlStore) -> None:
    await setup_workers(store, {1: (MINER_A, 2)})
    c = opening("w1", MINER_A, 1, uuids(1, 2), T0)
    await store.open_challenges([c])
    good, bad = verdicts_for(c, T0, [Outcome.VERIFIED] * 2)
    with pytest.raises(ValueError, match="throughput"):
        await store.close_challenges([good, dataclasses.replace(bad, throughput_flops=None)])
    with pytest.raises(ValueError, match="finite"):
        await store.close_challenges([good, dataclasses.replace(bad, elapsed_s=float("inf"))])
    with pytest.raises(ValueError, match="naive"):
        await store.close_challenges(
            [good, dataclasses.replace(bad, closed_at=T0.replace(tzinfo=None))]
        )
    assert {r.status for r in await store.challenge("w1")} == {"dispatched"}
    await store.close_challenges([])  # nothing to do
    assert {r.status for r in await store.challenge("w1")} == {"dispatched"}


# ------------------------------------------------------------------------- calibration samples


async def test_verified_throughputs_since_a_cut_off(store: SqlStore) -> None:
    await setup_workers(store, {1: (MINER_A, 2), 2: (MINER_B, 1)})
    cut = T0 + timedelta(hours=1)
    before, at, after = cut - timedelta(microseconds=1), cut, cut + timedelta(minutes=30)
    challenges = {
        "old": opening("old", MINER_A, 1, uuids(1, 2), before),
        "edge": opening("edge", MINER_A, 1, uuids(1, 2), at),
        "new": opening("new", MINER_B, 2, uuids(2, 1), after, model=A100),
        "open": opening("open", MINER_A, 1, uuids(1, 2), after),
        "failed": opening("failed", MINER_A, 1, uuids(1, 2), after),
    }
    await store.open_challenges(list(challenges.values()))
    await store.close_challenges(verdicts_for(challenges["old"], after, [Outcome.VERIFIED] * 2))
    await store.close_challenges(
        verdicts_for(challenges["edge"], after, [Outcome.VERIFIED, Outcome.EXCUSED])
    )
    await store.close_challenges(verdicts_for(challenges["new"], after, [Outcome.VERIFIED]))
    await store.close_challenges(
        verdicts_for(challenges["failed"], after, [Outcome.FRAUD, Outcome.TIMEOUT])
    )
    # the miner of the newest sample left the metagraph: its measurement still calibrates
    await store.sync_miners(after, [neuron(1, MINER_A)])

    got = await store.verified_throughputs(cut)
    assert all(isinstance(s, VerifiedSample) for s in got)
    assert sorted(got, key=lambda s: s.gpu_uuid) == [
        VerifiedSample(MINER_A, H100, "GPU-1-0", 1e12, at),
        VerifiedSample(MINER_B, A100, "GPU-2-0", 1e12, after),
    ]
    assert len(await store.verified_throughputs(before)) == 4
    assert await store.verified_throughputs(after + timedelta(seconds=1)) == []
    with pytest.raises(ValueError, match="naive"):
        await store.verified_throughputs(cut.replace(tzinfo=None))


# ------------------------------------------------------------------------- compute capability


async def test_compute_capability_round_trips(store: SqlStore) -> None:
    await store.sync_miners(T0, [neuron(1, MINER_A)])
    gpus = (
        GpuSnapshot("GPU-a", H100, 81559, compute_capability="9.0"),
        GpuSnapshot("GPU-b", H100, 81559),  # not reported
        GpuSnapshot("GPU-c", A100, 81920, compute_capability="8.0"),
    )
    await store.record_inventory(
        T0, MINER_A, [WorkerSnapshot(pubkey(1), "idle", gpus)], bucket_seconds=BUCKET
    )
    [worker] = await store.workers(T0)
    assert worker.gpus == gpus

    # a later poll reports another capability (or none): the claim follows the latest poll
    later = T0 + timedelta(minutes=1)
    changed = (
        GpuSnapshot("GPU-a", H100, 81559, compute_capability="12.10"),
        GpuSnapshot("GPU-b", H100, 81559, compute_capability="9.0"),
        GpuSnapshot("GPU-c", A100, 81920),
    )
    await store.record_inventory(
        later, MINER_A, [WorkerSnapshot(pubkey(1), "idle", changed)], bucket_seconds=BUCKET
    )
    [worker] = await store.workers(later)
    assert worker.gpus == changed


# ------------------------------------------------------------------------- migration 0003


def _gpu_columns(connection: Connection) -> set[str]:
    return {c["name"] for c in sa.inspect(connection).get_columns("gpus")}


async def test_migration_0003_adds_and_drops_compute_capability(database_url: str) -> None:
    """Up from 0002 with a claim stored, down again, and up: the claim survives each step and
    the column appears (empty for old claims) and goes."""
    engine = create_engine(database_url)
    try:
        assert await upgrade_engine(engine, "0002") == "0002"
        async with engine.begin() as conn:
            assert "compute_capability" not in await conn.run_sync(_gpu_columns)
            await conn.execute(
                sa.text(
                    "INSERT INTO miners (hotkey, uid, coldkey, stake, validator_permit, "
                    "registered, first_synced, last_synced) "
                    "VALUES ('5M', 1, 'c', 1.0, false, true, :t, :t)"
                ),
                {"t": T0},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO workers (miner_hotkey, worker_pubkey, state, online, "
                    "first_seen, last_seen) VALUES ('5M', :w, 'idle', true, :t, :t)"
                ),
                {"w": pubkey(1), "t": T0},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO gpus (gpu_uuid, miner_hotkey, worker_pubkey, model, memory_mib, "
                    "first_seen, last_seen, present) "
                    "VALUES ('GPU-old', '5M', :w, 'H100', 81559, :t, :t, true)"
                ),
                {"w": pubkey(1), "t": T0},
            )

        assert await upgrade_engine(engine, "0003") == "0003"
        async with engine.begin() as conn:
            assert "compute_capability" in await conn.run_sync(_gpu_columns)
            rows = (
                await conn.execute(sa.text("SELECT gpu_uuid, compute_capability FROM gpus"))
            ).all()
            assert [tuple(r) for r in rows] == [("GPU-old", None)]
            await conn.execute(sa.text("UPDATE gpus SET compute_capability = '9.0'"))

        assert await downgrade_engine(engine, "0002") == "0002"
        async with engine.begin() as conn:
            assert "compute_capability" not in await conn.run_sync(_gpu_columns)
            rows = (await conn.execute(sa.text("SELECT gpu_uuid, model FROM gpus"))).all()
            assert [tuple(r) for r in rows] == [("GPU-old", "H100")]
            # the workers table and its foreign key came through the SQLite table copy intact
            count = (await conn.execute(sa.text("SELECT count(*) FROM workers"))).scalar()
            assert count == 1

        assert await upgrade_engine(engine) == "0003"
        assert await current_revision(engine) == "0003"
        store = SqlStore(engine)
        [worker] = await store.workers(T0)
        assert worker.gpus == (GpuSnapshot("GPU-old", "H100", 81559, compute_capability=None),)
    finally:
        await engine.dispose()
