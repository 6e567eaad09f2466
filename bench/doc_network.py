"""The sections of docs/benchmarks.md for the network-scale benchmarks (sybil, epoch,
loop_stall): their tables and their targets, from each script's JSON figures."""

from __future__ import annotations

import math

from bench.doc_common import Figures, judge, table
from bench.results import Target, TargetVerdict


def _s(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} s"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} ms"


def sybil_table(f: Figures, world: Figures) -> str:
    strategies = f["strategies"]
    rows = []
    for r in world["rows"]:
        counts = r["per_epoch"][r["best_strategy"]]
        rows.append((
            f"{r['speed']:g}", r["claims"], r["miners"], f"{r['rate_over_expected']:.2f}",
            r["fits"], f"{r['harmonic']:.2f}",
            *(f"{r['ratios'][s]:.3f}" for s in strategies),
            f"**{r['best']:.3f}** ({r['best_strategy']})",
            f"{counts['verified']:.2f} / {counts['timeout']:.2f} / {counts['excused']:.2f}",
        ))  # fmt: skip
    return table(
        ("s", "claims", "miners", "k = R / E", "fit", "H", *strategies, "best",
         "best: verified / timed out / excused per epoch"),
        rows,
    )  # fmt: skip


def sybil_tables(f: Figures) -> str:
    network, floor = f["network"], f["floor"]

    def calibration(world: Figures) -> str:
        e = world["expected_over_catalogue"]
        return (
            f"the calibrated H100 rate E went from {e['first']:.3f} × the catalogue's figure "
            f"(first epoch) to {e['last']:.3f} (last epoch)"
        )

    cap = f["impossible_limit_flops"] / f["catalogue_flops"]
    most = math.floor(f["deadline_factor"] * cap / network["expected_over_catalogue"]["last"])
    return "\n\n".join([
        f"{network['epochs']} epochs in {network['hours']:g} h, {f['honest_miners']} honest H100 "
        f"SXM miners (catalogue rate {f['catalogue_flops'] / 1e12:.1f} TFLOP/s), challenges "
        f"sized to {f['target_seconds']:g} s at E, deadline {f['deadline_factor']:g} × that + "
        "round trip from the epoch's first dispatch, epoch spread "
        f"{f['epoch_spread_s']:g} s, excuse budget {f['excuse_budget']:.0%}. Ratio: the "
        "attacker's summed challenge raw score / that of one honest card of the same speed.",
        f"**The honest network's calibration**: {calibration(network)}.",
        sybil_table(f, network),
        f"**{f['decoys']} decoy miners answering as late as they may**: {calibration(floor)} "
        f"(the floor is {f['calibration_floor']:g}).",
        sybil_table(f, floor),
        f"The impossible-throughput limit of an H100 SXM is "
        f"{f['impossible_limit_flops'] / 1e12:,.0f} TFLOP/s, {cap:.1f} × its catalogue rate: "
        f"whatever hardware answers them, at most {most} H100 claims fit before one deadline "
        "at the honest network's calibration.",
    ])  # fmt: skip


def sybil_targets(f: Figures) -> list[Target]:
    full = not f["quick"] and max(f["claims"]) >= 200 and f["hours"] >= 24
    worst, where = f["worst_at_s1"], f["worst_at_s1_where"]
    return [
        Target("sybil", f"one card (s = 1.0) behind 1–200 claims, every strategy: ≤ "
               f"{f['target_ratio']:.2f} × one honest card", f"{worst:.3f} ({where})",
               judge(worst <= f["target_ratio"]) if full else TargetVerdict.NOT_MEASURED),
    ]  # fmt: skip


def _epoch_full(f: Figures) -> bool:
    sc = f["scale"]
    return (not f.get("quick") and sc["miners"] >= 256 and sc["workers_per_miner"] >= 100
            and sc["gpus_per_worker"] >= 8)  # fmt: skip


