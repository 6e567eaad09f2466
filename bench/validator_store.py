"""The validator's store: ingest rates and a whole scoring pass, PostgreSQL and SQLite in one run.

    python bench/validator_store.py            # PostgreSQL at full scale, SQLite at 1/8
    python bench/validator_store.py --quick    # 1/8 of that, for a quick look
    python bench/validator_store.py --database-url postgresql://postgres@db/postgres
    python bench/validator_store.py --json out.json   # also write the figures as JSON

For each engine, on a scratch database (PostgreSQL: created with a random name and dropped
after; SQLite: a file in a temporary directory):

1. **Ingest through the store's API**, batched as the validator does: one inventory poll of a
   miner is one ``record_inventory`` call with all its workers (rows = workers recorded), and a
   challenge row goes ``open_challenge`` -> ``record_commit`` -> ``close_challenge``. Measured
   one call at a time and with 8 in flight (the validator polls and challenges concurrently).
2. **A week of a large network, filled directly** (``generate_series`` on PostgreSQL,
   ``executemany`` on SQLite, not through the API): M miners, W one-GPU workers with 169 hours of
   hourly availability rows, and a day of challenges (24 a worker, mostly verified).
3. **A scoring pass**: ``scoring_inputs`` (the database aggregates availability over the horizon)
   then ``compute_weights``, end to end; the target on PostgreSQL is < 5 s for 256 miners x 8,000
   workers.
4. **An epoch** (PostgreSQL only; ``--skip-epoch`` leaves it out, ``--quick`` runs 1/8 of it):
   every GPU of 25,600 workers x 8 is challenged at once, so ``open_challenges`` stores 204,800
   rows in one call, twice (the second epoch on top of the first's rows). Then
   ``close_challenges`` closes one worker's 8 verdicts a call, for a sample of 2,000 workers one
   call at a time and another 2,000 with 8 in flight; the rows/s give the seconds that closing
   the whole epoch keeps the database busy.

PostgreSQL comes from ``--database-url``, else ``BYTELEAP_TEST_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from byteleap.chain import NeuronView
from byteleap.challenge.params import GPU_DEFAULT
from byteleap.errors import Outcome
from byteleap.scoring import ScoringParams, availability_bucket_range, compute_weights
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    SqlStore,
    VerifiedSample,
    WorkerSnapshot,
    open_store,
)
from neurons.validator.store.availability import buckets_per_row, slot_text
from neurons.validator.store.availability_counts import availability_counts
from neurons.validator.store.schema import Availability, Challenge, Gpu, Miner, Worker

NOW = datetime(2026, 11, 22, 12, 7, 30, tzinfo=UTC)  # mid-hour: both horizon edges are partial
MODEL = "NVIDIA H100 80GB HBM3"
CHALLENGES_PER_WORKER = 24
CONCURRENCY = 8
PARAMS = ScoringParams()
console = Console()


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


# --------------------------------------------------------------------------- ingest


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


# --------------------------------------------------------------------------- bulk fill


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
            (Challenge, challenge_rows),
        ):
            await conn.execute(sa.insert(table), rows)
        await conn.exec_driver_sql("ANALYZE")


# --------------------------------------------------------------------------- scoring


async def scoring_pass(store: SqlStore, repeats: int) -> dict[str, Any]:
    read, score, total = [], [], []
    for _ in range(repeats):
        t_read, inputs = await timed(lambda: store.scoring_inputs(NOW, PARAMS))
        started = time.perf_counter()
        result = compute_weights(
            now=inputs.now, params=inputs.params, challenges=inputs.challenges,
            gpu_claims=inputs.gpu_claims, availability_counts=inputs.availability_counts,
            lease_intervals=inputs.lease_intervals, lease_usage=inputs.lease_usage,
            miners=inputs.miners,
        )  # fmt: skip
        t_score = time.perf_counter() - started
        read.append(t_read)
        score.append(t_score)
        total.append(t_read + t_score)
    best = min(range(repeats), key=lambda i: total[i])

    async def availability_only() -> Any:
        async with store.engine.connect() as conn:
            return await availability_counts(conn, store.dialect, NOW, PARAMS)

    t_avail = min([(await timed(availability_only))[0] for _ in range(repeats)])
    t_workers = min([(await timed(lambda: store.workers(NOW)))[0] for _ in range(repeats)])
    return {
        "availability_s": t_avail,
        "workers_s": t_workers,
        "read_s": read[best],
        "score_s": score[best],
        "total_s": total[best],
        "median_total_s": statistics.median(total),
        "challenges": len(inputs.challenges),
        "workers": len(inputs.availability_counts),
        "weights": len(result.weights),
        "mean_availability": statistics.fmean(m.availability for m in result.miners.values()),
    }


# --------------------------------------------------------------------------- epoch


async def fill_epoch_workers(store: SqlStore, miners: int, workers: int) -> None:
    """``miners`` miners and ``workers`` workers (named as :func:`hotkey` / :func:`pubkey`), so
    that each epoch's ``last_challenge_at`` update finds its rows."""
    now = f"'{NOW.isoformat()}'::timestamptz"
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(
            f"""INSERT INTO miners (hotkey, uid, coldkey, stake, validator_permit, endpoint,
                    registered, first_synced, last_synced)
                SELECT '5Bench' || lpad(i::text, 5, '0'), i, 'cold' || i, 100, false, NULL,
                    true, {now}, {now}
                FROM generate_series(0, {miners - 1}) AS i"""
        )
        await conn.exec_driver_sql(
            f"""INSERT INTO workers (miner_hotkey, worker_pubkey, state, online, first_seen,
                    last_seen)
                SELECT '5Bench' || lpad((i % {miners})::text, 5, '0'), lpad(to_hex(i), 64, '0'),
                    'idle', true, {now}, {now}
                FROM generate_series(0, {workers - 1}) AS i"""
        )
    async with store.engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE")
        await conn.commit()


