"""Why a miner got its weight: the structure behind ``byteleap-validator scores --explain UID``.

Everything here is plain data with a ``to_dict()`` that :func:`json.dumps` accepts as is, plus a
text rendering for the terminal. The CLI maps the UID to a hotkey; scoring knows only hotkeys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from byteleap.scoring.availability import MinerAvailability
from byteleap.scoring.challenge import GpuScore
from byteleap.scoring.ownership import GpuConflict

TERA = 1e12


@dataclass(frozen=True, slots=True)
class MinerExplanation:
    """Every number behind one miner's score and weight."""

    miner_hotkey: str
    #: its GPU copies, sorted by (worker_id, gpu_uuid); excluded ones included
    gpus: tuple[GpuScore, ...]
    #: workers whose challenge score is zeroed by a fraud in the window
    fraud_locked_workers: tuple[str, ...]
    #: claims of this miner that lost to an earlier claimant
    conflicts: tuple[GpuConflict, ...]
    challenge_raw: float
    challenge_share: float
    lease_revenue: float
    lease_gpu_hours: float
    lease_share: float
    availability: float
    availability_detail: MinerAvailability | None
    score: float
    weight: float

    @property
    def fraud_locked(self) -> bool:
        return bool(self.fraud_locked_workers)

    @property
    def excuse_rate(self) -> float | None:
        """The miner's own excuses over the challenges that were not the validator's fault,
        across its GPU copies' windows; None when there were none."""
        theirs = sum(g.excused_theirs for g in self.gpus)
        countable = sum(g.issued - g.excused_ours for g in self.gpus)
        return theirs / countable if countable else None

    @property
    def excused_over_budget(self) -> float:
        """The miner's excuses, over all its GPU copies, that counted as failures."""
        return sum(g.excused_over_budget for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        detail = self.availability_detail
        return {
            "miner_hotkey": self.miner_hotkey,
            "fraud_locked": self.fraud_locked,
            "fraud_locked_workers": list(self.fraud_locked_workers),
            "challenge_raw": self.challenge_raw,
            "challenge_share": self.challenge_share,
            "lease_revenue": self.lease_revenue,
            "lease_gpu_hours": self.lease_gpu_hours,
            "lease_share": self.lease_share,
            "availability": self.availability,
            "availability_detail": None if detail is None else detail.to_dict(),
            "excuse_rate": self.excuse_rate,
            "excused_over_budget": self.excused_over_budget,
            "score": self.score,
            "weight": self.weight,
            "gpus": [g.to_dict() for g in self.gpus],
            "conflicts": [c.to_dict() for c in self.conflicts],
        }


def _num(value: float | None, scale: float = 1.0, digits: int = 4) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def format_explanation(explanation: MinerExplanation) -> str:
    """A terminal-friendly rendering of one miner's explanation."""
    e = explanation
    detail = e.availability_detail
    if detail is None:
        online = "  (no inventory reports)"
    else:
        online = (
            f"  ({detail.online_gpu_buckets} of {detail.possible_gpu_buckets} GPU-buckets "
            "online and counted"
        )
        if detail.unverified_gpu_buckets:
            online += (
                f"; {detail.unverified_gpu_buckets} more online but not counted: no verified "
                "challenge within 24 h and no known lease"
            )
        online += ")"
    rate = e.excuse_rate
    lines = [
        f"miner {e.miner_hotkey}",
        f"  weight {e.weight:.6f}   score {e.score:.6f}",
        f"  availability {e.availability:.4f}{online}",
        f"  lease revenue {e.lease_revenue:.4f} over {e.lease_gpu_hours:.2f} GPU-hours"
        f"   share {e.lease_share:.4f}",
        f"  challenge raw {_num(e.challenge_raw, TERA)} TFLOP/s   share {e.challenge_share:.4f}",
        "  excuse rate "
        + ("-" if rate is None else f"{rate:.4f}")
        + f" (the miner's own excuses; {e.excused_over_budget:.2f} over the budget counted as"
        " failures)",
    ]
    if e.fraud_locked:
        lines.append(f"  FRAUD LOCKOUT on workers: {', '.join(e.fraud_locked_workers)}")
    if e.gpus:
        lines.append(
            "  worker / gpu: verified/issued (excused: ours + miner's, over budget; failed)  "
            "median TFLOP/s  success  perf"
        )
    for g in e.gpus:
        flags = []
        if g.carried_over:
            flags.append("leased: carried over")
        if g.excluded_conflict:
            flags.append("excluded: UUID owned by an earlier claimant")
        if g.fraud_locked:
            flags.append("fraud lockout")
        lines.append(
            f"    {g.worker_id} / {g.gpu_uuid}: {g.verified}/{g.issued} "
            f"({g.excused} excused: {g.excused_ours} ours + {g.excused_theirs} miner's, "
            f"{g.excused_over_budget:.2f} over budget; {g.failed} failed)  "
            f"{_num(g.median_throughput_flops, TERA, 2)}  {_num(g.success_rate)}  "
            f"{_num(g.perf, TERA, 2)}" + (f"  [{'; '.join(flags)}]" if flags else "")
        )
    for c in e.conflicts:
        lines.append(
            f"  conflict: {c.claimant_worker_id} claimed {c.gpu_uuid} at "
            f"{c.claimant_first_seen.isoformat()}, owned by {c.owner_hotkey}/{c.owner_worker_id} "
            f"since {c.owner_first_seen.isoformat()}"
        )
    return "\n".join(lines)