def epoch_tables(f: Figures) -> str:
    sc, p, d, st, u, e = (f[k] for k in ("scale", "planning", "dispatch", "storing", "units",
                                         "epoch"))  # fmt: skip
    scale = (
        f"{sc['miners']} miners × {sc['workers_per_miner']} workers × {sc['gpus_per_worker']} "
        f"GPUs ({sc['workers']:,} workers, {sc['gpus']:,} GPUs)"
    )
    rows = []
    if p["read_s"] is not None:
        rows.append((f"`SqlStore.workers`: {p['listed_workers']:,} workers read back",
                     _s(p["read_s"]), _s(p["read_cpu_s"]), _s(p["read_db_cpu_s"])))  # fmt: skip
    plan = f"`EpochPlanner.plan`: {p['planned_workers']:,} challenges, {p['planned_gpus']:,} GPUs"
    rows.append((plan, _s(p["plan_s"]), _s(p["plan_cpu_s"]), ""))
    if st is not None:
        rows.append((f"`open_challenges`: {st['rows']:,} GPU rows in one call", _s(st["wall_s"]),
                     _s(st["cpu_s"]), _s(st["db_cpu_s"])))  # fmt: skip
    else:
        rows.append(("`open_challenges`", "not measured (no database)", "", ""))
    planning = table(("planning and storing, " + scale, "wall", "validator CPU", "database CPU"),
                     rows)  # fmt: skip

    verdicts = ", ".join(f"{k} {v:,}" for k, v in sorted(d["verdicts"].items()))
    dispatch = table(
        ("dispatch: `Challenger.run_epoch` to the stub miners", "figure"),
        [
            ("requests arrived / distinct miner hotkeys",
             f"{d['requests_arrived']} / {d['distinct_receivers']}"),
            ("challenges in them / records received back",
             f"{d['challenges_in_requests']:,} / {d['records_received']:,}"),
            ("**arrival spread at the miners** (first to last request in; target ≤ 2 s)",
             f"**{_s(d['arrival_spread_s'], 3)}**"),
            ("send spread (first to last request handed to HTTP)", _s(d["send_spread_s"], 3)),
            ("the Challenger's own spread (its metric: first to last clock start)",
             _s(d["challenger_spread_s"], 3)),
            ("epoch start (where every deadline starts) to the first send",
             _s(d["epoch_start_to_first_send_s"], 3)),
            ("epoch start to a request's arrival, median / max",
             f"{_s(d['epoch_start_to_arrival_median_s'], 3)} / "
             f"{_s(d['epoch_start_to_last_arrival_s'], 3)}"),
            (f"building the {d['miners']} miners' clients (`connect`)", _s(d["connect_s"], 3)),
            (f"first send to the last record received (answers {_s(d['answer_after_s'])} after "
             "each arrival)", _s(d["first_send_to_last_record_s"], 3)),
            (f"verdicts of those honest-timed answers, per GPU (expected {_s(d['expected_s'])}, "
             f"deadline {_s(d['deadline_s'])} from the epoch start)", f"**{verdicts}**"),
            ("`run_epoch` after storing: wall / validator CPU",
             f"{_s(d['run_epoch_wall_s'])} / {_s(d['run_epoch_cpu_s'])}"),
            ("the stub miners' own CPU (their process)", _s(d["stub_cpu_s"])),
        ],
    )  # fmt: skip

    b = u["budget"]
    unit_rows = [
        (f"check one worker's commit record ({u['commit_record_bytes'] / 1e3:,.0f} kB; "
         f"{u['commit_sample']} workers)", _ms(u["commit_check_wall_ms"]),
         _ms(u["commit_check_cpu_ms"]), ""),
    ]  # fmt: skip
    store = u["store"]
    if store is not None:
        for op, name in (("record", "`record_commit`"), ("close", "`close_challenges`")):
            for mode, how in (("one", "1 at a time"), ("pool", f"{store['pool_size']} in flight")):
                r = store[f"{op}_{mode}"]
                what = f"{name}, one worker ({store['sample'] // 2} calls, {how})"
                unit_rows.append((what, _ms(r["wall_ms"]), _ms(r["cpu_ms"]), _ms(r["db_cpu_ms"])))
    unit_rows += [
        (f"one reveal over HTTP ({u['reveal_response_bytes'] / 2**20:,.1f} MiB; "
         f"{u['reveal_sample']} reveals)", _ms(u["reveal_wall_ms"]), _ms(u["reveal_cpu_ms"]), ""),
        (f"pickle / unpickle one GPU's `VerifyJob` ({u['job_bytes'] / 2**20:,.2f} MiB)", "",
         f"{_ms(u['pickle_ms'])} / {_ms(u['unpickle_ms'])}", ""),
        (f"exact verification, one GPU, one core ({u['checked_entries']} entries)",
         _ms(u["exact_wall_ms"]), _ms(u["exact_cpu_ms"]), ""),
        ("Merkle-only verification, one GPU, one core", _ms(u["merkle_wall_ms"]),
         _ms(u["merkle_cpu_ms"]), ""),
    ]  # fmt: skip
    shape = (
        f"{u['m']} × {u['n']} × {u['k']}, R = {u['stages']:,}, r = {u['sample_stages']}, "
        f"s = {u['sample_rows']}, e = {u['sample_columns']}"
    )
    units = table((f"per unit, on samples ({shape})", "wall", "validator CPU", "database CPU"),
                  unit_rows)  # fmt: skip
    budget = (
        f"`VerifyBudget({b['processes']} processes, {b['epoch_s']:g} s, {b['utilization']:g})` at "
        f"the measured exact cost verifies **{b['capacity']:,.0f} GPUs per epoch exactly: "
        f"p = {b['fraction']:.3f}** of {sc['gpus']:,} (at its starting {b['default_verify_ms']:g} "
        f"ms: {b['default_capacity']:,.0f}, p = {b['default_fraction']:.3f})."
    )

    epoch_rows = [
        (r["where"], r["what"],
         "" if r["unit_ms"] is None else f"{_ms(r['unit_ms'])} / {r['per']}",
         "" if r["count"] is None else f"{r['count']:,.0f}", _s(r["cpu_s"], 1))
        for r in e["rows"]
    ]  # fmt: skip
    epoch_rows += [
        ("**validator process**", "one event loop: share of one core", "", "",
         f"**{_s(e['validator_process_cpu_s'], 1)} = {e['validator_process_core_share']:.0%}**"),
        ("**verifier pool**",
         f"share of its processes (budgeted {e['pool_budgeted_share']:.0%}); busy per epoch", "",
         "", f"**{_s(e['pool_cpu_s'], 1)} = {e['pool_share']:.0%}**; {_s(e['pool_busy_s'], 0)}"),
        ("PostgreSQL", "its backends", "", "", _s(e["database_cpu_s"], 1)),
        ("**total**", f"share of this machine's {e['cores']} cores", "", "",
         f"**{_s(e['total_cpu_s'], 1)} = {e['machine_share']:.0%}**"),
    ]  # fmt: skip
    cpu = table((f"CPU seconds per {e['epoch_s']:g}-s epoch", "component", "per unit", "units",
                 "CPU s per epoch"), epoch_rows)  # fmt: skip

    window = e["commit_window_gbit_s"]
    received = table(
        ("bytes per epoch at the validator", "figure"),
        [
            ("commit records received", f"{e['commit_bytes'] / 1e9:,.1f} GB"),
            ("reveals received", f"{e['reveal_bytes'] / 1e9:,.1f} GB"),
            (f"received in all, averaged over {e['epoch_s']:g} s",
             f"**{e['received_bytes'] / 1e9:,.1f} GB: {e['received_gbit_s']:,.1f} Gbit/s**"),
            (f"the commits, if all arrive within the deadline slack ({_s(e['commit_window_s'])})",
             "n/a" if window is None else f"{window:,.1f} Gbit/s"),
            ("requests sent (epoch and reveal requests)", f"{e['sent_bytes'] / 1e9:,.2f} GB"),
        ],
    )  # fmt: skip
    return "\n\n".join([planning, dispatch, units, budget, cpu, received])


