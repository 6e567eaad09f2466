"""Benchmark of the CuPy backend on every GPU of this host.

    python bench/gpu.py                    # both shapes on every GPU, one GPU after the other
    python bench/gpu.py --device 0 --stages 64
    python bench/gpu.py --concurrent       # also all GPUs at once, as a multi-GPU worker runs
    python bench/gpu.py --quick            # m = n = 1024: a smoke run of the script itself
    python bench/gpu.py --json out.json    # also write the figures as JSON

For each GPU and shape it prints:

* the challenge time per stage (wall clock of ``CupyBackend.run`` over ``R`` stages, divided by
  ``R``: generation, GEMM, hashing, tree, copies and the host's share between stages) against a
  bare ``A @ B`` of the same shape timed with CUDA events, and their ratio (target <= 1.10);
* the throughput ``2mnk / stage time`` in TFLOP/s and as a fraction of the GPU model's dense TF32
  peak (``byteleap.challenge.timing.peak_for``);
* the device time of each phase of one stage (CUDA events): generation of ``A`` and ``B``, GEMM,
  row hashing, Merkle tree, copy of the leaves.

Shapes: the GPU default 8192 x 8192 x 8192 and k = 65536 (both v = 15; 65536 * 225 < 2**24, so the
product stays exact). Hashing costs O(m n) and the GEMM O(m n k), so a larger k makes hashing a
smaller fraction; generation costs O((m + n) k), a fixed fraction of the GEMM at any k.

Without CuPy or a CUDA device it says so and exits 0 (``--json`` then writes
``{"available": false, ...}``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.timing import TERA, peak_for
from byteleap.errors import WorkerFailure
from workers.backends.base import Device
from workers.backends.cupy_backend import CupyBackend

SEED = bytes(range(32))


def binding_for(device: Device) -> Binding:
    return Binding(
        miner_hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        worker_pubkey=bytes(range(32)),
        gpu_uuid=device.uuid,
    )


def shapes(stages_default: int, stages_long_k: int, quick: bool) -> list[ChallengeParams]:
    side = 1024 if quick else 8192
    return [
        ChallengeParams(m=side, n=side, k=side, v=15, stages=stages_default),
        ChallengeParams(m=side, n=side, k=65536, v=15, stages=stages_long_k),
    ]


def timed_run(
    backend: CupyBackend, device: Device, params: ChallengeParams
) -> tuple[float, list[float]]:
    started = time.perf_counter()
    run = backend.run(device, binding_for(device), SEED, params, clock=time.perf_counter)
    return time.perf_counter() - started, run.stage_seconds


def bench_device(backend: CupyBackend, device: Device, params: ChallengeParams) -> dict[str, Any]:
    shape = f"{params.m} x {params.n} x {params.k}, v={params.v}, R={params.stages}"
    print(f"  {shape}")
    figures: dict[str, Any] = {
        "m": params.m, "n": params.n, "k": params.k, "v": params.v, "stages": params.stages,
    }  # fmt: skip
    try:
        bare = backend.bare_gemm_seconds(device, params, clock=time.perf_counter)
        profile = backend.profile_stage(device, params)
        backend.run(  # warm-up: kernels compiled, cuBLAS heuristics cached, buffers allocated
            device,
            binding_for(device),
            SEED,
            params.model_copy(update={"stages": 1}),
            clock=time.perf_counter,
        )
        wall, stage_seconds = timed_run(backend, device, params)
    except WorkerFailure as exc:
        print(f"    skipped: {exc}")
        return {**figures, "skipped": str(exc)}
    per_stage = wall / params.stages
    rate = params.flops_per_stage / per_stage
    peak = peak_for(device.name) or float("nan")  # a model outside the catalogue: no fraction
    own = statistics.median(stage_seconds) * 1e3
    print(
        f"    challenge per stage  {per_stage * 1e3:9.3f} ms  (wall / R; worker's median {own:.3f})"
    )
    print(f"    bare GEMM            {bare * 1e3:9.3f} ms")
    verdict = "ok" if per_stage / bare <= 1.10 else "above the 1.10 target"
    print(f"    ratio                {per_stage / bare:9.3f}     ({verdict})")
    print(f"    throughput           {rate / TERA:9.1f} TFLOP/s = {rate / peak:.1%} of the dense")
    print(f"                         TF32 peak of {peak / TERA:.1f} TFLOP/s for {device.name!r}")
    print("    one stage on the device (CUDA events):")
    phases = (
        ("generate A and B", profile.generate),
        ("GEMM", profile.gemm),
        ("hash rows", profile.hash_rows),
        ("Merkle tree", profile.merkle),
        ("copy leaves", profile.copy),
    )
    for label, seconds in phases:
        share = seconds / profile.total if profile.total else 0.0
        print(f"      {label:<18} {seconds * 1e3:9.3f} ms  {share:6.1%}")
    return {
        **figures,
        "per_stage_ms": per_stage * 1e3,
        "worker_median_ms": own,
        "bare_gemm_ms": bare * 1e3,
        "ratio": per_stage / bare,
        "tflops": rate / TERA,
        "peak_tflops": peak / TERA,
        "peak_fraction": rate / peak,
        "phases_ms": {label: seconds * 1e3 for label, seconds in phases},
    }


def bench_concurrent(
    backend: CupyBackend, devices: list[Device], params: ChallengeParams
) -> list[dict[str, Any]]:
    print(
        f"all {len(devices)} GPUs at once, {params.m} x {params.n} x {params.k}, R={params.stages}"
    )
    results: dict[str, float] = {}
    failures: list[str] = []

    def work(device: Device) -> None:
        try:
            results[device.uuid] = timed_run(backend, device, params)[0]
        except WorkerFailure as exc:
            failures.append(f"{device.uuid}: {exc}")

    threads = [threading.Thread(target=work, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows: list[dict[str, Any]] = []
    for device in devices:
        if device.uuid in results:
            rate = params.flops / results[device.uuid]
            print(f"  [{device.index}] {rate / TERA:9.1f} TFLOP/s  {device.uuid}")
            rows.append({"index": device.index, "uuid": device.uuid, "tflops": rate / TERA})
    for failure in failures:
        print(f"  failed: {failure}")
        rows.append({"failed": failure})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", type=int, action="append", help="CUDA index (repeatable)")
    parser.add_argument("--stages", type=int, default=32, help="R at 8192^3 (default 32)")
    parser.add_argument("--stages-long-k", type=int, default=8, help="R at k=65536 (default 8)")
    parser.add_argument("--concurrent", action="store_true", help="also run all GPUs at once")
    parser.add_argument("--quick", action="store_true", help="m = n = 1024: a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)

    if not CupyBackend.available():
        print("No usable CUDA GPU here (CuPy is not installed or sees no device): nothing to do.")
        if args.json:
            reason = "CuPy is not installed or sees no CUDA device"
            args.json.write_text(json.dumps({"available": False, "reason": reason}) + "\n")
        return 0
    backend = CupyBackend(devices=args.device)
    devices = backend.devices()
    params_list = shapes(args.stages, args.stages_long_k, args.quick)
    figures: dict[str, Any] = {"available": True, "quick": args.quick, "devices": []}
    for device in devices:
        memory = (device.memory_total_bytes or 0) / 2**30
        print(f"[{device.index}] {device.name}  {device.uuid}  {memory:.0f} GiB")
        runs = [bench_device(backend, device, params) for params in params_list]
        figures["devices"].append(
            {"index": device.index, "name": device.name, "uuid": device.uuid,
             "memory_gib": memory, "shapes": runs}
        )  # fmt: skip
        backend.release(device)
    if args.concurrent and len(devices) > 1:
        figures["concurrent"] = bench_concurrent(backend, devices, params_list[0])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
