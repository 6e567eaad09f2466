"""``python -m bench`` writes the benchmarks page, and one failing benchmark does not stop it.

Only the cheap challenge benchmark runs for real (``--quick``, a few seconds); the figures
themselves are not asserted on (timings belong in the page, not in tests), only the page's shape.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_quick_run_of_one_benchmark_writes_the_machine_and_its_tables(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    done = run_bench("--quick", "--only", "challenge", "--output", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()

    assert "## Machine" in text
    assert "| CPU |" in text and "| NumPy |" in text and "| Python |" in text
    assert "`--quick` run" in text
    assert "## Challenge core (`bench/challenge.py`)" in text
    assert "| m = n = k | bare GEMM |" in text
    for size in (256, 512, 1024):
        assert f"\n| {size} | " in text
    # the targets table judged what --quick measured and left the full-size ones open
    assert "| `challenge` | NumPy entry generation: ≤ 12 ns/entry |" in text
    assert (
        "| `challenge` | CPU stage / bare GEMM at 4096³: ≤ 1.25 | 4096³ not run | not measured |"
        in (text)
    )
    # --only: no other benchmark ran, but the hand-measured figures are kept
    assert "\n## Miner hub" not in text and "\n## Validator storage" not in text
    assert "## Earlier figures" in text and "36.3 ms" in text
    assert "$" not in text.replace("$ ", "")  # every template placeholder was filled


def test_a_failed_benchmark_is_reported_and_the_page_still_written(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    # no benchmark starts, let alone finishes, within 10 ms: the runner must kill it
    done = run_bench("--quick", "--only", "leases", "--timeout", "0.01", "--output", str(page))
    assert done.returncode == 1
    text = page.read_text()
    assert "## Machine" in text
    assert "## Leases (`bench/leases.py`)" in text
    assert "**Failed** after" in text and "timed out after 0 s" in text
    assert "| `leases` | its targets | failed | not measured |" in text
