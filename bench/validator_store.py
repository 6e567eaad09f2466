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
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

# run as a script (python bench/validator_store.py), the repository root is not on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import sqlalchemy as sa
from rich.table import Table
from sqlalchemy.engine import make_url

from bench.scratch_db import drop_database, scratch_database
from bench.validator_store_epoch import console, epoch_bench, report_epoch
from bench.validator_store_fill import (
    CONCURRENCY,
    NOW,
    PARAMS,
    fill_postgres,
    fill_sqlite,
    ingest,
    timed,
    wipe,
)
from byteleap.scoring import compute_weights
from neurons.validator.store import (
    SqlStore,
    open_store,
)
from neurons.validator.store.availability_counts import availability_counts
from neurons.validator.store.schema import Availability

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
    name = await scratch_database(dsn)
    admin = await asyncpg.connect(dsn)
    try:
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
        await drop_database(dsn, name)


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