def epoch_targets(f: Figures) -> list[Target]:
    d, e = f["dispatch"], f["epoch"]
    full = _epoch_full(f)
    timeouts = d["verdicts"].get("timeout", 0)
    gpus = sum(d["verdicts"].values())
    return [
        Target("epoch", "every GPU of 256 miners × 100 workers × 8 GPUs dispatched within 2 s "
               "(arrival spread at the miners)", _s(d["arrival_spread_s"], 3),
               judge(d["arrival_spread_s"] <= 2.0) if full else TargetVerdict.NOT_MEASURED),
        Target("epoch", "honest-timed answers judged in time (deadline from the epoch's start): "
               "no timeout", f"{timeouts:,} of {gpus:,} GPUs timed out; epoch start to the last "
               f"arrival {_s(d['epoch_start_to_last_arrival_s'])}",
               judge(timeouts == 0) if full else TargetVerdict.NOT_MEASURED),
        Target("epoch", "validator CPU seconds per 600-s epoch at 256 × 100 × 8: reported",
               f"{_s(e['total_cpu_s'], 0)} ({e['machine_share']:.0%} of {e['cores']} cores); "
               f"the event loop {e['validator_process_core_share']:.0%} of one core",
               TargetVerdict.PASS if full else TargetVerdict.NOT_MEASURED),
    ]  # fmt: skip


