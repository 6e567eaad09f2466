"""The validator's event loop while it polls the largest inventories and scores 256 miners: the
longest stall, before and after moving that work off the loop (SPEC 5.5), measured side by side.

    python bench/loop_stall.py              # 16 miners at the limits, scoring at 256 miners
    python bench/loop_stall.py --quick      # 2 miners at the limits, a smaller scoring network
    python bench/loop_stall.py --json out.json   # also write the figures as JSON

The challenge timer runs on the daemon's event loop, so no poll or scoring work may block that
loop for more than 50 ms. A **lag monitor** (a task that sleeps 5 ms and records how late it
wakes) runs on the validator's loop throughout; each phase reports its longest stall and p99.

- **The miners**: one stub HTTP server in a process of its own (its CPU is not the validator's)
  serves ``GET /inventory`` for N miner hotkeys, each at the protocol's limits: ``MAX_WORKERS``
  workers of ``MAX_GPUS`` H100s, as a miner encodes them (real NVML-style UUIDs and names). It
  does not check the btauth/1 signatures; the validator signs with a real key all the same.
- **The network**: a scratch PostgreSQL database holds 256 miners (the N polled ones among them,
  their endpoint the stub) with one-GPU workers, 169 hours of availability and a day of
  challenges each (24 per GPU), filled directly in SQL; the polled miners' inventories come on
  top, recorded by the polls.
- **After** (the code as it is): the real ``ValidatorDaemon`` with its defaults, on that
  database: ``poll_once()`` (every miner polled with ``miners.max_concurrency`` in flight, each
  inventory decoded, checked and recorded, then ``workers()`` for the gauges, which resolves GPU
  ownership) and ``weights.compute()`` (the scoring pass: ``scoring_inputs`` then
  ``compute_weights``). On PostgreSQL the daemon runs both in its ``BackgroundStore``, a
  process of its own; the start-up heap is frozen out of the collector as ``run_validator``
  does.
- **Before** (the code as it was, kept here as the reference path): the same steps in the same
  order on the daemon's loop: ``MinerClient.inventory()`` (which decodes on the loop), the
  snapshots, ``record_inventory`` and ``workers()`` on the daemon's store; then
  ``scoring_inputs`` and the same pure scoring inline; nothing frozen.
- **Phases**, each before and after: one poll round of the N miners; one scoring pass; both at
  once; and "idle", the loop doing nothing (the floor this machine's other processes set). Each
  poll round is a fresh 5-minute bucket, after an unmeasured first round that inserts the rows
  (later rounds update them, as a running validator does). Every "after" phase runs first, then
  every "before" phase, with a pause between phases, so that the database's own after-work
  (checkpoints, autovacuum) of a slow phase is not charged to the next.

PostgreSQL comes from ``--database-url``, else ``BYTELEAP_TEST_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``; a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

# run as a script (python bench/loop_stall.py), the repository root is not on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog
from bittensor.sp_core import Keypair
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from bench.loop_stall_world import (
    CHALLENGES_PER_WORKER,
    NOW,
    PARAMS,
    PERIOD_S,
    SETTLE_S,
    TARGET_MS,
    NoChain,
    StallClock,
    StallSettings,
    StallStub,
    fill,
    measured,
    quick_settings,
)
from bench.scratch_db import drop_database, scratch_database
from byteleap.config import ValidatorConfig
from byteleap.protocol.common import MAX_GPUS, MAX_INVENTORY_BYTES, MAX_WORKERS
from neurons.validator.daemon import ValidatorDaemon, freeze_startup_heap
from neurons.validator.poller import pollable, snapshot
from neurons.validator.store import SqlStore, open_store
from neurons.validator.store.records import MinerRow, ValidatorStore
from neurons.validator.weights import weigh

console = Console() if sys.stdout.isatty() else Console(width=150)


# --------------------------------------------------------------------------- before and after


async def poll_before(daemon: ValidatorDaemon, store: ValidatorStore) -> None:
    """The poll round as the code was: each inventory decoded by ``MinerClient.inventory()`` on
    the loop, its snapshots built and recorded there, then ``workers()`` read there."""
    targets = pollable(await store.miners(), daemon.hotkey)
    gate = asyncio.Semaphore(daemon.cfg.miners.max_concurrency)
    timeout = daemon.cfg.miners.request_timeout_s

    async def one(miner: MinerRow) -> None:
        assert miner.endpoint is not None
        async with gate:
            client = daemon.connect(miner.hotkey, miner.endpoint, timeout)
            try:
                inventory = await asyncio.wait_for(client.inventory(), timeout + 1.0)
            finally:
                await client.aclose()
            assert inventory.miner_hotkey == miner.hotkey
            workers = [snapshot(w) for w in inventory.workers]
            await store.record_inventory(
                daemon.wall_clock(), miner.hotkey, workers, bucket_seconds=PARAMS.bucket_seconds
            )

    await asyncio.gather(*(one(m) for m in targets))
    await store.workers(daemon.wall_clock())


async def poll_after(daemon: ValidatorDaemon) -> None:
    summary = await daemon.poll_once()
    if summary.failed:
        raise RuntimeError(f"polls failed: {summary.failed}")


async def score_before(store: ValidatorStore) -> int:
    """The scoring pass as the code was: ``scoring_inputs`` and the same pure scoring
    (:func:`weigh`), both on the loop."""
    inputs = await store.scoring_inputs(NOW, PARAMS)
    return len(weigh(NOW, PARAMS, inputs).weights)


async def score_after(daemon: ValidatorDaemon) -> int:
    vector = await daemon.weights.compute(NOW)
    return len(vector.result.weights)


# --------------------------------------------------------------------------- the run


async def run_phases(
    settings: StallSettings, daemon: ValidatorDaemon, store: SqlStore, clock: StallClock
) -> dict[str, dict[str, Any]]:
    def polled(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def round_() -> None:
            clock.next_bucket()
            await fn()

        return round_

    def both(
        poll: Callable[[], Awaitable[Any]], score: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[Any]]:
        async def run() -> None:
            await asyncio.gather(polled(poll)(), score())

        return run

    before_poll, after_poll = (lambda: poll_before(daemon, store)), (lambda: poll_after(daemon))
    before_score, after_score = (lambda: score_before(store)), (lambda: score_after(daemon))
    # the noise floor: the loop doing nothing (this machine's other processes still run)
    phases: dict[str, dict[str, Any]] = {"idle": {"after": await measured(asyncio.sleep(2.0))}}
    work = (
        ("poll", polled(before_poll), polled(after_poll)),
        ("scoring", before_score, after_score),
        ("both", both(before_poll, before_score), both(after_poll, after_score)),
    )
    # every "after" phase first, then every "before" phase: a "before" phase leaves the
    # database busy for a while (checkpoints, autovacuum after its writes), and on a small
    # machine that would be charged to whichever phase came next
    freeze_startup_heap()  # as run_validator does after start-up
    for name, _, after in work:
        console.print(f"{name}: after ...")
        await asyncio.sleep(SETTLE_S)
        phases[name] = {"after": await measured(after)}
    gc.unfreeze()  # the code as it was froze nothing
    for name, before, _ in work:
        console.print(f"{name}: before ...")
        await asyncio.sleep(SETTLE_S)
        phases[name]["before"] = await measured(before)
    return phases


async def measure(settings: StallSettings) -> dict[str, Any]:
    dsn = make_url(settings.database_url).set(drivername="postgresql")
    dsn_text = dsn.render_as_string(hide_password=False)
    name = await scratch_database(dsn_text)
    stub: StallStub | None = None
    store: SqlStore | None = None
    daemon: ValidatorDaemon | None = None
    figures: dict[str, Any] = {
        "quick": settings.quick,
        "scale": {
            "polled_miners": settings.polled,
            "workers_per_miner": settings.workers_per_miner,
            "gpus_per_worker": settings.gpus_per_worker,
            "scoring_miners": settings.scoring_miners,
            "scoring_workers": settings.scoring_workers,
            "challenges": settings.scoring_workers * CHALLENGES_PER_WORKER,
        },
        "limits": {
            "max_workers": MAX_WORKERS,
            "max_gpus_per_worker": MAX_GPUS,
            "max_inventory_bytes": MAX_INVENTORY_BYTES,
        },
        "target_ms": TARGET_MS,
        "period_ms": PERIOD_S * 1e3,
        "cores": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    try:
        console.print(f"stub miners: building {settings.polled} inventories ...")
        stub = await StallStub.start(settings)
        figures["inventory_bytes"] = max(stub.sizes)
        db_url = dsn.set(drivername="postgresql+asyncpg", database=name)
        store = await open_store(db_url.render_as_string(hide_password=False), auto_upgrade=True)
        console.print("filling the scoring network ...")
        started = time.perf_counter()
        await fill(dsn.set(database=name).render_as_string(hide_password=False), settings, stub.url)
        figures["fill_s"] = time.perf_counter() - started
        clock = StallClock()
        validator = Keypair.create_from_seed(bytes([7]) * 32)
        daemon = ValidatorDaemon(
            ValidatorConfig(),
            signer=validator,
            hotkey=validator.ss58_address,
            store=store,
            chain=NoChain(),  # type: ignore[arg-type]
            wall_clock=clock,
        )
        figures["background_store"] = daemon.background is not None
        console.print("first poll round (inserts every row; not measured) ...")
        clock.next_bucket()
        started = time.perf_counter()
        await poll_after(daemon)
        figures["first_round_s"] = time.perf_counter() - started
        figures["phases"] = await run_phases(settings, daemon, store, clock)
        figures["requests_served"] = await stub.served()
        listed = await store.workers(NOW)
        figures["workers_listed"] = len(listed)
        figures["gpus_listed"] = sum(len(w.gpus) for w in listed)
        figures["weights"] = await score_after(daemon)
        async with store.engine.connect() as conn:
            figures["postgresql"] = (await conn.exec_driver_sql("SHOW server_version")).scalar()
    finally:
        if daemon is not None:
            await daemon.shutdown()
        if store is not None:
            await store.close()
        if stub is not None:
            await stub.stop()
        await drop_database(dsn_text, name)
    figures["load_after"] = os.getloadavg()[0]
    figures["libraries"] = {lib: version(lib) for lib in ("sqlalchemy", "asyncpg", "pydantic")}
    figures["python"] = sys.version.split()[0]
    return figures


# --------------------------------------------------------------------------- the tables


def worst_after(figures: dict[str, Any]) -> float:
    """The longest stall of the code as it is, over every phase with work in it."""
    return float(max(p["after"]["longest_ms"] for p in figures["phases"].values() if "before" in p))


def report(figures: dict[str, Any]) -> None:
    sc = figures["scale"]
    console.print(
        f"{sc['polled_miners']} miners polled, each {sc['workers_per_miner']:,} workers × "
        f"{sc['gpus_per_worker']} GPUs ({figures['inventory_bytes'] / 2**20:.2f} MiB a body); "
        f"scoring {sc['scoring_miners']} miners, {sc['scoring_workers']:,} one-GPU workers and "
        f"{sc['challenges']:,} challenges besides; lag monitor every {figures['period_ms']:g} ms"
    )
    table = Table(title="event-loop stalls, before → after")
    for column in ("phase", "longest stall", "p99", "p50", f"stalls > {TARGET_MS:g} ms",
                   "wall", "validator CPU"):  # fmt: skip
        table.add_column(column, justify="left" if column == "phase" else "right")
    for name, phase in figures["phases"].items():
        a = phase["after"]
        b = phase.get("before")
        if b is None:  # the noise floor
            table.add_row(
                f"{name} (nothing runs)", f"{a['longest_ms']:,.1f} ms", f"{a['p99_ms']:,.1f} ms",
                f"{a['p50_ms']:,.2f} ms", str(a["over_target"]), f"{a['wall_s']:,.2f} s", "",
            )  # fmt: skip
            continue
        table.add_row(
            name,
            f"{b['longest_ms']:,.1f} → [bold]{a['longest_ms']:,.1f} ms[/]",
            f"{b['p99_ms']:,.1f} → {a['p99_ms']:,.1f} ms",
            f"{b['p50_ms']:,.2f} → {a['p50_ms']:,.2f} ms",
            f"{b['over_target']} → {a['over_target']}",
            f"{b['wall_s']:,.2f} → {a['wall_s']:,.2f} s",
            f"{b['cpu_s']:,.2f} → {a['cpu_s']:,.2f} s",
        )
    console.print(table)
    console.print(
        f"load average (1 min) before / after the run: {figures['load_before']:.2f} / "
        f"{figures['load_after']:.2f} on {figures['cores']} cores"
    )
    worst = worst_after(figures)
    verdict = "PASS" if worst <= TARGET_MS else "FAIL"
    console.print(f"target: longest stall <= {TARGET_MS:g} ms -> {worst:,.1f} ms: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BYTELEAP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server where a scratch database may be created (libpq URL)",
    )
    parser.add_argument("--miners", type=int, help="miners polled (default 16; --quick: 2)")
    parser.add_argument("--workers-per-miner", type=int, help=f"default {MAX_WORKERS}")
    parser.add_argument("--gpus-per-worker", type=int, help=f"default {MAX_GPUS}")
    parser.add_argument(
        "--scoring-workers", type=int, help="one-GPU workers of the scoring network (8000)"
    )
    parser.add_argument("--quick", action="store_true", help="2 miners, 1,000 scoring workers")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    settings = quick_settings(args.database_url) if args.quick else StallSettings(args.database_url)
    overrides = {
        "polled": args.miners,
        "workers_per_miner": args.workers_per_miner,
        "gpus_per_worker": args.gpus_per_worker,
        "scoring_workers": args.scoring_workers,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings up
    figures = asyncio.run(measure(settings))
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
