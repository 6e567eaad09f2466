"""The devnet's final word: a table for people, JSON for scripts, and whether it went as it must.

The JSON (``byteleap devnet --json``, on stdout)::

    {"miners": [{"uid": 1, "hotkey": "5F...", "cheater": false, "cheat": null,
                 "verified": 6, "failed": 0, "failures": {}, "lease_revenue": 0.0021,
                 "challenge_share": 0.33, "lease_share": 1.0, "weight": 0.79}, ...],
     "renters": [{"renter": "renter-1", "lease_id": "lease-...", "miner_uid": 1,
                  "job_id": "job-...", "exit_code": 0, ...}],
     "weights_block": 212, "duration_s": 48.3}

``failed`` counts fraud and timeouts; ``failures`` splits them by type (a ``FraudReason`` value
such as ``wrong_entry``, or ``timeout``). ``lease_revenue``, ``challenge_share`` and
``lease_share`` are the validator's own figures for the reported weight vector (``null`` when its
explanation could not be read). ``weight`` is the miner's share of the validator's weight vector on
the devchain (the u16 values normalised to sum 1). ``renters`` lists what each simulated renter
did (:meth:`neurons.devnet.renters.RenterOutcome.to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from neurons.devnet.observe import Snapshot

#: honest weights must sum to 1 within this
WEIGHT_TOLERANCE = 1e-6


def final_report(
    snap: Snapshot, *, duration_s: float, renters: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    return {
        "miners": [
            {
                "uid": m.uid,
                "hotkey": m.hotkey,
                "cheater": m.cheat is not None,
                "cheat": m.cheat.value if m.cheat is not None else None,
                "verified": m.verified,
                "failed": m.failed,
                "failures": dict(m.failures),
                "lease_revenue": m.lease_revenue,
                "challenge_share": m.challenge_share,
                "lease_share": m.lease_share,
                "weight": m.weight if m.weight is not None else 0.0,
            }
            for m in snap.miners
        ],
        "renters": [dict(r) for r in renters],
        "weights_block": snap.weights_block,
        "duration_s": round(duration_s, 1),
    }


def problems(report: dict[str, Any]) -> list[str]:
    """What went wrong with the network's verdict: a cheater kept weight or earned lease revenue,
    honest miners do not share the whole vector, an honest miner was never verified, a renter's
    job did not exit 0, or leases ran but the weights count no lease revenue. Empty when all is
    well."""
    found = []
    honest_total = 0.0
    honest_revenue = 0.0
    explained = False
    for miner in report["miners"]:
        who = f"uid {miner['uid']} ({miner['cheat'] or 'honest'})"
        revenue = miner.get("lease_revenue")
        explained = explained or revenue is not None
        if miner["cheater"]:
            if miner["weight"] > 0:
                found.append(f"cheater {who} kept weight {miner['weight']:.6f}")
            if revenue:
                found.append(f"cheater {who} earned lease revenue {revenue:.6f}")
        else:
            honest_total += miner["weight"]
            honest_revenue += revenue or 0.0
            if miner["verified"] == 0:
                found.append(f"honest {who} has no verified challenge")
    if not math.isclose(honest_total, 1.0, abs_tol=WEIGHT_TOLERANCE):
        found.append(f"honest miners' weights sum to {honest_total:.6f}, not 1")
    renters = report.get("renters") or []
    for renter in renters:
        if renter["exit_code"] != 0:
            found.append(
                f"{renter['renter']}'s job {renter['job_id']} ended {renter['job_state']} "
                f"with exit code {renter['exit_code']}"
            )
    if renters and not explained:
        found.append("the validator's explanation of the final weights could not be read")
    elif renters and honest_revenue <= 0:
        found.append(f"{len(renters)} lease(s) ran, but no honest miner has lease revenue")
    return found


def _failures(failures: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(failures.items())) or "-"


def _figure(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(report: dict[str, Any], *, names: dict[int, str] | None = None) -> Table:
    names = names or {}
    table = Table(
        title=f"byteleap devnet: weights at block {report['weights_block']} "
        f"after {report['duration_s']:.1f} s"
    )
    table.add_column("uid", justify="right")
    table.add_column("miner", no_wrap=True)
    table.add_column("hotkey", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("verified", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("failures")
    table.add_column("lease revenue", justify="right")
    table.add_column("challenge share", justify="right")
    table.add_column("lease share", justify="right")
    table.add_column("weight", justify="right", no_wrap=True)
    for m in report["miners"]:
        kind = f"[red]{m['cheat']}[/]" if m["cheater"] else "[green]honest[/]"
        table.add_row(
            str(m["uid"]),
            names.get(m["uid"], ""),
            m["hotkey"][:8] + "…",
            kind,
            str(m["verified"]),
            str(m["failed"]),
            _failures(m["failures"]),
            _figure(m.get("lease_revenue"), 6),
            _figure(m.get("challenge_share")),
            _figure(m.get("lease_share")),
            f"{m['weight']:.4f}",
        )
    return table


def render_renters(report: dict[str, Any], *, names: dict[int, str] | None = None) -> Table | None:
    """What each renter did (None without renters)."""
    renters = report.get("renters") or []
    if not renters:
        return None
    names = names or {}
    table = Table(title="renters: one lease of 1 GPU and one job each")
    for column in ("renter", "lease", "miner", "job", "state", "exit", "stdout", "cost"):
        table.add_column(column, justify="right" if column in ("exit", "cost") else "left")
    for r in renters:
        uid = r.get("miner_uid")
        table.add_row(
            r["renter"],
            r["lease_id"][:14] + "…",
            names.get(uid, str(uid)) if uid is not None else r["miner_hotkey"][:8] + "…",
            r["job_id"],
            r["job_state"],
            str(r["exit_code"]),
            r["stdout"].strip()[:60],
            f"{r['cost']:.6f}",
        )
    return table