def _loop_stall_full(f: Figures) -> bool:
    sc = f["scale"]
    return (not f.get("quick") and sc["polled_miners"] >= 16 and sc["scoring_miners"] >= 256
            and sc["workers_per_miner"] >= f["limits"]["max_workers"]
            and sc["gpus_per_worker"] >= f["limits"]["max_gpus_per_worker"])  # fmt: skip


def _loop_stall_worst(f: Figures) -> float:
    return float(max(p["after"]["longest_ms"] for p in f["phases"].values() if "before" in p))


def loop_stall_tables(f: Figures) -> str:
    sc, lim = f["scale"], f["limits"]
    scale = (
        f"{sc['polled_miners']} miners polled, each {sc['workers_per_miner']:,} workers × "
        f"{sc['gpus_per_worker']} GPUs ({f['inventory_bytes'] / 2**20:,.2f} MiB a body; the "
        f"limits: {lim['max_workers']:,} × {lim['max_gpus_per_worker']}, "
        f"{lim['max_inventory_bytes']:,} bytes); scoring {sc['scoring_miners']} miners with "
        f"{sc['scoring_workers']:,} one-GPU workers and {sc['challenges']:,} challenges besides. "
        f"Lag monitor every {f['period_ms']:g} ms; load average {f['load_before']:.2f} before the "
        f"run and {f['load_after']:.2f} after it, on {f['cores']} cores; PostgreSQL "
        f"{f['postgresql']}, " + ", ".join(f"{k} {v}" for k, v in f["libraries"].items()) + "."
    )
    rows = []
    for name, phase in f["phases"].items():
        a, b = phase["after"], phase.get("before")
        if b is None:
            rows.append((f"{name} (nothing runs)", f"{a['longest_ms']:,.1f} ms",
                         f"{a['p99_ms']:,.1f} ms", str(a["over_target"]), "", ""))  # fmt: skip
            continue
        rows.append((
            name, f"{b['longest_ms']:,.1f} → **{a['longest_ms']:,.1f} ms**",
            f"{b['p99_ms']:,.1f} → {a['p99_ms']:,.1f} ms",
            f"{b['over_target']} → {a['over_target']}",
            f"{b['wall_s']:,.2f} → {a['wall_s']:,.2f} s",
            f"{b['cpu_s']:,.2f} → {a['cpu_s']:,.2f} s",
        ))  # fmt: skip
    body = table(
        ("phase, before → after", "longest stall", "p99", f"stalls > {f['target_ms']:g} ms",
         "wall", "validator CPU"),
        rows,
    )  # fmt: skip
    return f"{scale}\n\n{body}"


def loop_stall_targets(f: Figures) -> list[Target]:
    worst = _loop_stall_worst(f)
    sc = f["scale"]
    measured = (f"{worst:,.1f} ms at {sc['polled_miners']} miners × {sc['workers_per_miner']:,} "
                f"× {sc['gpus_per_worker']}, scoring {sc['scoring_miners']} miners")  # fmt: skip
    return [
        Target("loop_stall", f"longest stall <= {f['target_ms']:g} ms (polls at the limits and a "
               "scoring pass at 256 miners)", measured,
               judge(worst <= f["target_ms"]) if _loop_stall_full(f)
               else TargetVerdict.NOT_MEASURED),
    ]  # fmt: skip
