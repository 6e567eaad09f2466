"""docs/benchmarks.md from the benchmarks' JSON figures and the prose in bench/templates/.

The prose is static (it says what each figure means); the tables are built here from whatever the
scripts measured, so the page never shows a figure that this run did not produce, except in the
"earlier figures" section, which says where those came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from string import Template
from typing import Any

from bench.machine import Machine
from bench.results import BenchResult, Status, Target, Verdict

TEMPLATES = Path(__file__).parent / "templates"
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")

Figures = dict[str, Any]


def template(name: str, **values: str) -> str:
    return Template((TEMPLATES / f"{name}.md").read_text()).substitute(values).strip() + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def sci(value: float) -> str:
    """``1.03 × 10⁷``: the asymmetry ratios span orders of magnitude."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def judge(ok: bool) -> Verdict:
    return Verdict.PASS if ok else Verdict.FAIL


# --------------------------------------------------------------------------- challenge


def challenge_tables(f: Figures) -> str:
    v = f["verifier"]
    shape = (
        f"{v['m']} × {v['n']} × {v['k']}, R = {v['stages']}, r = {v['sample_stages']}, "
        f"s = {v['sample_rows']}, e = {v['sample_columns']}"
    )
    if v["worker_over_verifier_time"] is None:
        time_ratio = ("worker time / verifier time, with this CPU as the worker", "not measured "
                      "(`--quick` skips the full GEMM)", "")  # fmt: skip
    else:
        time_ratio = (
            f"worker time / verifier time, with this CPU as the worker (one {v['m']}³ GEMM: "
            f"{v['bare_gemm_s']:.2f} s)",
            sci(v["worker_over_verifier_time"]),
            "",
        )
    summary = table(
        ("measurement", "figure", "target"),
        [
            (f"verify the challenge ({shape}) on **one** core", f"**{v['verify_ms']:.1f} ms**",
             "< 100 ms at 8192³"),
            (f"worker FLOPs / verifier operations, R = {v['stages']}",
             f"**{sci(v['flops_per_verifier_op'])}**", "≥ 10⁵"),
            ("... with a single stage (R = 1)", sci(v["flops_per_verifier_op_one_stage"]), "≥ 10⁵"),
            time_ratio,
            (f"NumPy entry generation ({f['generation']['entries']:,} entries)",
             f"**{f['generation']['ns_per_entry']:.2f} ns/entry**", "≤ 12 ns"),
        ],
    )  # fmt: skip
    threads = f["cpu_stage"][0]["threads"] if f["cpu_stage"] else 1
    stages = table(
        ("m = n = k", "bare GEMM", f"stage ({threads} threads)", "ratio", "1 thread", "ratio",
         "GFLOP/s"),
        [
            (r["size"], f"{r['bare_ms']:.1f} ms", f"{r['stage_ms']:.1f} ms", f"{r['ratio']:.2f}",
             f"{r['one_thread_ms']:.1f} ms", f"{r['one_thread_ratio']:.2f}", f"{r['gflops']:.0f}")
            for r in f["cpu_stage"]
        ],
    )  # fmt: skip
    return f"{summary}\n\n{stages}"


def challenge_targets(f: Figures) -> list[Target]:
    v = f["verifier"]
    full = v["m"] == v["n"] == v["k"] == 8192
    ratio = v["flops_per_verifier_op"]
    ns = f["generation"]["ns_per_entry"]
    largest = next((r for r in f["cpu_stage"] if r["size"] >= 4096), None)
    return [
        Target(
            "challenge", "verify the default GPU challenge (8192³) on one core: < 100 ms",
            f"{v['verify_ms']:.1f} ms at k = {v['k']}",
            judge(v["verify_ms"] < 100) if full else Verdict.NOT_MEASURED,
        ),
        Target("challenge", "worker FLOPs / verifier operations: ≥ 10⁵", sci(ratio),
               judge(ratio >= 1e5)),
        Target("challenge", "NumPy entry generation: ≤ 12 ns/entry", f"{ns:.2f} ns/entry",
               judge(ns <= 12)),
        Target(
            "challenge", "CPU stage / bare GEMM at 4096³: ≤ 1.25",
            f"{largest['ratio']:.2f}" if largest else "4096³ not run",
            judge(largest["ratio"] <= 1.25) if largest else Verdict.NOT_MEASURED,
        ),
    ]  # fmt: skip


# --------------------------------------------------------------------------- miner


