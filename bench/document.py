"""docs/benchmarks.md from the benchmarks' JSON figures and the prose in bench/templates/.

The prose is static (it says what each figure means); the tables are built here from whatever the
scripts measured, so the page never shows a figure that this run did not produce, except in the
"earlier figures" section, which says where those came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.doc_common import Figures, table, template
from bench.doc_components import (
    challenge_tables,
    challenge_targets,
    gpu_tables,
    gpu_targets,
    leases_tables,
    leases_targets,
    miner_tables,
    miner_targets,
    validator_store_tables,
    validator_store_targets,
)
from bench.doc_network import (
    epoch_tables,
    epoch_targets,
    loop_stall_tables,
    loop_stall_targets,
    sybil_tables,
    sybil_targets,
)
from bench.machine import Machine
from bench.results import BenchResult, BenchStatus, Target, TargetVerdict

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
    if result.status is BenchStatus.OK and result.figures is not None:
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
        (f"`{r.name}`", "its targets", r.status.value, TargetVerdict.NOT_MEASURED.value)
        for r in silent
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
