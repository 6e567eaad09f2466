"""The devnet's final word: a table for people, JSON for scripts, and whether it went as it must.

The JSON (``byteleap devnet --json``, on stdout)::

    {"miners": [{"uid": 1, "hotkey": "5F...", "cheater": false, "cheat": null, "devices": 2,
                 "verified": 6, "failed": 0, "failures": {}, "lease_revenue": 0.0021,
                 "challenge_share": 0.33, "lease_share": 1.0, "weight": 0.79}, ...],
     "renters": [{"renter": "renter-1", "lease_id": "lease-...", "miner_uid": 1,
                  "job_id": "job-...", "exit_code": 0, ...}],
     "weights_block": 212, "duration_s": 48.3}

``devices`` counts the devices the miner's workers claim. ``failed`` counts fraud and timeouts;
``failures`` splits them by type (a ``FraudReason`` value such as ``wrong_entry``, or
``timeout``). ``lease_revenue``, ``challenge_share`` and ``lease_share`` are the validator's own
figures for the reported weight vector (``null`` when its explanation could not be read).
``weight`` is the miner's share of the validator's weight vector on the devchain (the u16 values
normalised to sum 1). ``renters`` lists what each simulated renter did
(:meth:`neurons.devnet.renters.RenterOutcome.to_dict`).

The verdict (:func:`checks`) depends on the cheat:

- a **fraud** mode (fake_rows, skipped_stages, copied_roots, phantom_gpu): weight 0 and no lease
  revenue;
- a **model** mode (cpu_as_gpu, ambiguous_model): weight 0, and never leased (no renter got it,
  no lease revenue);
- **sybil**: it does real work on one shared device, so it may earn, but each sybil miner's
  weight must stay at or below the smallest honest miner's weight *per device*, plus
  :data:`SYBIL_TOLERANCE`. Two claims on one device must not earn more than one honest device;
- honest miners: each verified at least once, and their weights sum to 1 (the fraud and model
  cheaters have none; the sybils' weight is then a part of it).

With renters, every job must exit 0 and some honest miner must have lease revenue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from neurons.devnet.cheats import FRAUD_MODES, MODEL_MODES, CheatMode
from neurons.devnet.observe import Snapshot

#: honest weights must sum to 1 within this
WEIGHT_TOLERANCE = 1e-6
#: a sybil miner may exceed the smallest honest weight per device by this much (the weights are
#: u16 shares, and a sybil's one verified claim can be as fast as an honest device)
SYBIL_TOLERANCE = 0.02


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
                "devices": m.devices,
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


@dataclass(frozen=True)
class Check:
    """One thing the network must have judged right."""

    #: what is checked, e.g. ``uid 3 (fake_rows): weight 0``
    what: str
    ok: bool
    #: the figures behind it
    detail: str
    #: what went wrong, in words (shown when not ok)
    problem: str


def _mode(miner: Mapping[str, Any]) -> CheatMode | None:
    return CheatMode(miner["cheat"]) if miner.get("cheat") else None


def _devices(miner: Mapping[str, Any]) -> int:
    return max(1, int(miner.get("devices") or 1))


def honest_weight_per_device(report: Mapping[str, Any]) -> float | None:
    """The smallest honest miner's weight per claimed device (None without honest miners)."""
    honest = [m for m in report["miners"] if not m["cheater"]]
    return min((m["weight"] / _devices(m) for m in honest), default=None)