def miner_tables(f: Figures) -> str:
    n = f["workers"]
    return table(
        ("measurement", "figure", "target"),
        [
            (f"connect and register all {n:,} workers", f"{f['connect_all_s']:.2f} s", ""),
            (f"heartbeat round trip p50 / p99 ({f['heartbeats_measured']:,} heartbeats)",
             f"{f['heartbeat_rtt_p50_ms']:.2f} ms / **{f['heartbeat_rtt_p99_ms']:.2f} ms**",
             "p99 < 50 ms"),
            (f"hub RSS idle → with {n:,} workers",
             f"{f['hub_rss_idle_mb']:.1f} MB → **{f['hub_rss_loaded_mb']:.1f} MB** "
             f"(× {f['rss_ratio']:.2f})", "< 500 MB"),
            (f"fan-out: one challenge to all {n:,} until every commit is back",
             f"**{f['fanout_s']:.2f} s** ({f['fanout_commits']:,} of {f['listed']:,} commits)",
             "every commit back"),
        ],
    )  # fmt: skip


def miner_targets(f: Figures) -> list[Target]:
    n = f["workers"]
    full = n >= 1000
    scale = f" with {n:,} workers"
    p99, rss = f["heartbeat_rtt_p99_ms"], f["hub_rss_loaded_mb"]
    return [
        Target("miner", "heartbeat round trip p99 with 1,000 workers: < 50 ms",
               f"{p99:.2f} ms{scale}", judge(p99 < 50) if full else Verdict.NOT_MEASURED),
        Target("miner", "hub RSS with 1,000 workers: < 500 MB", f"{rss:.1f} MB{scale}",
               judge(rss < 500) if full else Verdict.NOT_MEASURED),
        Target("miner", "fan-out: every worker's commit comes back",
               f"{f['fanout_commits']:,} of {f['listed']:,}",
               judge(f["fanout_commits"] == f["listed"] == n)),
    ]  # fmt: skip


# --------------------------------------------------------------------------- leases


def leases_tables(f: Figures) -> str:
    return table(
        ("measurement", "figure"),
        [
            (f"receipt round trip, p50 ({f['receipts']:,} receipts, one at a time)",
             f"{f['receipt_round_trip_p50_ms']:.2f} ms"),
            ("receipts stored per second, one at a time", f"{f['receipts_per_s']:,.0f}"),
            ("`GET /receipts` page, per receipt", f"{f['page_fetch_per_receipt_ms']:.3f} ms"),
            ("verify both signatures, per receipt",
             f"{f['verify_both_signatures_per_receipt_ms']:.3f} ms"),
            (f"trivial job, submit to final state, p50 ({f['jobs']} jobs)",
             f"{f['job_submit_to_final_p50_ms']:.1f} ms"),
            ("the same process spawned directly, p50",
             f"{f['same_process_spawned_directly_p50_ms']:.1f} ms"),
            ("routing overhead (through the chain / direct)",
             f"**× {f['job_routing_overhead_ratio']:.2f}**"),
        ],
    )  # fmt: skip


def leases_targets(f: Figures) -> list[Target]:
    return []  # the design sets no target for leases; the figures are for comparison


# --------------------------------------------------------------------------- validator store


