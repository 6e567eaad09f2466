"""The epoch benchmark's figures added up to one epoch, and its tables on the console."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.epoch_world import EpochSettings

console = Console() if sys.stdout.isatty() else Console(width=150)


def s(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} s"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} ms"


def gb(value: float) -> str:
    return f"{value / 1e9:,.1f} GB"


def report(figures: dict[str, Any]) -> None:
    sc, p, d = figures["scale"], figures["planning"], figures["dispatch"]
    st, u, e = figures["storing"], figures["units"], figures["epoch"]
    scale = (
        f"{sc['miners']} miners x {sc['workers_per_miner']} workers x {sc['gpus_per_worker']} "
        f"GPUs = {sc['workers']:,} workers, {sc['gpus']:,} GPUs; {figures['cores']} cores"
    )
    table = Table(title=f"Planning and storing one epoch: {scale}")
    table.add_column("measurement")
    table.add_column("wall", justify="right")
    table.add_column("validator CPU", justify="right")
    table.add_column("database CPU", justify="right")
    if p["read_s"] is not None:
        table.add_row(f"SqlStore.workers: {p['listed_workers']:,} workers read back",
                      s(p["read_s"]), s(p["read_cpu_s"]), s(p["read_db_cpu_s"]))  # fmt: skip
    table.add_row(
        f"EpochPlanner.plan: {p['planned_workers']:,} challenges, {p['planned_gpus']:,} GPUs "
        f"({p['skipped']} skipped)", s(p["plan_s"]), s(p["plan_cpu_s"]), "",
    )  # fmt: skip
    if st is not None:
        table.add_row(f"open_challenges: {st['rows']:,} GPU rows in one call", s(st["wall_s"]),
                      s(st["cpu_s"]), s(st["db_cpu_s"]))  # fmt: skip
    else:
        table.add_row("open_challenges", "not measured (no database)", "", "")
    console.print(table)

    table = Table(title=f"Dispatch: Challenger.run_epoch to {d['miners']} miners (stub process)")
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("target", justify="right")
    table.add_row("requests arrived / distinct miner hotkeys",
                  f"{d['requests_arrived']} / {d['distinct_receivers']}", "")  # fmt: skip
    table.add_row("challenges in them / records received back",
                  f"{d['challenges_in_requests']:,} / {d['records_received']:,}", "")  # fmt: skip
    table.add_row("[bold]arrival spread at the miners[/] (first to last request in)",
                  f"[bold]{s(d['arrival_spread_s'], 3)}[/]", "<= 2 s")  # fmt: skip
    table.add_row("send spread (first to last request handed to HTTP)",
                  s(d["send_spread_s"], 3), "")  # fmt: skip
    table.add_row("Challenger's spread (its metric: first to last clock start)",
                  s(d["challenger_spread_s"], 3), "")  # fmt: skip
    table.add_row("epoch start (deadline clock) to the first send",
                  s(d["epoch_start_to_first_send_s"], 3), "")  # fmt: skip
    table.add_row("epoch start to a request's arrival, median / max",
                  f"{s(d['epoch_start_to_arrival_median_s'], 3)} / "
                  f"{s(d['epoch_start_to_last_arrival_s'], 3)}", "")  # fmt: skip
    table.add_row("a miner's clock start to its request's arrival, median / max",
                  f"{s(d['lag_median_s'], 3)} / {s(d['lag_max_s'], 3)}", "")  # fmt: skip
    table.add_row(f"building the {d['miners']} clients (connect)", s(d["connect_s"], 3), "")
    table.add_row(
        f"first send to the last record received (answers {s(d['answer_after_s'])} after "
        "each arrival)", s(d["first_send_to_last_record_s"], 3), "",
    )  # fmt: skip
    verdicts = ", ".join(f"{k} {v:,}" for k, v in sorted(d["verdicts"].items()))
    table.add_row(
        f"verdicts of those honest-timed answers (expected {s(d['expected_s'])}, deadline "
        f"{s(d['deadline_s'])} from the epoch start)", verdicts, "no timeout",
    )  # fmt: skip
    table.add_row("run_epoch after storing: wall / validator CPU",
                  f"{s(d['run_epoch_wall_s'])} / {s(d['run_epoch_cpu_s'])}", "")  # fmt: skip
    table.add_row("stub (miners) CPU, its own process", s(d["stub_cpu_s"]), "")
    console.print(table)

    shape = (
        f"{u['m']} x {u['n']} x {u['k']}, R = {u['stages']:,}, r = {u['sample_stages']}, "
        f"s = {u['sample_rows']}, e = {u['sample_columns']}"
    )
    table = Table(title=f"Per unit, on samples ({shape})")
    table.add_column("measurement")
    table.add_column("wall", justify="right")
    table.add_column("validator CPU", justify="right")
    table.add_column("database CPU", justify="right")
    table.add_row(
        f"check one worker's commit record ({u['commit_record_bytes'] / 1e3:,.0f} kB; "
        f"{u['commit_sample']} workers)", ms(u["commit_check_wall_ms"]),
        ms(u["commit_check_cpu_ms"]), "",
    )  # fmt: skip
    store = u["store"]
    if store is not None:
        for op in ("record", "close"):
            name = "record_commit" if op == "record" else "close_challenges"
            for mode, how in (("one", "1 at a time"), ("pool", f"{store['pool_size']} in flight")):
                r = store[f"{op}_{mode}"]
                table.add_row(f"{name}, one worker ({store['sample'] // 2} calls, {how})",
                              ms(r["wall_ms"]), ms(r["cpu_ms"]), ms(r["db_cpu_ms"]))  # fmt: skip
    table.add_row(
        f"one reveal over HTTP ({u['reveal_response_bytes'] / 2**20:,.1f} MiB; "
        f"{u['reveal_sample']} reveals)", ms(u["reveal_wall_ms"]), ms(u["reveal_cpu_ms"]), "",
    )  # fmt: skip
    table.add_row(f"pickle / unpickle one GPU's VerifyJob ({u['job_bytes'] / 2**20:,.2f} MiB)",
                  "", f"{ms(u['pickle_ms'])} / {ms(u['unpickle_ms'])}", "")  # fmt: skip
    table.add_row(f"exact verification, one GPU, one core ({u['checked_entries']} entries)",
                  ms(u["exact_wall_ms"]), ms(u["exact_cpu_ms"]), "")  # fmt: skip
    table.add_row("Merkle-only verification, one GPU, one core", ms(u["merkle_wall_ms"]),
                  ms(u["merkle_cpu_ms"]), "")  # fmt: skip
    b = u["budget"]
    table.add_row(
        f"VerifyBudget({b['processes']} processes, {b['epoch_s']:g} s, {b['utilization']:g}): "
        f"GPUs verified exactly per epoch, p", "",
        f"{b['capacity']:,.0f}, p = {b['fraction']:.3f}",
        f"(at its starting {b['default_verify_ms']:g} ms: {b['default_capacity']:,.0f}, "
        f"p = {b['default_fraction']:.3f})",
    )  # fmt: skip
    console.print(table)

    table = Table(title=f"CPU seconds per {e['epoch_s']:g}-s epoch at {scale}")
    table.add_column("where")
    table.add_column("component")
    table.add_column("per unit", justify="right")
    table.add_column("units", justify="right")
    table.add_column("CPU s per epoch", justify="right")
    for r in e["rows"]:
        per = "" if r["unit_ms"] is None else f"{ms(r['unit_ms'])} / {r['per']}"
        count = "" if r["count"] is None else f"{r['count']:,.0f}"
        table.add_row(r["where"], r["what"], per, count, s(r["cpu_s"], 1))
    table.add_row(
        "[bold]validator process[/]", "one event loop: share of one core", "", "",
        f"[bold]{s(e['validator_process_cpu_s'], 1)}[/] = "
        f"{e['validator_process_core_share']:.0%}",
    )  # fmt: skip
    table.add_row(
        "[bold]verifier pool[/]",
        f"share of its processes (budgeted {e['pool_budgeted_share']:.0%}); busy per epoch",
        "", "", f"[bold]{s(e['pool_cpu_s'], 1)}[/] = {e['pool_share']:.0%}; "
        f"{s(e['pool_busy_s'], 0)}",
    )  # fmt: skip
    table.add_row("PostgreSQL", "its backends", "", "", s(e["database_cpu_s"], 1))
    table.add_row(
        "[bold]total[/]", f"share of this machine's {e['cores']} cores", "", "",
        f"[bold]{s(e['total_cpu_s'], 1)}[/] = {e['machine_share']:.0%}",
    )  # fmt: skip
    console.print(table)

    table = Table(title="Bytes per epoch at the validator")
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_row("commit records received", gb(e["commit_bytes"]))
    table.add_row("reveals received", gb(e["reveal_bytes"]))
    table.add_row(
        f"received in all: average over {e['epoch_s']:g} s",
        f"{gb(e['received_bytes'])}: {e['received_gbit_s']:,.1f} Gbit/s",
    )  # fmt: skip
    window = e["commit_window_gbit_s"]
    table.add_row(
        f"commits, if all arrive within the deadline slack ({s(e['commit_window_s'])})",
        "n/a" if window is None else f"{window:,.1f} Gbit/s",
    )  # fmt: skip
    table.add_row("requests sent (epoch and reveal requests)", gb(e["sent_bytes"]))
    console.print(table)


def epoch_totals(settings: EpochSettings, f: dict[str, Any]) -> dict[str, Any]:
    """The per-unit costs multiplied out to one epoch, by where they run."""
    units, planning, dispatched = f["units"], f["planning"], f["dispatch"]
    storing, store = f["storing"], units["store"]
    workers, gpus = settings.workers, settings.gpus
    p = units["budget"]["fraction"]
    rows: list[dict[str, Any]] = []

    def add(where: str, what: str, cpu_s: float | None, per: str = "", unit_ms: Any = None,
            count: float | None = None) -> None:  # fmt: skip
        rows.append({"where": where, "what": what, "per": per, "unit_ms": unit_ms,
                     "count": count, "cpu_s": cpu_s})  # fmt: skip

    loop = "validator process"
    if planning["read_cpu_s"] is not None:
        add(loop, "read the workers (SqlStore.workers)", planning["read_cpu_s"])
    add(loop, "plan the epoch (EpochPlanner.plan)", planning["plan_cpu_s"])
    if storing is not None:
        add(loop, "store every challenge (open_challenges)", storing["cpu_s"])
    add(loop, "dispatch, and the answers' verdicts (run_epoch, failure records)",
        dispatched["run_epoch_cpu_s"])  # fmt: skip
    per_worker = [
        ("check a commit record (decode, 1 + 8 signatures, shape, plausibility)",
         units["commit_check_cpu_ms"]),
        ("reveal: request, receive over HTTP, decode", units["reveal_cpu_ms"]),
    ]  # fmt: skip
    if store is not None:
        per_worker.insert(1, ("record_commit", store["record_one"]["cpu_ms"]))
        per_worker.append(("close_challenges", store["close_one"]["cpu_ms"]))
    for what, ms in per_worker:
        add(loop, what, ms * workers / 1e3, "worker", ms, workers)
    add(loop, "hand each GPU's VerifyJob to the pool (pickle)", units["pickle_ms"] * gpus / 1e3,
        "GPU", units["pickle_ms"], gpus)  # fmt: skip
    pool = "verifier pool"
    add(pool, "receive each VerifyJob (unpickle)", units["unpickle_ms"] * gpus / 1e3, "GPU",
        units["unpickle_ms"], gpus)  # fmt: skip
    add(pool, "Merkle-only check (entries=False)", units["merkle_cpu_ms"] * (1 - p) * gpus / 1e3,
        "GPU", units["merkle_cpu_ms"], (1 - p) * gpus)  # fmt: skip
    add(pool, f"exact check (p = {p:.3f})", units["exact_cpu_ms"] * p * gpus / 1e3, "GPU",
        units["exact_cpu_ms"], p * gpus)  # fmt: skip
    db = "PostgreSQL"
    if store is not None and storing is not None:
        add(db, "read the workers", planning["read_db_cpu_s"])
        add(db, "open_challenges", storing["db_cpu_s"])
        for what, key in (("record_commit", "record_one"), ("close_challenges", "close_one")):
            ms = store[key]["db_cpu_ms"]
            add(db, what, None if ms is None else ms * workers / 1e3, "worker", ms, workers)
    epoch_s = settings.section.interval_s
    cores = os.cpu_count() or 1
    sums = {}
    for where in (loop, pool, db):
        known = [r["cpu_s"] for r in rows if r["where"] == where and r["cpu_s"] is not None]
        sums[where] = sum(known) if known else None
    total = sum(v for v in sums.values() if v is not None)
    commit_bytes = units["commit_record_bytes"] * workers
    reveal_bytes = units["reveal_response_bytes"] * workers
    sent_bytes = dispatched["request_bytes"] + units["reveal_request_bytes"] * workers
    slack = dispatched["deadline_s"] - dispatched["expected_s"]
    pool_s = sums[pool] or 0.0
    return {
        "rows": rows,
        "validator_process_cpu_s": sums[loop],
        "pool_cpu_s": sums[pool],
        "database_cpu_s": sums[db],
        "total_cpu_s": total,
        "epoch_s": epoch_s,
        "cores": cores,
        "validator_process_core_share": (sums[loop] or 0.0) / epoch_s,
        "pool_share": pool_s / (settings.section.verifier_processes * epoch_s),
        "pool_budgeted_share": settings.section.verify_utilization,
        "pool_busy_s": pool_s / settings.section.verifier_processes,
        "machine_share": total / (epoch_s * cores),
        "commit_bytes": commit_bytes,
        "reveal_bytes": reveal_bytes,
        "received_bytes": commit_bytes + reveal_bytes,
        "sent_bytes": sent_bytes,
        "received_gbit_s": (commit_bytes + reveal_bytes) * 8 / epoch_s / 1e9,
        "commit_window_s": slack,
        "commit_window_gbit_s": commit_bytes * 8 / slack / 1e9 if slack > 0 else None,
    }