def checks(report: Mapping[str, Any]) -> list[Check]:
    """Everything the network must have judged right, each with whether it did (see the module
    docstring)."""
    out: list[Check] = []
    honest_total = 0.0
    honest_revenue = 0.0
    explained = False
    renters = report.get("renters") or []
    leased_uids = {r.get("miner_uid"): r["renter"] for r in renters}
    per_device = honest_weight_per_device(report)
    for miner in report["miners"]:
        uid, weight = miner["uid"], miner["weight"]
        mode = _mode(miner)
        who = f"uid {uid} ({miner['cheat'] or 'honest'})"
        revenue = miner.get("lease_revenue")
        explained = explained or revenue is not None
        if mode is None:
            honest_total += weight
            honest_revenue += revenue or 0.0
            out.append(
                Check(
                    f"{who}: verified",
                    miner["verified"] > 0,
                    f"{miner['verified']} verified",
                    f"honest {who} has no verified challenge",
                )
            )
        elif mode is CheatMode.SYBIL:
            bound = (per_device or 0.0) + SYBIL_TOLERANCE
            out.append(
                Check(
                    f"{who}: weight <= honest per device",
                    weight <= bound,
                    f"{weight:.4f} over {_devices(miner)} devices <= "
                    f"{per_device or 0.0:.4f} + {SYBIL_TOLERANCE:g}",
                    f"sybil {who} weighs {weight:.6f} with {_devices(miner)} claimed devices, "
                    f"more than the smallest honest weight per device ({per_device or 0.0:.6f}) "
                    f"+ {SYBIL_TOLERANCE:g}",
                )
            )
        else:
            out.append(
                Check(
                    f"{who}: weight 0",
                    weight <= 0,
                    f"{weight:.4f}",
                    f"cheater {who} kept weight {weight:.6f}",
                )
            )
            if mode in FRAUD_MODES:
                out.append(
                    Check(
                        f"{who}: no lease revenue",
                        not revenue,
                        "-" if revenue is None else f"{revenue:.6f}",
                        f"cheater {who} earned lease revenue {revenue or 0.0:.6f}",
                    )
                )
            elif mode in MODEL_MODES:
                renter = leased_uids.get(uid)
                out.append(
                    Check(
                        f"{who}: never leased",
                        renter is None and not revenue,
                        f"leased by {renter}" if renter else f"revenue {revenue or 0.0:.6f}",
                        f"cheater {who} was leased by {renter}"
                        if renter
                        else f"cheater {who} earned lease revenue {revenue or 0.0:.6f}",
                    )
                )
    sybil_total = sum(m["weight"] for m in report["miners"] if _mode(m) is CheatMode.SYBIL)
    expected_honest = 1.0 - sybil_total
    label = "honest weights sum to 1" if not sybil_total else "honest + sybil weights sum to 1"
    out.append(
        Check(
            label,
            math.isclose(honest_total, expected_honest, abs_tol=WEIGHT_TOLERANCE),
            f"{honest_total:.6f}" + (f" + {sybil_total:.6f}" if sybil_total else ""),
            f"honest miners' weights sum to {honest_total:.6f}, not "
            + ("1" if not sybil_total else f"1 - {sybil_total:.6f} (the sybils')"),
        )
    )
    for renter in renters:
        out.append(
            Check(
                f"{renter['renter']}: job exited 0",
                renter["exit_code"] == 0,
                f"{renter['job_state']}, exit code {renter['exit_code']}",
                f"{renter['renter']}'s job {renter['job_id']} ended {renter['job_state']} "
                f"with exit code {renter['exit_code']}",
            )
        )
    if renters and not explained:
        out.append(
            Check(
                "lease revenue counted",
                False,
                "no explanation",
                "the validator's explanation of the final weights could not be read",
            )
        )
    elif renters:
        out.append(
            Check(
                "lease revenue counted",
                honest_revenue > 0,
                f"honest revenue {honest_revenue:.6f}",
                f"{len(renters)} lease(s) ran, but no honest miner has lease revenue",
            )
        )
    return out


def problems(report: Mapping[str, Any]) -> list[str]:
    """What went wrong with the network's verdict (the failed :func:`checks`): a cheater kept
    weight or earned lease revenue, a model cheater was leased, a sybil out-earned an honest
    device, honest miners do not share the vector, an honest miner was never verified, a renter's
    job did not exit 0, or leases ran but the weights count no lease revenue. Empty when all is
    well."""
    return [c.problem for c in checks(report) if not c.ok]


def render_checks(report: Mapping[str, Any]) -> Table:
    """The verdict, one row per check."""
    table = Table(title="checks: did the network judge every miner right?")
    table.add_column("check", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("figures")
    for c in checks(report):
        table.add_row(c.what, "[green]pass[/]" if c.ok else "[bold red]FAIL[/]", c.detail)
    return table


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
    table.add_column("devices", justify="right")
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
            str(m.get("devices", "-")),
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
