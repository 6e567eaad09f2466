"""One challenge epoch at 256 miners x 100 workers x 8 GPUs: planning, storing, the dispatch spread
and the validator's CPU seconds per epoch, measured side by side in one run.

    python bench/epoch.py                  # 256 miners x 100 workers x 8 GPUs (about 2 minutes)
    python bench/epoch.py --quick          # 16 x 20 x 8 and small samples (targets not judged)
    python bench/epoch.py --skip-db        # no PostgreSQL: planning, dispatch and unit costs only
    python bench/epoch.py --json out.json  # also write the figures as JSON

SPEC 4.5 wants every idle GPU of every miner dispatched within ``epoch_spread_s`` (target 2 s).
Everything timed here is the validator's own code:

1. **Planning.** The workers are filled straight into a scratch PostgreSQL database (8 H100 SXM
   GPUs each: "NVIDIA H100 80GB HBM3", 81559 MiB, capability 9.0; each miner's endpoint is the
   stub below), read back with ``SqlStore.workers`` and planned by the real ``EpochPlanner.plan``
   with the catalogue's rates (``calibrate([])``), as ``ValidatorDaemon.plan_once`` does.
2. **Storing** and 3. **dispatch.** The real ``Challenger.run_epoch`` runs that plan with the
   real ``MinerClient`` (btauth/1 signed by a real offline validator wallet, real HTTP over
   127.0.0.1, one client per miner as the daemon's ``connect`` builds it). The store it is given
   passes ``open_challenges`` to PostgreSQL (timed) and only counts the closes (closing is
   measured per unit below). The miners are one stub HTTP server in a separate process, so its
   CPU is not the validator's; it serves every miner hotkey on one port, timestamps each request
   when its body is in (``time.monotonic``: CLOCK_MONOTONIC is shared by all processes) and,
   ``--answer-after`` seconds later (default: the challenge's expected time, when an honest
   card's commit would come), streams one ``EpochFailure("unavailable")`` record per challenge.
   An answer in time is excused; one the Challenger judges past its deadline is a timeout, so
   the timeouts count honest-timed answers lost to the validator's own dispatch.
4. **The rest of an epoch, per unit**, on samples, multiplied out to the whole epoch: checking
   one worker's commit record at the planned R (decode, the miner's signature, each GPU's worker
   signature, shape and plausibility: ``MinerClient.check_challenge_response`` and
   ``Challenger._check_commits``), ``record_commit`` and ``close_challenges`` per worker on
   PostgreSQL, one reveal per worker over HTTP (8 GPUs x r x s rows of n int32), handing each
   GPU's ``VerifyJob`` to the pool (pickling), the exact and the Merkle-only
   ``verify_openings`` per GPU at the default shape on one core, and the share ``p`` of the GPUs
   that ``VerifyBudget`` lets the pool verify exactly. CPU seconds are ``time.process_time``;
   the database's are its backends' CPU (psutil), where the server runs on this machine.

PostgreSQL comes from ``--database-url``, else ``BYTELEAP_TEST_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``; a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

# run as a script (python bench/epoch.py), the repository root is not on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
from sqlalchemy.engine import make_url

from bench.epoch_dispatch import EpochStore, dispatch, expected_seconds, plan_epoch
from bench.epoch_meter import DbCpu, Meter
from bench.epoch_report import console, epoch_totals, report
from bench.epoch_units import unit_costs
from bench.epoch_world import (
    EpochSettings,
    EpochStub,
    fill,
    make_miners,
    make_wallet,
    quick_settings,
)
from bench.scratch_db import drop_database, is_local, scratch_database
from neurons.validator.store import SqlStore, open_store


async def measure(settings: EpochSettings) -> dict[str, Any]:
    """The whole benchmark: an epoch, its unit costs, and the two multiplied out."""
    figures: dict[str, Any] = {
        "scale": {"miners": settings.miners, "workers_per_miner": settings.workers_per_miner,
                  "gpus_per_worker": settings.gpus_per_worker, "workers": settings.workers,
                  "gpus": settings.gpus},
        "cores": os.cpu_count(),
    }  # fmt: skip
    miners = make_miners(settings.miners)
    with tempfile.TemporaryDirectory(prefix="byteleap-bench-epoch-") as tmp:
        root = Path(tmp)
        wallet = make_wallet(root / "wallets")
        reveal_path = root / "reveal.frame"
        answer_after = settings.answer_after_s
        if answer_after is None:
            answer_after = expected_seconds(settings)
        stub = await EpochStub.start(reveal_path, answer_after)
        store: SqlStore | None = None
        admin: asyncpg.Connection | None = None
        name = dsn = None
        try:
            if settings.database_url is not None:
                dsn = make_url(settings.database_url).set(drivername="postgresql")
                dsn_text = dsn.render_as_string(hide_password=False)
                try:
                    name = await scratch_database(dsn_text)
                except (OSError, asyncpg.PostgresError) as exc:  # no server: no storing figures
                    console.print(f"[yellow]no PostgreSQL ({exc}); storing is not measured[/]")
                    figures["database_error"] = str(exc)
                    dsn = None
            if dsn is not None and name is not None:
                db_url = dsn.set(drivername="postgresql+asyncpg", database=name)
                store = await open_store(db_url.render_as_string(hide_password=False),
                                         auto_upgrade=True)  # fmt: skip
                scratch = dsn.set(database=name).render_as_string(hide_password=False)
                started = time.perf_counter()
                await fill(scratch, settings, miners, stub.url)
                figures["fill_s"] = time.perf_counter() - started
                admin = await asyncpg.connect(scratch)
                figures["server_version"] = await admin.fetchval("SHOW server_version")
                if not is_local(dsn_text):
                    await admin.close()
                    admin = None
            meter = Meter(DbCpu(admin, name))
            plan, figures["planning"] = await plan_epoch(settings, store, meter, miners, stub.url)
            epoch_store = EpochStore(store, meter)
            figures["dispatch"] = await dispatch(settings, plan, epoch_store, stub, wallet)
            cost = epoch_store.open_cost
            figures["storing"] = (
                None if cost is None
                else {"rows": plan.gpus, "wall_s": cost.wall_s, "cpu_s": cost.cpu_s,
                      "db_cpu_s": cost.db_cpu_s}
            )  # fmt: skip
            figures["units"] = await unit_costs(
                settings, plan, epoch_store.opened, store, meter, stub, reveal_path, wallet,
                miners,
            )  # fmt: skip
        finally:
            await stub.stop()
            if admin is not None:
                await admin.close()
            if store is not None:
                await store.close()
            if dsn is not None and name is not None:
                await drop_database(dsn.render_as_string(hide_password=False), name)
    figures["epoch"] = epoch_totals(settings, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BYTELEAP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server where a scratch database may be created (libpq URL)",
    )
    parser.add_argument("--skip-db", action="store_true", help="no database: no storing figures")
    parser.add_argument("--miners", type=int, help="default 256 (--quick: 16)")
    parser.add_argument("--workers-per-miner", type=int, help="default 100 (--quick: 20)")
    parser.add_argument(
        "--answer-after", type=float, help="seconds from a request to its answer (default: the "
        "challenge's expected time)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="16 x 20 x 8, small samples")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    url = None if args.skip_db else args.database_url
    settings = quick_settings(url) if args.quick else EpochSettings(database_url=url)
    overrides: dict[str, Any] = {"answer_after_s": args.answer_after}
    if args.miners:
        overrides["miners"] = args.miners
    if args.workers_per_miner:
        overrides["workers_per_miner"] = args.workers_per_miner
    settings = replace(settings, **overrides)
    figures = asyncio.run(measure(settings))
    figures["quick"] = args.quick
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
