"""The devnet's final word: a table for people, JSON for scripts, and whether it went as it must.

The JSON (``byteleap devnet --json``, on stdout)::

    {"miners": [{"uid": 1, "hotkey": "5F...", "cheater": false, "cheat": null, "devices": 2,
                 "verified": 6, "failed": 0, "failures": {}, "lease_revenue": 0.0021,
                 "challenge_share": 0.33, "lease_share": 1.0, "weight": 0.79}, ...],
     "renters": [{"renter": "renter-1", "lease_id": "lease-...", "miner_uid": 1,
                  "job_id": "job-...", "exit_code": 0, ...}],
     "validators": [{"name": "validator", "hotkey": "5C...", "uid": 0, "stake": 10000.0,
                     "weights_block": 212, "weights": {"1": 0.79, "2": 0.21},
                     "lease_shares": {"1": 1.0, "2": 0.0}}, ...],
     "agreement": 0.998, "colluders": [],
     "weights_block": 212, "duration_s": 48.3}

``devices`` counts the devices the miner's workers claim. ``failed`` counts fraud and timeouts;
``failures`` splits them by type (a ``FraudReason`` value such as ``wrong_entry``, or
``timeout``). ``lease_revenue``, ``challenge_share`` and ``lease_share`` are the validator's own
figures for the reported weight vector (``null`` when its explanation could not be read).
``weight`` is the miner's share of the validator's weight vector on the devchain (the u16 values
normalised to sum 1). ``renters`` lists what each simulated renter did
(:meth:`devnet.renters.RenterOutcome.to_dict`). The miners' figures are the first
validator's; ``validators`` lists every validator's own vector (weights by uid, and the lease
shares of its explanation), and ``agreement`` is the smallest cosine similarity of any two of
those vectors (:func:`agreement`; ``null`` with one validator). ``colluders`` lists each
receipt_mint cheater's colluding validator: its stake, its share of all validators' stake, and the
leases and receipts it made (:func:`devnet.colluder.read_ledger`).

The verdict (:func:`checks`) depends on the cheat:

- a **fraud** mode (fake_rows, skipped_stages, copied_roots, phantom_gpu): weight 0 and no lease
  revenue;
- a **model** mode (cpu_as_gpu, ambiguous_model): weight 0, and never leased (no renter got it,
  no lease revenue);
- **sybil**: it does real work on one shared device, so it may earn, but each sybil miner's
  weight must stay at or below the smallest honest miner's weight *per device*, plus
  :data:`SYBIL_TOLERANCE`. Two claims on one device must not earn more than one honest device;
- **late_excuse**: weight 0, no lease revenue, and its failures are timeouts only (at least one):
  an excuse after the deadline is a timeout;
- **phantom_busy**: weight at most the smallest honest miner's weight per device (it has one
  real device, its companion), plus :data:`BOUND_TOLERANCE`: busy devices earn nothing and do not
  lift its availability;
- **receipt_mint**: in every validator's explanation, its lease share is at most its colluder's
  share of all validators' stake, plus :data:`BOUND_TOLERANCE`; and the colluder did mint
  receipts that bill something (else the check would prove nothing);
- honest miners: each verified at least once, and their weights sum to 1 (the fraud and model
  cheaters have none; the weight of the sybils, phantom_busy and receipt_mint miners is then a
  part of it);
- with two validators or more: their :func:`agreement` is at least :data:`AGREEMENT_TARGET`.

With renters, every job must exit 0 and some honest miner must have lease revenue.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from devnet.observe import Snapshot, ValidatorView
from devnet.report_checks import checks, figure


def cosine(a: Mapping[Any, float], b: Mapping[Any, float]) -> float:
    """The cosine similarity of two weight vectors keyed by uid, over the union of their uids
    (a uid missing from one counts 0 there). Two zero vectors are alike (1); a zero vector and
    any other are not (0)."""
    uids = set(a) | set(b)
    dot = sum(a.get(uid, 0.0) * b.get(uid, 0.0) for uid in uids)
    norm_a = math.sqrt(sum(a.get(uid, 0.0) ** 2 for uid in uids))
    norm_b = math.sqrt(sum(b.get(uid, 0.0) ** 2 for uid in uids))
    if norm_a == 0.0 or norm_b == 0.0:
        return 1.0 if norm_a == norm_b else 0.0
    return max(-1.0, min(1.0, dot / (norm_a * norm_b)))


def agreement(vectors: Sequence[Mapping[Any, float]]) -> float | None:
    """The smallest pairwise :func:`cosine` of the validators' vectors; None with fewer than
    two (nothing to agree with)."""
    if len(vectors) < 2:
        return None
    return min(cosine(a, b) for a, b in itertools.combinations(vectors, 2))


def final_report(
    snap: Snapshot,
    *,
    duration_s: float,
    renters: Sequence[Mapping[str, Any]] = (),
    validators: Sequence[ValidatorView] = (),
    colluders: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    agreed = agreement([v.weights for v in validators])
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
                "excused": m.excused,
                "failures": dict(m.failures),
                "lease_revenue": m.lease_revenue,
                "challenge_share": m.challenge_share,
                "lease_share": m.lease_share,
                "weight": m.weight if m.weight is not None else 0.0,
            }
            for m in snap.miners
        ],
        "renters": [dict(r) for r in renters],
        "validators": [v.to_dict() for v in validators],
        "agreement": None if agreed is None else round(agreed, 6),
        "colluders": [dict(c) for c in colluders],
        "weights_block": snap.weights_block,
        "duration_s": round(duration_s, 1),
    }


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
    validators = report.get("validators") or []
    if len(validators) < 2:
        table.add_column("weight", justify="right", no_wrap=True)
    else:
        # every validator's own vector, side by side; the figures before are the first one's
        for v in validators:
            table.add_column(f"weight ({v['name']})", justify="right", no_wrap=True)
        table.caption = (
            f"agreement (smallest pairwise cosine of the {len(validators)} vectors): "
            f"{figure(report.get('agreement'))}"
        )
    for m in report["miners"]:
        kind = f"[red]{m['cheat']}[/]" if m["cheater"] else "[green]honest[/]"
        if len(validators) < 2:
            weights = [f"{m['weight']:.4f}"]
        else:
            weights = [f"{v['weights'].get(str(m['uid']), 0.0):.4f}" for v in validators]
        table.add_row(
            str(m["uid"]),
            names.get(m["uid"], ""),
            m["hotkey"][:8] + "…",
            kind,
            str(m.get("devices", "-")),
            str(m["verified"]),
            str(m["failed"]),
            _failures(m["failures"]),
            figure(m.get("lease_revenue"), 6),
            figure(m.get("challenge_share")),
            figure(m.get("lease_share")),
            *weights,
        )
    return table


def render_validators(report: Mapping[str, Any]) -> Table | None:
    """Every validator and colluding validator: stake, share of the stake, its vector's block
    and what a colluder minted (None with one validator and no colluder)."""
    validators = report.get("validators") or []
    colluders = report.get("colluders") or []
    if len(validators) < 2 and not colluders:
        return None
    total = sum(float(v["stake"]) for v in validators) + sum(float(c["stake"]) for c in colluders)
    table = Table(title="validators: each sets its own weights from its own evidence")
    for column in ("validator", "uid", "hotkey", "stake", "stake share", "weights at", "minted"):
        table.add_column(column, justify="right" if column in ("uid", "stake") else "left")
    for v in validators:
        table.add_row(
            v["name"],
            str(v["uid"]),
            v["hotkey"][:8] + "…",
            f"{v['stake']:,.0f}",
            f"{float(v['stake']) / total:.4f}" if total else "-",
            f"block {v['weights_block']}" if v.get("weights_block") is not None else "-",
            "-",
        )
    for c in colluders:
        table.add_row(
            f"[red]{c['name']}[/] (colludes with uid {c.get('miner_uid')})",
            str(c["uid"]),
            c["hotkey"][:8] + "…",
            f"{c['stake']:,.0f}",
            f"{c['stake_share']:.4f}",
            "-",
            f"{c.get('leases', 0)} lease(s), {c.get('receipts', 0)} receipts, "
            f"{c.get('billed_gpu_s', 0)} GPU-s",
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
