"""Benchmarks of the challenge core, printed as ratios measured side by side in one run.

    python bench/challenge.py            # everything (about a minute on 2 cores)
    python bench/challenge.py --quick    # smaller shapes, no full 8192^3 GEMM
    python bench/challenge.py --json out.json   # also write the figures as JSON

1. Verifier cost of the default GPU challenge (8192 x 8192 x 8192, r=4, s=16, e=4) on one core,
   against the worker's work for the same challenge (FLOPs / verifier operations, and the measured
   time of one bare 8192^3 stage on this CPU).
2. NumPy entry generation, in ns per entry.
3. CPU challenge time for one stage (generation + GEMM + row hashing + Merkle tree) against bare
   ``A @ B`` on the same, already generated matrices.

The verifier is timed on a commitment whose sampled rows are honest and whose other rows are not
computed at all; the verifier cannot tell the difference (that is the point of sampling), and its
cost does not depend on the unsampled rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from byteleap.challenge.generate import _fill, matrix_a, matrix_b, stage_key
from byteleap.challenge.merkle import build_levels, leaf_hash, proof
from byteleap.challenge.params import GPU_DEFAULT, Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow, Workspace, canonical_product, compute_stage
from byteleap.challenge.verify import (
    Commitment,
    StageSample,
    draw_sample,
    verifier_operations,
    verify_openings,
)

BINDING = Binding(
    miner_hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    worker_pubkey=bytes(range(32)),
    gpu_uuid="GPU-bench-0000",
)
SEED = bytes(range(32))


def timings(repeats: int, fn: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    return min(timings(repeats, fn))


def median_of(repeats: int, fn: Callable[[], object]) -> float:
    return statistics.median(timings(repeats, fn))


def sampled_commitment(
    params: ChallengeParams, sampling: SamplingParams, rng: random.Random
) -> tuple[Commitment, tuple[StageSample, ...], list[OpenedRow]]:
    """A commitment whose sampled rows are honest (see the module docstring)."""
    samples = draw_sample(params, sampling, rng)
    roots = [rng.randbytes(32) for _ in range(params.stages)]
    openings: list[OpenedRow] = []
    for sample in samples:  # in stage order, so a sampled stage keys off the final previous root
        t = sample.stage
        key = stage_key(SEED, BINDING, t, roots[t - 1] if t else None)
        b = matrix_b(np, key, params)
        a = np.vstack([matrix_a(np, key, params, range(r, r + 1)) for r in sample.rows])
        product = canonical_product(a, b)
        leaves = [rng.randbytes(32) for _ in range(params.m)]
        for i, row in enumerate(sample.rows):
            leaves[row] = leaf_hash(t, row, product[i].tobytes())
        levels = build_levels(leaves)
        roots[t] = levels[-1][0]
        openings += [
            OpenedRow(t, row, product[i].tobytes(), proof(levels, row))
            for i, row in enumerate(sample.rows)
        ]
    return Commitment(BINDING, SEED, params, tuple(roots)), samples, openings


def bench_verifier(quick: bool) -> dict[str, Any]:
    params = GPU_DEFAULT if not quick else GPU_DEFAULT.model_copy(update={"k": 2048})
    sampling = SamplingParams()
    commitment, samples, openings = sampled_commitment(params, sampling, random.Random(1))
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})  # one core, as the spec's budget says
    try:
        seconds = median_of(7, lambda: verify_openings(commitment, samples, openings))
    finally:
        os.sched_setaffinity(0, affinity)
    ops = verifier_operations(params, sampling)
    one_stage = params.model_copy(update={"stages": 1})
    print(
        f"verifier: default GPU challenge m=n={params.m} k={params.k} R={params.stages}, "
        f"r={sampling.stages} s={sampling.rows} e={sampling.columns}"
    )
    print(f"  verify time on one core          {seconds * 1e3:9.1f} ms   (target < 100 ms)")
    print(f"  worker FLOPs / verifier ops      {params.flops / ops:9.3g}      (target >= 1e5)")
    print(f"  ... with a single stage (R=1)    {one_stage.flops / ops:9.3g}")
    figures: dict[str, Any] = {
        "m": params.m,
        "n": params.n,
        "k": params.k,
        "stages": params.stages,
        "sample_stages": sampling.stages,
        "sample_rows": sampling.rows,
        "sample_columns": sampling.columns,
        "verify_ms": seconds * 1e3,
        "flops_per_verifier_op": params.flops / ops,
        "flops_per_verifier_op_one_stage": one_stage.flops / ops,
        "bare_gemm_s": None,
        "worker_over_verifier_time": None,
    }
    if not quick:
        key = stage_key(SEED, BINDING, 0)
        a = matrix_a(np, key, params)
        b = matrix_b(np, key, params)
        gemm = best_of(1, lambda: a @ b)
        del a, b
        print(
            f"  one bare {params.m}^3 GEMM on this CPU {gemm:8.2f} s; the worker does R="
            f"{params.stages} of them"
        )
        print(
            f"  worker time / verifier time      {params.stages * gemm / seconds:9.3g}  "
            "(CPU GEMM as the worker; a GPU is faster, so this is an upper bound)"
        )
        figures["bare_gemm_s"] = gemm
        figures["worker_over_verifier_time"] = params.stages * gemm / seconds
    return figures


def bench_generation() -> dict[str, Any]:
    count = 1 << 24
    out = np.empty(count, dtype=np.float32)
    out.fill(0)  # fault the pages in before timing
    seconds = best_of(3, lambda: _fill(np, out, 0, 0x1234_5678_9ABC_DEF0, 15))
    print(
        f"generation: {count:,} entries        {seconds / count * 1e9:9.2f} ns/entry (target <= 12)"
    )
    return {"entries": count, "ns_per_entry": seconds / count * 1e9}


def bench_cpu_stage(sizes: list[int]) -> list[dict[str, Any]]:
    threads = os.cpu_count() or 1
    print(
        "CPU stage: one whole stage (generate A and B, GEMM, canonicalise, hash rows, tree) "
        "vs bare A @ B into the same buffer"
    )
    print(
        f"  {'m=n=k':>6} {'bare GEMM':>10} {'stage':>10} {'ratio':>7} "
        f"{'1-thread':>10} {'ratio':>7} {'GFLOP/s':>8}"
    )
    rows: list[dict[str, Any]] = []
    for size in sizes:
        params = ChallengeParams(m=size, n=size, k=size, v=15, stages=1)
        key = stage_key(SEED, BINDING, 0)
        space = Workspace(params)
        compute_stage(0, key, space)  # warm the buffers
        repeats = 5 if size <= 1024 else 3
        bare = best_of(repeats, lambda: np.matmul(space.a, space.b, out=space.c))
        with ThreadPoolExecutor(threads) as pool:
            full = best_of(
                repeats, lambda: build_levels(compute_stage(0, key, space, pool, threads)[1])
            )
        single = best_of(repeats, lambda: build_levels(compute_stage(0, key, space)[1]))
        print(
            f"  {size:>6} {bare * 1e3:8.1f}ms {full * 1e3:8.1f}ms {full / bare:7.2f} "
            f"{single * 1e3:8.1f}ms {single / bare:7.2f} {params.flops / full / 1e9:8.1f}"
        )
        rows.append(
            {
                "size": size,
                "threads": threads,
                "bare_ms": bare * 1e3,
                "stage_ms": full * 1e3,
                "ratio": full / bare,
                "one_thread_ms": single * 1e3,
                "one_thread_ratio": single / bare,
                "gflops": params.flops / full / 1e9,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, python {platform.python_version()}"
    )
    figures = {
        "quick": args.quick,
        "verifier": bench_verifier(args.quick),
        "generation": bench_generation(),
        "cpu_stage": bench_cpu_stage([256, 512, 1024] if args.quick else [256, 1024, 2048, 4096]),
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
