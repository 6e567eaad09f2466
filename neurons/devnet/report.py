"""The devnet's final word: a table for people, JSON for scripts, and whether it went as it must.

The JSON (``byteleap devnet --json``, on stdout)::

    {"miners": [{"uid": 1, "hotkey": "5F...", "cheater": false, "cheat": null,
                 "verified": 6, "failed": 0, "failures": {}, "weight": 0.5}, ...],
     "weights_block": 212, "duration_s": 48.3}

``failed`` counts fraud and timeouts; ``failures`` splits them by type (a ``FraudReason`` value
such as ``wrong_entry``, or ``timeout``). ``weight`` is the miner's share of the validator's weight
vector on the devchain (the u16 values normalised to sum 1).
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from neurons.devnet.observe import Snapshot

#: honest weights must sum to 1 within this
WEIGHT_TOLERANCE = 1e-6


def final_report(snap: Snapshot, *, duration_s: float) -> dict[str, Any]:
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
                "weight": m.weight if m.weight is not None else 0.0,
            }
            for m in snap.miners
        ],
        "weights_block": snap.weights_block,
        "duration_s": round(duration_s, 1),
    }


def problems(report: dict[str, Any]) -> list[str]:
    """What went wrong with the network's verdict: a cheater kept weight, honest miners do not
    share the whole vector, or an honest miner was never verified. Empty when all is well."""
    found = []
    honest_total = 0.0
    for miner in report["miners"]:
        who = f"uid {miner['uid']} ({miner['cheat'] or 'honest'})"
        if miner["cheater"]:
            if miner["weight"] > 0:
                found.append(f"cheater {who} kept weight {miner['weight']:.6f}")
        else:
            honest_total += miner["weight"]
            if miner["verified"] == 0:
                found.append(f"honest {who} has no verified challenge")
    if not math.isclose(honest_total, 1.0, abs_tol=WEIGHT_TOLERANCE):
        found.append(f"honest miners' weights sum to {honest_total:.6f}, not 1")
    return found


def _failures(failures: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(failures.items())) or "-"


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
            f"{m['weight']:.4f}",
        )
    return table