def epoch_challenges(
    epoch: int, miners: int, workers: int, gpus: int, at: datetime
) -> list[ChallengeOpen]:
    """One challenge per worker, every one of its GPUs in it."""
    out = []
    for w in range(workers):
        uuids = tuple(f"GPU-{w:06x}-{g}" for g in range(gpus))
        out.append(
            ChallengeOpen(
                f"epoch{epoch}-{w}", hotkey(w % miners), pubkey(w), uuids,
                dict.fromkeys(uuids, MODEL), GPU_DEFAULT, bytes(32), at,
                at + timedelta(seconds=30),
            )
        )  # fmt: skip
    return out


def worker_verdicts(challenge: ChallengeOpen, at: datetime) -> list[ChallengeVerdict]:
    return [
        ChallengeVerdict(
            challenge.challenge_id, uuid, at, Outcome.VERIFIED, throughput_flops=4e14,
            elapsed_s=9.5, verify_s=0.02, checked_entries=512,
        )
        for uuid in challenge.gpu_uuids
    ]  # fmt: skip


async def epoch_bench(url: str, args: Any) -> dict[str, Any]:
    """Open two epochs in one call each, then close samples of the first epoch per worker."""
    workers, gpus, sample = args.epoch_workers, args.epoch_gpus, args.epoch_close_sample
    sample = min(sample, workers // 2)
    store = await open_store(url, auto_upgrade=True)
    try:
        await wipe(store)
        await fill_epoch_workers(store, args.miners, workers)
        out: dict[str, Any] = {"workers": workers, "gpus": gpus, "rows": workers * gpus}
        epochs = []
        for e in (1, 2):
            at = NOW + timedelta(minutes=10 * e)
            challenges = epoch_challenges(e, args.miners, workers, gpus, at)
            out[f"open_{e}_s"], _ = await timed(partial(store.open_challenges, challenges))
            epochs.append(challenges)
        closed_at = NOW + timedelta(minutes=11)
        first = epochs[0]
        for label, limit, chosen in (
            ("sequential", 1, first[:sample]),
            ("concurrent", CONCURRENCY, first[sample : 2 * sample]),
        ):
            calls = [partial(store.close_challenges, worker_verdicts(c, closed_at)) for c in chosen]
            t, _ = await timed(partial(gather_limited, calls, limit))
            out[f"close_{label}_rows_s"] = len(chosen) * gpus / t
        out["close_sample"] = sample
        t, samples = await timed(lambda: store.verified_throughputs(NOW))
        assert len(samples) == 2 * sample * gpus and isinstance(samples[0], VerifiedSample)
        out["verified_throughputs_s"] = t
        out["verified_samples"] = len(samples)
    finally:
        await store.close()
    for e in (1, 2):
        out[f"open_{e}_rows_s"] = out["rows"] / out[f"open_{e}_s"]
    for label in ("sequential", "concurrent"):
        out[f"close_{label}_epoch_s"] = out["rows"] / out[f"close_{label}_rows_s"]
    return out


def report_epoch(r: dict[str, Any]) -> None:
    table = Table(title=f"PostgreSQL epoch: {r['workers']:,} workers x {r['gpus']} GPUs")
    table.add_column("measurement")
    table.add_column("rows/s", justify="right")
    table.add_column("seconds", justify="right")
    for e, what in ((1, "empty table"), (2, "on the first epoch's rows")):
        table.add_row(
            f"open_challenges, {r['rows']:,} rows in one call ({what})",
            f"{r[f'open_{e}_rows_s']:,.0f}", f"{r[f'open_{e}_s']:.2f}",
        )  # fmt: skip
    for label, how in (
        ("sequential", "1 call at a time"),
        ("concurrent", f"{CONCURRENCY} in flight"),
    ):
        table.add_row(
            f"close_challenges, {r['gpus']} verdicts a call, {r['close_sample']:,} workers "
            f"({how}); seconds for the whole epoch",
            f"{r[f'close_{label}_rows_s']:,.0f}", f"{r[f'close_{label}_epoch_s']:.1f}",
        )  # fmt: skip
    table.add_row(
        f"verified_throughputs ({r['verified_samples']:,} samples)",
        "", f"{r['verified_throughputs_s']:.2f}",
    )  # fmt: skip
    console.print(table)


# --------------------------------------------------------------------------- engines


async def run_engine(
    url: str, fill: Callable[[SqlStore, int, int], Awaitable[None]], args: Any, scale: float
) -> dict[str, Any]:
    miners = max(4, round(args.miners * scale))
    workers = max(miners, round(args.workers * scale))
    store = await open_store(url, auto_upgrade=True)
    try:
        rates = await ingest(store, miners, workers, args.rounds)
        await wipe(store)
        fill_s, _ = await timed(lambda: fill(store, miners, workers))
        result = await scoring_pass(store, args.repeats)
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(sa.func.count()).select_from(Availability))
            ).scalar()
    finally:
        await store.close()
    return {"miners": miners, "workers": workers, "availability_rows": rows, "fill_s": fill_s,
            **rates, **result}  # fmt: skip


