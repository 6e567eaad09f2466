"""Lease revenue (SPEC 5.2): ``Σ price_per_gpu_hour × gpus × hours`` inside the lease window.

The window is ``[now - lease_window, now)``; only the part of each usage stretch inside it
counts. The input comes from receipts signed by both the selling validator and the miner, so
every validator, counting every validator's receipts, reaches the same revenue.

Usage stretches of one ``(miner_hotkey, lease_id)`` that overlap (for example a stretch per
hourly receipt plus a cumulative one, or the same receipt fetched twice) count their shared time
once: a later-starting stretch only counts from where the earlier ones ended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from byteleap.scoring.observations import LeaseUsage, require_aware
from byteleap.scoring.params import ScoringParams

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class MinerRevenue:
    """One miner's lease revenue in the window and its parts."""

    miner_hotkey: str
    revenue: float
    gpu_hours: float
    leases: int

    def to_dict(self) -> dict[str, Any]:
        return {"revenue": self.revenue, "gpu_hours": self.gpu_hours, "leases": self.leases}


def lease_revenue(
    usages: Iterable[LeaseUsage],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
) -> dict[str, MinerRevenue]:
    """Revenue per miner over ``[now - lease_window, now)``."""
    require_aware("now", now)
    allowed = None if miners is None else frozenset(miners)
    window_start = now - params.lease_window
    by_lease: dict[tuple[str, str], list[LeaseUsage]] = {}
    for usage in usages:
        if allowed is not None and usage.miner_hotkey not in allowed:
            continue
        if usage.end <= window_start or usage.start >= now:
            continue
        by_lease.setdefault((usage.miner_hotkey, usage.lease_id), []).append(usage)

    money: dict[str, list[float]] = {}
    gpu_hours: dict[str, list[float]] = {}
    leases: dict[str, int] = {}
    for (hotkey, _lease_id), stretches in by_lease.items():
        stretches.sort(key=lambda u: (u.start, u.end, u.price_per_gpu_hour, u.gpus))
        covered = window_start
        for u in stretches:
            start = max(u.start, covered)
            end = min(u.end, now)
            if end <= start:
                continue
            hours = (end - start).total_seconds() / SECONDS_PER_HOUR
            money.setdefault(hotkey, []).append(u.price_per_gpu_hour * u.gpus * hours)
            gpu_hours.setdefault(hotkey, []).append(u.gpus * hours)
            covered = end
        leases[hotkey] = leases.get(hotkey, 0) + 1

    return {
        hotkey: MinerRevenue(
            miner_hotkey=hotkey,
            revenue=math.fsum(money.get(hotkey, ())),
            gpu_hours=math.fsum(gpu_hours.get(hotkey, ())),
            leases=leases[hotkey],
        )
        for hotkey in leases
    }