def validator_store_tables(f: Figures) -> str:
    engines: dict[str, Figures] = f["engines"]
    rows: list[tuple[str, Callable[[Figures], str]]] = [
        ("miners × workers (1 GPU each)", lambda r: f"{r['miners']} × {r['workers']:,}"),
        ("inventory polls, workers recorded/s, 1 call at a time",
         lambda r: f"{r['poll_sequential']:,.0f}"),
        ("inventory polls, workers recorded/s, 8 calls in flight",
         lambda r: f"{r['poll_concurrent']:,.0f}"),
        ("challenge rows/s (open + commit + close, 3 transactions), 1 at a time",
         lambda r: f"{r['challenge_sequential']:,.0f}"),
        ("challenge rows/s, 8 in flight", lambda r: f"{r['challenge_concurrent']:,.0f}"),
        ("availability rows (worker × hour)", lambda r: f"{r['availability_rows']:,}"),
        ("challenge rows in the window", lambda r: f"{r['challenges']:,}"),
        ("bulk fill (not an ingest rate)", lambda r: f"{r['fill_s']:.1f} s"),
        ("`scoring_inputs`", lambda r: f"{r['read_s']:.2f} s"),
        ("... of which the availability counts", lambda r: f"{r['availability_s']:.2f} s"),
        ("`compute_weights`", lambda r: f"{r['score_s']:.2f} s"),
        (f"**scoring pass**, best / median of {f['scale']['repeats']}",
         lambda r: f"**{r['total_s']:.2f} s** / {r['median_total_s']:.2f} s"),
        ("workers counted / miners weighted", lambda r: f"{r['workers']:,} / {r['weights']}"),
        ("mean availability", lambda r: f"{r['mean_availability']:.4f}"),
        ("`workers()`, the challenge planner's read", lambda r: f"{r['workers_s']:.2f} s"),
    ]  # fmt: skip
    body = table(
        ("measurement", *engines),
        [(label, *(cell(r) for r in engines.values())) for label, cell in rows],
    )
    versions = []
    if "PostgreSQL" in engines:
        pg = engines["PostgreSQL"]
        versions.append(
            f"PostgreSQL {pg['server_version']} on the same machine (`shared_buffers` "
            f"{pg['shared_buffers']}, `work_mem` {pg['work_mem']})"
        )
    if "SQLite" in engines:
        versions.append(f"SQLite {engines['SQLite']['server_version']}")
    versions += [f"{name} {ver}" for name, ver in f["libraries"].items()]
    busy = [
        f"{engine}: polling all {r['workers']:,} workers every minute keeps the database busy for "
        f"{r['workers'] / r['poll_concurrent']:.1f} s (8 in flight) to "
        f"{r['workers'] / r['poll_sequential']:.1f} s (one at a time) of each minute."
        for engine, r in engines.items()
    ]
    return f"{', '.join(versions)}.\n\n{body}\n\n" + "\n".join(f"- {line}" for line in busy)


def validator_store_targets(f: Figures) -> list[Target]:
    pg = f["engines"].get("PostgreSQL")
    if pg is None:
        return [Target("validator_store", "scoring pass, PostgreSQL, 256 × 8,000: < 5 s",
                       "PostgreSQL skipped", Verdict.NOT_MEASURED)]  # fmt: skip
    full = pg["miners"] >= 256 and pg["workers"] >= 8000
    return [
        Target("validator_store", "scoring pass, PostgreSQL, 256 miners × 8,000 workers: < 5 s",
               f"{pg['total_s']:.2f} s at {pg['miners']} × {pg['workers']:,}",
               judge(pg["total_s"] < 5) if full else Verdict.NOT_MEASURED),
    ]  # fmt: skip


# --------------------------------------------------------------------------- gpu


def gpu_tables(f: Figures) -> str:
    if not f.get("available"):
        return ""
    parts = []
    for device in f["devices"]:
        runs = [r for r in device["shapes"] if "skipped" not in r]
        parts.append(f"**[{device['index']}] {device['name']}**, {device['memory_gib']:.0f} GiB")
        parts.append(table(
            ("m × n × k, R", "challenge / stage", "bare GEMM", "ratio", "TFLOP/s",
             "of dense TF32 peak"),
            [
                (f"{r['m']} × {r['n']} × {r['k']}, R = {r['stages']}",
                 f"{r['per_stage_ms']:.3f} ms", f"{r['bare_gemm_ms']:.3f} ms",
                 f"**{r['ratio']:.3f}**", f"{r['tflops']:.1f}",
                 f"{r['peak_fraction']:.1%} of {r['peak_tflops']:.0f}")
                for r in runs
            ],
        ))  # fmt: skip
        if runs:
            phases = list(runs[0]["phases_ms"])
            parts.append(table(
                ("one stage on the device (CUDA events)",
                 *(f"{r['m']} × {r['n']} × {r['k']}" for r in runs)),
                [(phase, *(f"{r['phases_ms'][phase]:.3f} ms" for r in runs)) for phase in phases],
            ))  # fmt: skip
        parts += [f"{r['m']} × {r['n']} × {r['k']}: skipped, {r['skipped']}"
                  for r in device["shapes"] if "skipped" in r]  # fmt: skip
    for row in f.get("concurrent", []):
        parts.append(
            f"All GPUs at once: [{row['index']}] {row['tflops']:.1f} TFLOP/s"
            if "failed" not in row
            else f"All GPUs at once: failed, {row['failed']}"
        )
    return "\n\n".join(parts)