async def postgres(args: Any) -> dict[str, Any]:
    admin_dsn = make_url(args.database_url).set(drivername="postgresql")
    dsn = admin_dsn.render_as_string(hide_password=False)
    name = f"byteleap_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        server = {
            "server_version": await admin.fetchval("SHOW server_version"),
            "shared_buffers": await admin.fetchval("SHOW shared_buffers"),
            "work_mem": await admin.fetchval("SHOW work_mem"),
        }
    finally:
        await admin.close()
    url = admin_dsn.set(drivername="postgresql+asyncpg", database=name)
    try:
        text = url.render_as_string(hide_password=False)
        result = await run_engine(text, fill_postgres, args, 1)
        if not args.skip_epoch:
            result["epoch"] = await epoch_bench(text, args)
        return {**result, **server}
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def sqlite(args: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        result = await run_engine(url, fill_sqlite, args, args.sqlite_scale)
        return {**result, "server_version": sqlite3.sqlite_version}


def report(results: dict[str, dict[str, Any]]) -> None:
    table = Table(title=f"validator store, {os.cpu_count()} cores, now = {NOW.isoformat()}")
    table.add_column("measurement")
    for engine in results:
        table.add_column(engine, justify="right")
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("miners x workers (1 GPU each)", lambda r: f"{r['miners']} x {r['workers']:,}"),
        ("inventory polls, workers/s (1 call at a time)", lambda r: f"{r['poll_sequential']:,.0f}"),
        (f"inventory polls, workers/s ({CONCURRENCY} in flight)",
         lambda r: f"{r['poll_concurrent']:,.0f}"),
        ("challenge rows/s, open+commit+close (1 at a time)",
         lambda r: f"{r['challenge_sequential']:,.0f}"),
        (f"challenge rows/s, open+commit+close ({CONCURRENCY} in flight)",
         lambda r: f"{r['challenge_concurrent']:,.0f}"),
        ("availability rows (worker x hour)", lambda r: f"{r['availability_rows']:,}"),
        ("challenge rows in the window", lambda r: f"{r['challenges']:,}"),
        ("bulk fill (not timed as ingest)", lambda r: f"{r['fill_s']:.1f} s"),
        ("scoring_inputs", lambda r: f"{r['read_s']:.2f} s"),
        ("... of which availability counts", lambda r: f"{r['availability_s']:.2f} s"),
        ("compute_weights", lambda r: f"{r['score_s']:.2f} s"),
        ("scoring pass, best (target < 5 s)", lambda r: f"[bold]{r['total_s']:.2f} s[/]"),
        ("scoring pass, median", lambda r: f"{r['median_total_s']:.2f} s"),
        ("workers counted / miners weighted",
         lambda r: f"{r['workers']:,} / {r['weights']}"),
        ("mean availability", lambda r: f"{r['mean_availability']:.4f}"),
        ("workers() for the challenge planner", lambda r: f"{r['workers_s']:.2f} s"),
    ]  # fmt: skip
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results.values()))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BYTELEAP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server where a scratch database may be created (libpq URL)",
    )
    parser.add_argument("--miners", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8000, help="in total, one GPU each")
    parser.add_argument("--sqlite-scale", type=float, default=1 / 8, help="SQLite's share")
    parser.add_argument("--rounds", type=int, default=3, help="inventory rounds per ingest mode")
    parser.add_argument("--repeats", type=int, default=3, help="scoring passes (best reported)")
    parser.add_argument("--quick", action="store_true", help="1/8 of the default scale")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-epoch", action="store_true", help="no epoch measurement")
    parser.add_argument("--epoch-workers", type=int, default=25_600, help="workers in an epoch")
    parser.add_argument("--epoch-gpus", type=int, default=8, help="GPUs per epoch worker")
    parser.add_argument(
        "--epoch-close-sample", type=int, default=2000, help="workers closed per close mode"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.miners, args.workers = args.miners // 8, args.workers // 8
        args.epoch_workers, args.epoch_close_sample = (
            args.epoch_workers // 8,
            args.epoch_close_sample // 8,
        )
    results: dict[str, dict[str, Any]] = {}
    if not args.skip_postgres:
        console.print("PostgreSQL ...")
        results["PostgreSQL"] = asyncio.run(postgres(args))
    if not args.skip_sqlite:
        console.print("SQLite ...")
        results["SQLite"] = asyncio.run(sqlite(args))
    report(results)
    if "epoch" in results.get("PostgreSQL", {}):
        report_epoch(results["PostgreSQL"]["epoch"])
    if args.json:
        figures = {
            "quick": args.quick,
            "scale": {"miners": args.miners, "workers": args.workers,
                      "sqlite_scale": args.sqlite_scale, "repeats": args.repeats,
                      "epoch_workers": None if args.skip_epoch else args.epoch_workers},
            "libraries": {name: version(name) for name in ("sqlalchemy", "asyncpg", "aiosqlite")},
            "engines": results,
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
