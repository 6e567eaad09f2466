"""The devnet report's checks: each miner's weight against what its mode may earn, the sybil
and busy bounds, the colluder's receipts and the validators' agreement (see
:mod:`devnet.report` for what each check means and the tables)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devnet.cheat_modes import BOUNDED_MODES, FRAUD_MODES, MODEL_MODES, CheatMode

#: honest weights must sum to 1 within this
WEIGHT_TOLERANCE = 1e-6


#: a sybil miner may exceed the smallest honest weight per device by this much (the weights are
#: u16 shares, and a sybil's one verified claim can be as fast as an honest device)
SYBIL_TOLERANCE = 0.02


#: how far a phantom_busy or receipt_mint miner may exceed its bound (u16 shares, timing noise)
BOUND_TOLERANCE = 0.02
#: validators given the same evidence must agree at least this well (SPEC 5.5)
AGREEMENT_TARGET = 0.95


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
        elif mode is CheatMode.PHANTOM_BUSY:
            bound = (per_device or 0.0) + BOUND_TOLERANCE
            out.append(
                Check(
                    f"{who}: weight <= one honest device",
                    weight <= bound,
                    f"{weight:.4f} <= {per_device or 0.0:.4f} + {BOUND_TOLERANCE:g}",
                    f"phantom_busy {who} weighs {weight:.6f}, more than one honest device "
                    f"({per_device or 0.0:.6f}) + {BOUND_TOLERANCE:g}: its "
                    f"{_devices(miner) - 1} busy devices lifted it",
                )
            )
        elif mode is CheatMode.RECEIPT_MINT:
            out.extend(_receipt_mint_checks(report, miner, who))
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
            if mode is CheatMode.LATE_EXCUSE:
                failures = miner.get("failures") or {}
                timeouts = int(failures.get("timeout", 0))
                others = sorted(set(failures) - EXCUSE_AS_TIMEOUT)
                out.append(
                    Check(
                        f"{who}: late excuses are timeouts",
                        timeouts > 0 and not others and not miner["verified"],
                        f"{_failure_text(failures)}; {miner.get('excused', 0)} excused",
                        f"late_excuse {who} "
                        + (
                            f"has failures other than timeouts: {', '.join(others)}"
                            if others
                            else f"was verified {miner['verified']} times"
                            if miner["verified"]
                            else "has no timeout: no late excuse was scored as one"
                        ),
                    )
                )
            if mode in (*FRAUD_MODES, CheatMode.LATE_EXCUSE):
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
    bounded = [m for m in report["miners"] if _mode(m) in BOUNDED_MODES and m["weight"]]
    bounded_total = sum(m["weight"] for m in bounded)
    expected_honest = 1.0 - bounded_total
    kinds = "/".join(dict.fromkeys(str(m["cheat"]) for m in bounded))
    label = "honest weights sum to 1" if not bounded else f"honest + {kinds} weights sum to 1"
    whose = "the sybils'" if kinds == "sybil" else f"the {kinds} miners'"
    out.append(
        Check(
            label,
            math.isclose(honest_total, expected_honest, abs_tol=WEIGHT_TOLERANCE),
            f"{honest_total:.6f}" + (f" + {bounded_total:.6f}" if bounded else ""),
            f"honest miners' weights sum to {honest_total:.6f}, not "
            + ("1" if not bounded else f"1 - {bounded_total:.6f} ({whose})"),
        )
    )
    validators = report.get("validators") or []
    if len(validators) >= 2:
        agreed = report.get("agreement")
        out.append(
            Check(
                f"{len(validators)} validators agree",
                agreed is not None and agreed >= AGREEMENT_TARGET,
                f"min pairwise cosine {figure(agreed)} >= {AGREEMENT_TARGET:g}",
                f"the validators' weight vectors disagree: their smallest pairwise cosine "
                f"similarity is {figure(agreed, 6)}, below {AGREEMENT_TARGET:g}",
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


#: the failure types of an answer after the deadline (a timeout; or, with several validators, a
#: challenge that found the worker still "busy" holding another validator's late one)
EXCUSE_AS_TIMEOUT = frozenset({"timeout", "unexplained_busy"})


def _failure_text(failures: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(failures.items())) or "no failures"


def _receipt_mint_checks(
    report: Mapping[str, Any], miner: Mapping[str, Any], who: str
) -> list[Check]:
    """A receipt_mint miner's lease share, in every validator's explanation, is at most its
    colluder's stake share (plus the tolerance); and the colluder did mint something."""
    uid = miner["uid"]
    colluder = next((c for c in report.get("colluders") or [] if c.get("miner_uid") == uid), None)
    if colluder is None:
        return [
            Check(
                f"{who}: colluder minted receipts",
                False,
                "no colluder",
                f"receipt_mint {who} has no colluding validator in the report",
            )
        ]
    share = float(colluder["stake_share"])
    bound = share + BOUND_TOLERANCE
    seen: list[tuple[str, float | None]] = []
    for validator in report.get("validators") or []:
        shares = validator.get("lease_shares")
        value = None if shares is None else float(shares.get(str(uid), 0.0))
        seen.append((str(validator["name"]), value))
    if not seen:  # a report without the validators' vectors: the first validator's figure
        seen.append(("validator", miner.get("lease_share")))
    unread = [name for name, value in seen if value is None]
    worst_name, worst = max(
        ((name, value) for name, value in seen if value is not None),
        key=lambda item: item[1],
        default=("-", 0.0),
    )
    billed = int(colluder.get("billed_gpu_s") or 0)
    errors = colluder.get("errors") or {}
    return [
        Check(
            f"{who}: colluder minted receipts",
            billed > 0,
            f"{colluder['name']}: {colluder.get('leases', 0)} lease(s), "
            f"{colluder.get('receipts', 0)} receipts, {billed} GPU-s",
            f"{colluder['name']} minted no receipt that bills anything for {who} "
            f"(refusals: {_failure_text(errors)})",
        ),
        Check(
            f"{who}: lease share <= colluder's stake share",
            not unread and worst <= bound,
            f"max {worst:.4f} ({worst_name}) <= {share:.4f} + {BOUND_TOLERANCE:g}"
            if not unread
            else f"unread: {', '.join(unread)}",
            f"receipt_mint {who} has lease share {worst:.6f} in {worst_name}'s weights, more "
            f"than {colluder['name']}'s stake share {share:.6f} + {BOUND_TOLERANCE:g}"
            if not unread
            else f"the explanation of {', '.join(unread)}'s final weights could not be read",
        ),
    ]


def problems(report: Mapping[str, Any]) -> list[str]:
    """What went wrong with the network's verdict (the failed :func:`checks`): a cheater kept
    weight or earned lease revenue, a model cheater was leased, a sybil or a phantom_busy miner
    out-earned an honest device, a late excuse was not a timeout, minted receipts earned more
    than their colluder's stake share, honest miners do not share the vector, an honest miner was
    never verified, the validators disagree, a renter's job did not exit 0, or leases ran but
    the weights count no lease revenue. Empty when all is well."""
    return [c.problem for c in checks(report) if not c.ok]


def figure(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
