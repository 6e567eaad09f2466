"""The validator-store benchmark's data: a network of miners, workers and GPUs, their challenge
history and availability rows filled into the store under test, and the helpers that time it."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from byteleap.chain import NeuronView
from byteleap.challenge.params import GPU_DEFAULT
from byteleap.errors import Outcome
from byteleap.scoring import ScoringParams, availability_bucket_range
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    SqlStore,
    WorkerSnapshot,
)
from neurons.validator.store.availability import buckets_per_row, slot_text
from neurons.validator.store.schema import Availability, Gpu, GpuChallenge, Miner, Worker

NOW = datetime(2026, 11, 22, 12, 7, 30, tzinfo=UTC)  # mid-hour: both horizon edges are partial
MODEL = "NVIDIA H100 80GB HBM3"
CHALLENGES_PER_WORKER = 24
CONCURRENCY = 8
PARAMS = ScoringParams()


def hotkey(i: int) -> str:
    return f"5Bench{i:05d}"


def pubkey(i: int) -> str:
    return f"{i:064x}"


def gpu_uuid(i: int) -> str:
    return f"GPU-{i:08x}-bench"


def neurons(miners: int) -> list[NeuronView]:
    return [NeuronView(i, hotkey(i), f"cold{i}", 100.0, False) for i in range(miners)]


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await fn()
    return time.perf_counter() - started, result


async def gather_limited(calls: Sequence[Callable[[], Awaitable[Any]]], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def ingest(store: SqlStore, miners: int, workers: int, rounds: int) -> dict[str, float]:
    """Rows per second through the API, sequential and with CONCURRENCY calls in flight."""
    await store.sync_miners(NOW, neurons(miners))
    owned: dict[int, list[WorkerSnapshot]] = {m: [] for m in range(miners)}
    for w in range(workers):
        snapshot = WorkerSnapshot(pubkey(w), "idle", (GpuSnapshot(gpu_uuid(w), MODEL, 81559),))
        owned[w % miners].append(snapshot)
    out: dict[str, float] = {}
    bucket = timedelta(seconds=PARAMS.bucket_seconds)
    for label, limit, offset in (("sequential", 1, 0), ("concurrent", CONCURRENCY, rounds)):
        started = time.perf_counter()
        for r in range(rounds):
            at = NOW + (offset + r) * bucket
            calls = [
                (lambda m=m, at=at: store.record_inventory(
                    at, hotkey(m), owned[m], bucket_seconds=PARAMS.bucket_seconds
                ))
                for m in range(miners)
            ]  # fmt: skip
            await gather_limited(calls, limit)
        out[f"poll_{label}"] = workers * rounds / (time.perf_counter() - started)

    count = max(200, workers // 4)
    for label, limit in (("sequential", 1), ("concurrent", CONCURRENCY)):

        async def lifecycle(i: int, label: str = label) -> None:
            w = i % workers
            cid = f"{label}-{i}"
            at = NOW + timedelta(seconds=i)
            await store.open_challenge(
                ChallengeOpen(
                    cid, hotkey(w % miners), pubkey(w), (gpu_uuid(w),), {gpu_uuid(w): MODEL},
                    GPU_DEFAULT, bytes(32), at, at + timedelta(seconds=30),
                )
            )  # fmt: skip
            await store.record_commit(cid, at, {gpu_uuid(w): [bytes(32)] * GPU_DEFAULT.stages})
            await store.close_challenge(
                ChallengeVerdict(cid, gpu_uuid(w), at, Outcome.VERIFIED, throughput_flops=4e14)
            )

        started = time.perf_counter()
        lifecycles: list[Callable[[], Awaitable[None]]] = [
            functools.partial(lifecycle, i) for i in range(count)
        ]
        await gather_limited(lifecycles, limit)
        out[f"challenge_{label}"] = count / (time.perf_counter() - started)
    return out


async def wipe(store: SqlStore) -> None:
    async with store.engine.begin() as conn:
        if store.dialect == "postgresql":
            await conn.exec_driver_sql(
                "TRUNCATE availability, gpus, workers, miners, challenges RESTART IDENTITY CASCADE"
            )
        else:
            for table in ("availability", "gpus", "workers", "miners", "challenges"):
                await conn.exec_driver_sql(f"DELETE FROM {table}")


def _periods() -> tuple[int, int, int]:
    """``(first, last, per_row)``: every stored period the horizon touches, edges included."""
    first, stop = availability_bucket_range(NOW, PARAMS)
    per_row = buckets_per_row(PARAMS.bucket_seconds)
    return first // per_row, (stop - 1) // per_row, per_row


async def fill_postgres(store: SqlStore, miners: int, workers: int) -> None:
    lo, hi, per_row = _periods()
    full = (1 << per_row) - 1
    half = (1 << (per_row // 2)) - 1
    now = f"'{NOW.isoformat()}'::timestamptz"
    ones, zeros = "01" * per_row, "00" * per_row
    halves = "01" * (per_row // 2) + "00" * (per_row - per_row // 2)
    # a row's pattern: 8 in 10 hours fully online, 1 half online, 1 listed but unhealthy
    pattern = "((w.id * 7 + p.period) % 10)"
    statements = [
        f"""INSERT INTO miners (hotkey, uid, coldkey, stake, validator_permit, endpoint,
                registered, first_synced, last_synced)
            SELECT '5Bench' || lpad(i::text, 5, '0'), i, 'cold' || i, 100, false, NULL, true,
                {now}, {now}
            FROM generate_series(0, {miners - 1}) AS i""",
        f"""INSERT INTO workers (id, miner_hotkey, worker_pubkey, state, online, first_seen,
                last_seen)
            SELECT i + 1, '5Bench' || lpad((i % {miners})::text, 5, '0'),
                lpad(to_hex(i), 64, '0'), 'idle', true, {now} - interval '200 hours', {now}
            FROM generate_series(0, {workers - 1}) AS i""",
        f"""INSERT INTO gpus (gpu_uuid, miner_hotkey, worker_pubkey, model, memory_mib,
                first_seen, last_seen, present)
            SELECT 'GPU-' || lpad(to_hex(w.id - 1), 8, '0') || '-bench', w.miner_hotkey,
                w.worker_pubkey, '{MODEL}', 81559, w.first_seen, {now}, true
            FROM workers w""",
        f"""INSERT INTO availability (worker_id, bucket_seconds, period, online_mask,
                online_count, gpu_buckets, seen_mask, max_gpus, bucket_gpus, seen_gpus)
            SELECT w.id, {PARAMS.bucket_seconds}, p.period,
                CASE WHEN {pattern} < 8 THEN {full} WHEN {pattern} = 8 THEN {half} ELSE 0 END,
                CASE WHEN {pattern} < 8 THEN {per_row} WHEN {pattern} = 8 THEN {per_row // 2}
                    ELSE 0 END,
                CASE WHEN {pattern} < 8 THEN {per_row} WHEN {pattern} = 8 THEN {per_row // 2}
                    ELSE 0 END,
                {full}, 1,
                CASE WHEN {pattern} < 8 THEN '{ones}' WHEN {pattern} = 8 THEN '{halves}'
                    ELSE '{zeros}' END,
                '{ones}'
            FROM workers w CROSS JOIN generate_series({lo}, {hi}) AS p(period)""",
        f"""INSERT INTO challenges (challenge_id, gpu_uuid, miner_hotkey, worker_pubkey,
                gpu_model, m, n, k, v, stages, seed, dispatched_at, deadline_at, committed_at,
                roots, closed_at, status, outcome, failure, throughput_flops, elapsed_s)
            SELECT 'c' || g.id || '-' || s.i, g.gpu_uuid, g.miner_hotkey, g.worker_pubkey,
                g.model, 8192, 8192, 8192, 15, 64, '\\x00'::bytea,
                {now} - s.i * interval '1 hour' - (g.id % 3000) * interval '1 second',
                {now} - s.i * interval '1 hour', {now} - s.i * interval '1 hour', NULL,
                {now} - s.i * interval '1 hour', 'closed',
                CASE WHEN (g.id + s.i) % 20 = 0 THEN 'timeout'
                     WHEN (g.id + s.i) % 20 = 1 THEN 'excused'
                     WHEN g.id % 500 = 0 AND s.i = 5 THEN 'fraud'
                     ELSE 'verified' END,
                NULL, 4.0e14 * (1 + (g.id % 10) / 100.0), 1.4
            FROM gpus g CROSS JOIN generate_series(0, {CHALLENGES_PER_WORKER - 1}) AS s(i)""",
        "SELECT setval(pg_get_serial_sequence('workers', 'id'), (SELECT max(id) FROM workers))",
        "ANALYZE",
    ]
    async with store.engine.begin() as conn:
        for sql in statements[:-1]:
            await conn.exec_driver_sql(sql)
    async with store.engine.connect() as conn:  # ANALYZE outside the filling transaction
        await conn.exec_driver_sql(statements[-1])
        await conn.commit()


async def fill_sqlite(store: SqlStore, miners: int, workers: int) -> None:
    lo, hi, per_row = _periods()
    full, half = (1 << per_row) - 1, (1 << (per_row // 2)) - 1
    first_seen = NOW - timedelta(hours=200)
    miner_rows = [
        {
            "hotkey": hotkey(i), "uid": i, "coldkey": f"cold{i}", "stake": 100.0,
            "validator_permit": False, "endpoint": None, "registered": True,
            "first_synced": NOW, "last_synced": NOW,
        }
        for i in range(miners)
    ]  # fmt: skip
    worker_rows = [
        {
            "id": i + 1, "miner_hotkey": hotkey(i % miners), "worker_pubkey": pubkey(i),
            "state": "idle", "online": True, "first_seen": first_seen, "last_seen": NOW,
        }
        for i in range(workers)
    ]  # fmt: skip
    gpu_rows = [
        {
            "gpu_uuid": gpu_uuid(i), "miner_hotkey": hotkey(i % miners), "worker_pubkey": pubkey(i),
            "model": MODEL, "memory_mib": 81559, "first_seen": first_seen, "last_seen": NOW,
            "present": True,
        }
        for i in range(workers)
    ]  # fmt: skip
    ones = slot_text(1, 0, 1) * per_row
    halves = slot_text(1, 0, 1) * (per_row // 2) + slot_text(1, 0, 0) * (per_row - per_row // 2)
    zeros = slot_text(1, 0, 0) * per_row
    shapes = {
        "full": (full, per_row, ones),
        "half": (half, per_row // 2, halves),
        "down": (0, 0, zeros),
    }
    availability_rows = []
    for i in range(workers):
        for period in range(lo, hi + 1):
            p = ((i + 1) * 7 + period) % 10
            mask, count, text = shapes["full" if p < 8 else "half" if p == 8 else "down"]
            availability_rows.append(
                {
                    "worker_id": i + 1, "bucket_seconds": PARAMS.bucket_seconds,
                    "period": period, "online_mask": mask, "online_count": count,
                    "gpu_buckets": count, "seen_mask": full, "max_gpus": 1, "bucket_gpus": text,
                    "seen_gpus": ones,
                }
            )  # fmt: skip
    challenge_rows = []
    for i in range(workers):
        for s in range(CHALLENGES_PER_WORKER):
            at = NOW - timedelta(hours=s, seconds=i % 3000)
            k = (i + 1 + s) % 20
            outcome = "timeout" if k == 0 else "excused" if k == 1 else "verified"
            challenge_rows.append(
                {
                    "challenge_id": f"c{i}-{s}", "gpu_uuid": gpu_uuid(i),
                    "miner_hotkey": hotkey(i % miners), "worker_pubkey": pubkey(i),
                    "gpu_model": MODEL, "m": 8192, "n": 8192, "k": 8192, "v": 15, "stages": 64,
                    "seed": b"\x00", "dispatched_at": at, "deadline_at": at, "committed_at": at,
                    "closed_at": at, "status": "closed", "outcome": outcome,
                    "throughput_flops": 4.0e14 * (1 + (i % 10) / 100), "elapsed_s": 1.4,
                }
            )  # fmt: skip
    async with store.engine.begin() as conn:
        for table, rows in (
            (Miner, miner_rows),
            (Worker, worker_rows),
            (Gpu, gpu_rows),
            (Availability, availability_rows),
            (GpuChallenge, challenge_rows),
        ):
            await conn.execute(sa.insert(table), rows)
        await conn.exec_driver_sql("ANALYZE")
