"""Run every benchmark, each in its own process, and write docs/benchmarks.md from their figures.

    python -m bench                       # everything (several minutes on 2 cores)
    python -m bench --quick               # smaller sizes: a smoke run of every script
    python -m bench --only miner --only leases --output /tmp/benchmarks.md

Run it from the repository root. Each script gets ``--json PATH`` and writes its figures there;
its console output passes through unchanged. A separate process per script means one that crashes,
hangs (see ``--timeout``) or finds no CUDA device costs only its own section of the page. The
validator_store benchmark needs a PostgreSQL server where it may create a scratch database:
``BYTELEAP_TEST_DATABASE_URL``, else ``postgresql://postgres@127.0.0.1:5432/postgres``.

Exit status: 0 when the page was written and no benchmark failed (a GPU benchmark that did not run
for want of a device is not a failure; missed targets are reported in the page, not here).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.document import render
from bench.machine import this_machine
from bench.results import BenchResult, BenchStatus

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Bench:
    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout_s: float


BENCHES = (
    Bench("challenge", (), ("--quick",), 1800),
    Bench("miner", (), ("--quick",), 900),
    Bench("leases", (), ("--quick",), 900),
    Bench("validator_store", (), ("--quick",), 2400),
    Bench("gpu", (), ("--quick",), 2400),
    Bench("sybil", (), ("--quick",), 900),
    Bench("epoch", (), ("--quick",), 900),
    Bench("loop_stall", (), ("--quick",), 1800),
)
NAMES = [b.name for b in BENCHES]


def run_bench(bench: Bench, *, quick: bool, workdir: Path, timeout_s: float | None) -> BenchResult:
    """Run one script with ``--json``; its stdout goes straight to ours, its stderr is teed."""
    out = workdir / f"{bench.name}.json"
    command = [
        sys.executable, str(BENCH_DIR / f"{bench.name}.py"),
        *(bench.quick if quick else bench.full), "--json", str(out),
    ]  # fmt: skip
    limit = timeout_s or bench.timeout_s
    print(f"\n==> {bench.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    # a session of its own, so a timeout also ends the helper processes it started (the miner
    # bench's hub), which would otherwise keep our end of its stderr open
    process = subprocess.Popen(
        command, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    timed_out = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
            os.killpg(process.pid, signal.SIGKILL)

    def expire() -> None:
        timed_out.set()
        kill()

    timer = threading.Timer(limit, expire)
    timer.start()
    tail: deque[str] = deque(maxlen=20)
    try:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(line)
            if line.strip():
                tail.append(line.strip())
        code = process.wait()
    except BaseException:  # Ctrl-C: the benchmark is in its own session and would carry on
        kill()
        raise
    finally:
        timer.cancel()
    seconds = time.perf_counter() - started
    if timed_out.is_set():
        return BenchResult(
            bench.name, BenchStatus.FAILED, seconds, detail=f"timed out after {limit:.0f} s"
        )
    if code != 0:
        last = tail[-1] if tail else "no message"
        return BenchResult(
            bench.name, BenchStatus.FAILED, seconds, detail=f"exit status {code}: `{last}`"
        )
    try:
        figures = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        return BenchResult(
            bench.name, BenchStatus.FAILED, seconds, detail=f"no figures written ({exc})"
        )
    if bench.name == "gpu" and not figures.get("available", False):
        reason = figures.get("reason", "CuPy sees no CUDA device")
        return BenchResult(
            bench.name, BenchStatus.NOT_RUN, seconds, figures, f"no CUDA device ({reason})"
        )
    return BenchResult(bench.name, BenchStatus.OK, seconds, figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--only", action="append", choices=NAMES, metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="the page to write (docs/benchmarks.md)"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds per benchmark (default: each its own)"
    )
    args = parser.parse_args(argv)

    chosen = [b for b in BENCHES if not args.only or b.name in args.only]
    with tempfile.TemporaryDirectory(prefix="byteleap-bench-") as tmp:
        results = [
            run_bench(b, quick=args.quick, workdir=Path(tmp), timeout_s=args.timeout)
            for b in chosen
        ]
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = render(results, this_machine(ROOT), date=date, quick=args.quick)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_text(page)
    partial.replace(args.output)

    print(f"\n==> wrote {args.output}")
    for r in results:
        print(f"    {r.name:<16} {r.status.value:<8} {r.seconds:7.1f} s  {r.detail}")
    return 1 if any(r.status is BenchStatus.FAILED for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