def gpu_targets(f: Figures) -> list[Target]:
    if not f.get("available"):
        return [Target("gpu", "challenge / bare GEMM on a GPU: ≤ 1.10", "no CUDA device",
                       Verdict.NOT_MEASURED)]  # fmt: skip
    out = []
    for device in f["devices"]:
        for r in device["shapes"]:
            shape = f"{r['m']} × {r['n']} × {r['k']}"
            if "skipped" in r:
                out.append(Target("gpu", f"{device['name']}, {shape}: ≤ 1.10", "skipped",
                                  Verdict.NOT_MEASURED))  # fmt: skip
                continue
            full = r["m"] == r["n"] == 8192
            verdict = judge(r["ratio"] <= 1.10) if full else Verdict.NOT_MEASURED
            goal = f"challenge / bare GEMM, {device['name']}, {shape}: ≤ 1.10"
            out.append(Target("gpu", goal, f"{r['ratio']:.3f}", verdict))
    return out


# --------------------------------------------------------------------------- sybil


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
               judge(worst <= f["target_ratio"]) if full else Verdict.NOT_MEASURED),
    ]  # fmt: skip


# --------------------------------------------------------------------------- epoch


def _s(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} s"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} ms"


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
               judge(d["arrival_spread_s"] <= 2.0) if full else Verdict.NOT_MEASURED),
        Target("epoch", "honest-timed answers judged in time (deadline from the epoch's start): "
               "no timeout", f"{timeouts:,} of {gpus:,} GPUs timed out; epoch start to the last "
               f"arrival {_s(d['epoch_start_to_last_arrival_s'])}",
               judge(timeouts == 0) if full else Verdict.NOT_MEASURED),
        Target("epoch", "validator CPU seconds per 600-s epoch at 256 × 100 × 8: reported",
               f"{_s(e['total_cpu_s'], 0)} ({e['machine_share']:.0%} of {e['cores']} cores); "
               f"the event loop {e['validator_process_core_share']:.0%} of one core",
               Verdict.PASS if full else Verdict.NOT_MEASURED),
    ]  # fmt: skip


# --------------------------------------------------------------------------- loop stall


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
               judge(worst <= f["target_ms"]) if _loop_stall_full(f) else Verdict.NOT_MEASURED),
    ]  # fmt: skip


# --------------------------------------------------------------------------- the page

SECTIONS: dict[str, tuple[Callable[[Figures], str], Callable[[Figures], list[Target]]]] = {
    "challenge": (challenge_tables, challenge_targets),
    "miner": (miner_tables, miner_targets),
    "leases": (leases_tables, leases_targets),
    "validator_store": (validator_store_tables, validator_store_targets),
    "gpu": (gpu_tables, gpu_targets),
    "sybil": (sybil_tables, sybil_targets),
    "epoch": (epoch_tables, epoch_targets),
    "loop_stall": (loop_stall_tables, loop_stall_targets),
}


def section(result: BenchResult) -> tuple[str, list[Target]]:
    tables, targets = SECTIONS[result.name]
    # a GPU benchmark that found no device still wrote figures: its targets say "no CUDA device"
    judged = targets(result.figures) if result.figures is not None else []
    if result.status is Status.OK and result.figures is not None:
        figures = f"{result.summary()}\n\n{tables(result.figures)}".rstrip()
    else:
        figures = result.summary()
        if result.name == "gpu":
            figures += "\n\n" + template("gpu_unverified").strip()
    return template(result.name, figures=figures), judged


def target_rows(results: Sequence[BenchResult], judged: list[Target]) -> str:
    rows = [(f"`{t.bench}`", t.goal, t.measured, t.verdict.value) for t in judged]
    silent = [r for r in results if r.figures is None]  # failed: no figures to judge
    rows += [
        (f"`{r.name}`", "its targets", r.status.value, Verdict.NOT_MEASURED.value) for r in silent
    ]
    return table(("benchmark", "target", "measured", "result"), rows)


def render(results: Sequence[BenchResult], machine: Machine, *, date: str, quick: bool) -> str:
    sections, judged = [], []
    for result in results:
        text, targets = section(result)
        sections.append(text)
        judged += targets
    store = next((r for r in results if r.name == "validator_store" and r.figures), None)
    postgresql = None
    if store and store.figures and "PostgreSQL" in store.figures["engines"]:
        postgresql = store.figures["engines"]["PostgreSQL"]["server_version"]
    mode = "`--quick`" if quick else "full"
    parts = [
        template("intro", date=date),
        template(
            "machine",
            date=date,
            mode=mode,
            figures=table(("item", "value"), machine.rows(postgresql)),
        ),
        template("targets", figures=target_rows(results, judged)),
        *sections,
        template("history"),
    ]
    return "\n".join(parts)
