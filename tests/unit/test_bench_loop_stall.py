"""bench/loop_stall.py's page section, from figures of the shape the script writes (no run here:
the script needs PostgreSQL and minutes; its timings belong in docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

from bench.document import section
from bench.results import BenchResult, BenchStatus, TargetVerdict
from bench.run_all import NAMES


def phase(longest: float) -> dict[str, float]:
    return {"samples": 400, "longest_ms": longest, "p99_ms": longest / 2, "p50_ms": 0.5,
            "over_target": int(longest > 50), "wall_s": 2.0, "cpu_s": 1.0}  # fmt: skip


def figures(*, quick: bool, after: float) -> dict[str, Any]:
    polled = 2 if quick else 16
    return {
        "quick": quick,
        "scale": {"polled_miners": polled, "workers_per_miner": 1024, "gpus_per_worker": 16,
                  "scoring_miners": 256, "scoring_workers": 8000, "challenges": 192_000},
        "limits": {"max_workers": 1024, "max_gpus_per_worker": 16,
                   "max_inventory_bytes": 4_063_488},
        "target_ms": 50.0, "period_ms": 5.0, "cores": 2, "load_before": 0.4, "load_after": 1.2,
        "inventory_bytes": 2_407_572, "postgresql": "15.4",
        "libraries": {"sqlalchemy": "2.1.9", "asyncpg": "0.32.0", "pydantic": "2.14.4"},
        "phases": {
            "idle": {"after": phase(3.0)},
            "poll": {"before": phase(1200.0), "after": phase(after)},
            "scoring": {"before": phase(1000.0), "after": phase(after / 2)},
            "both": {"before": phase(1500.0), "after": phase(after)},
        },
    }  # fmt: skip


def test_the_section_shows_before_and_after_and_judges_the_full_run() -> None:
    assert "loop_stall" in NAMES
    text, [target] = section(
        BenchResult("loop_stall", BenchStatus.OK, 60.0, figures(quick=False, after=30.0))
    )
    assert "## The event loop under the largest inventories (`bench/loop_stall.py`)" in text
    assert "| poll | 1,200.0 → **30.0 ms** |" in text
    assert "| idle (nothing runs) | 3.0 ms |" in text
    assert "$" not in text
    assert target.verdict is TargetVerdict.PASS and "30.0 ms at 16 miners" in target.measured

    _, [missed] = section(
        BenchResult("loop_stall", BenchStatus.OK, 60.0, figures(quick=False, after=80.0))
    )
    assert missed.verdict is TargetVerdict.FAIL
    _, [quick] = section(
        BenchResult("loop_stall", BenchStatus.OK, 9.0, figures(quick=True, after=30.0))
    )
    assert quick.verdict is TargetVerdict.NOT_MEASURED
