"""The sections of docs/benchmarks.md for the component benchmarks (challenge, miner, leases,
validator_store, gpu): their tables and their targets, from each script's JSON figures."""

from __future__ import annotations

from collections.abc import Callable

from bench.doc_common import Figures, judge, sci, table
from bench.results import Target, TargetVerdict


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
            judge(v["verify_ms"] < 100) if full else TargetVerdict.NOT_MEASURED,
        ),
        Target("challenge", "worker FLOPs / verifier operations: ≥ 10⁵", sci(ratio),
               judge(ratio >= 1e5)),
        Target("challenge", "NumPy entry generation: ≤ 12 ns/entry", f"{ns:.2f} ns/entry",
               judge(ns <= 12)),
        Target(
            "challenge", "CPU stage / bare GEMM at 4096³: ≤ 1.25",
            f"{largest['ratio']:.2f}" if largest else "4096³ not run",
            judge(largest["ratio"] <= 1.25) if largest else TargetVerdict.NOT_MEASURED,
        ),
    ]  # fmt: skip


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
               f"{p99:.2f} ms{scale}", judge(p99 < 50) if full else TargetVerdict.NOT_MEASURED),
        Target("miner", "hub RSS with 1,000 workers: < 500 MB", f"{rss:.1f} MB{scale}",
               judge(rss < 500) if full else TargetVerdict.NOT_MEASURED),
        Target("miner", "fan-out: every worker's commit comes back",
               f"{f['fanout_commits']:,} of {f['listed']:,}",
               judge(f["fanout_commits"] == f["listed"] == n)),
    ]  # fmt: skip


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
                       "PostgreSQL skipped", TargetVerdict.NOT_MEASURED)]  # fmt: skip
    full = pg["miners"] >= 256 and pg["workers"] >= 8000
    return [
        Target("validator_store", "scoring pass, PostgreSQL, 256 miners × 8,000 workers: < 5 s",
               f"{pg['total_s']:.2f} s at {pg['miners']} × {pg['workers']:,}",
               judge(pg["total_s"] < 5) if full else TargetVerdict.NOT_MEASURED),
    ]  # fmt: skip


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
                       TargetVerdict.NOT_MEASURED)]  # fmt: skip
    out = []
    for device in f["devices"]:
        for r in device["shapes"]:
            shape = f"{r['m']} × {r['n']} × {r['k']}"
            if "skipped" in r:
                out.append(Target("gpu", f"{device['name']}, {shape}: ≤ 1.10", "skipped",
                                  TargetVerdict.NOT_MEASURED))  # fmt: skip
                continue
            full = r["m"] == r["n"] == 8192
            verdict = judge(r["ratio"] <= 1.10) if full else TargetVerdict.NOT_MEASURED
            goal = f"challenge / bare GEMM, {device['name']}, {shape}: ≤ 1.10"
            out.append(Target("gpu", goal, f"{r['ratio']:.3f}", verdict))
    return out
