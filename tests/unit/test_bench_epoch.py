"""bench/epoch.py at a tiny size: 2 miners x 3 workers x 8 GPUs, no database, tiny unit shapes.

The real ``Challenger.run_epoch`` dispatches through the real ``MinerClient`` to the stub miners'
process; every request must arrive once, every challenge must come back as a record, and the
answers (sent at once) must be judged in time. The figures are not asserted on beyond being sane:
timings belong in docs/benchmarks.md, not in tests.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bench.epoch import measure
from bench.epoch_report import report
from bench.epoch_world import EpochSettings
from byteleap.challenge.params import ChallengeParams

SETTINGS = EpochSettings(
    miners=2,
    workers_per_miner=3,
    commit_sample=2,
    store_sample=2,
    reveal_sample=1,
    verify_repeats=1,
    answer_after_s=0.05,
    unit_params=ChallengeParams(m=64, n=64, k=64, v=15, stages=20),
)


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    # a loop of its own in another thread: never the one pytest-asyncio gives async tests
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, measure(SETTINGS)).result()


def test_every_request_arrives_and_every_record_comes_back(figures: dict[str, Any]) -> None:
    d = figures["dispatch"]
    assert d["miners"] == d["requests_arrived"] == d["distinct_receivers"] == 2
    assert d["challenges_in_requests"] == d["records_received"] == 6
    assert d["record_codes"] == {"unavailable": 6}
    # answered at once, so in time: excused, never a timeout
    assert d["verdicts"] == {"excused": 6 * 8}
    assert d["log_events"]["challenge_closed"] == 6
    for key in ("arrival_spread_s", "send_spread_s", "challenger_spread_s", "connect_s"):
        assert d[key] >= 0, key
    assert 0 <= d["epoch_start_to_first_send_s"] <= d["epoch_start_to_last_arrival_s"]
    assert d["first_send_to_last_record_s"] >= d["answer_after_s"] > 0
    assert d["request_bytes"] > 0 and d["run_epoch_cpu_s"] > 0


def test_the_planner_challenges_every_gpu(figures: dict[str, Any]) -> None:
    p = figures["planning"]
    assert p["planned_workers"] == 6 and p["planned_gpus"] == 48 and p["skipped"] == 0
    assert p["read_s"] is None and figures["storing"] is None  # no database


def test_unit_costs_are_measured_on_real_evidence(figures: dict[str, Any]) -> None:
    u = figures["units"]
    assert (u["m"], u["stages"], u["gpus_per_worker"]) == (64, 20, 8)
    assert u["commit_sample"] == 2 and u["commit_check_cpu_ms"] > 0
    assert u["commit_record_bytes"] > 8 * 20 * 32  # every GPU's roots, signed
    # the exact check really checked r x s x e entries of an honest reveal
    assert u["checked_entries"] == u["sample_stages"] * u["sample_rows"] * u["sample_columns"]
    assert u["exact_cpu_ms"] > 0 and u["merkle_cpu_ms"] > 0
    assert u["reveal_response_bytes"] > 8 * 4 * 16 * 64 * 4  # 8 GPUs x r x s rows of n int32
    assert u["store"] is None
    assert 0 < u["budget"]["fraction"] <= 1


def test_the_epoch_adds_up_and_prints(
    figures: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    e = figures["epoch"]
    parts = [r["cpu_s"] for r in e["rows"] if r["cpu_s"] is not None]
    assert e["total_cpu_s"] == pytest.approx(sum(parts))
    assert e["received_bytes"] == e["commit_bytes"] + e["reveal_bytes"] > 0
    report(figures)
    out = capsys.readouterr().out
    assert "arrival spread at the miners" in out
    assert "CPU seconds per 600-s epoch" in out
