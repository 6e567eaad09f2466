"""The final weight (SPEC 5.4) and the one-call entry point :func:`compute_weights`.

::

    C_share = challenge_raw / Σ challenge_raw        (0 when the sum is 0)
    L_share = Σ_v s_v · earned(m, v) / billed(v)     (each seller's stake-share pool, SPEC 5.5)
    score   = A · (lease_weight · L_share + challenge_weight · C_share)
    weight  = score / Σ score

Sums run over the miners being scored. When every score is 0 there are no weights, and
:attr:`WeightResult.reason` says why in words an operator can act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from byteleap.scoring.availability import (
    MinerAvailability,
    availability_from_counts,
    availability_from_observations,
)
from byteleap.scoring.challenge import challenge_scores
from byteleap.scoring.explain import MinerExplanation
from byteleap.scoring.leases import SellerPool, lease_scores
from byteleap.scoring.observations import (
    AvailabilityCount,
    AvailabilityObservation,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    LeaseUsage,
    require_aware,
)
from byteleap.scoring.ownership import GpuConflict, resolve_gpu_ownership
from byteleap.scoring.params import ScoringParams


def shares(values: Mapping[str, float]) -> dict[str, float]:
    """Each value over the sum of all; all 0 when the sum is 0."""
    try:
        total = math.fsum(values.values())
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise ValueError("scoring sum overflowed: an input is absurdly large")
    if total <= 0.0:
        return dict.fromkeys(values, 0.0)
    return {key: value / total for key, value in values.items()}


@dataclass(frozen=True, slots=True)
class WeightResult:
    """Weights by hotkey, with everything needed to explain them."""

    now: datetime
    params: ScoringParams
    #: hotkey -> weight, summing to 1; empty when every score is 0
    weights: dict[str, float]
    #: hotkey -> explanation, for every miner scored
    miners: dict[str, MinerExplanation]
    #: every later claim of an already-owned GPU UUID
    conflicts: tuple[GpuConflict, ...]
    #: why there are no weights; None when there are
    reason: str | None
    #: seller hotkey -> its lease pool (stake share, billed, earned), for every seller counted
    lease_sellers: dict[str, SellerPool] = field(default_factory=dict)

    def explain(self, miner_hotkey: str) -> MinerExplanation:
        """The explanation of one miner; KeyError when it was not scored."""
        return self.miners[miner_hotkey]

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "params": self.params.model_dump(mode="json"),
            "weights": dict(self.weights),
            "reason": self.reason,
            "conflicts": [c.to_dict() for c in self.conflicts],
            "miners": {hotkey: m.to_dict() for hotkey, m in self.miners.items()},
            "lease_sellers": {hotkey: p.to_dict() for hotkey, p in self.lease_sellers.items()},
        }


def _no_weights_reason(
    hotkeys: list[str],
    availability: Mapping[str, float],
    challenge_raw: Mapping[str, float],
    revenue: Mapping[str, float],
    params: ScoringParams,
) -> str:
    if not hotkeys:
        return "no weights: there is no miner to score (no observations and no miner list)"
    available = [h for h in hotkeys if availability[h] > 0.0]
    earning = [h for h in hotkeys if revenue[h] > 0.0]
    proven = [h for h in hotkeys if challenge_raw[h] > 0.0]
    counts = (
        f"{len(hotkeys)} miners: {len(available)} with availability > 0, "
        f"{len(earning)} with lease revenue, {len(proven)} with a challenge score"
    )
    if not available:
        cause = (
            f"no miner reported a healthy worker in the last "
            f"{params.availability_horizon} (availability is 0 for all)"
        )
    elif not earning and not proven:
        cause = (
            f"no miner has lease revenue in the last {params.lease_window} or a verified "
            f"challenge in its challenge window ({params.challenge_window} of unleased time)"
        )
    elif params.challenge_weight == 0.0 and not earning:
        cause = "challenge_weight is 0 and no miner has lease revenue"
    elif params.lease_weight == 0.0 and not proven:
        cause = "lease_weight is 0 and no miner has a challenge score"
    else:
        cause = "no miner with availability > 0 has lease revenue or a challenge score"
    return f"no weights: every score is 0 because {cause} ({counts})"


def compute_weights(
    *,
    now: datetime,
    params: ScoringParams | None = None,
    challenges: Iterable[ChallengeObservation] = (),
    gpu_claims: Iterable[GpuClaim] = (),
    lease_intervals: Iterable[LeaseInterval] = (),
    lease_usage: Iterable[LeaseUsage] = (),
    availability: Iterable[AvailabilityObservation] | None = None,
    availability_counts: Iterable[AvailabilityCount] | None = None,
    miners: Iterable[str] | None = None,
    verified_hours: Mapping[tuple[str, str], Sequence[datetime]] | None = None,
    worker_verified_hours: Mapping[tuple[str, str], Iterable[datetime]] | None = None,
) -> WeightResult:
    """Score every miner and turn the scores into weights, in one pure call.

    Give availability either as raw polls (``availability``) or as per-worker counts that the
    database aggregated over the horizon (``availability_counts``), not both. With ``miners``
    (the registered hotkeys) given, exactly those are scored and every other hotkey's
    observations are ignored; otherwise every hotkey seen in any input is scored.

    Verification (SPEC 5.5): ``verified_hours`` maps ``(miner_hotkey, gpu_uuid)`` to the UTC
    hours in which that GPU had a verified challenge (``ScoringInputs.verified_hours``): the
    lease rules use it (only GPUs this validator saw verified earn). ``worker_verified_hours`` maps
    ``(miner_hotkey, worker_id)`` to the hours a worker had one: with raw polls it makes only
    verified (or leased) buckets count; counts from the database already apply the rule. Left
    out (``None``), there is no verification information and every healthy bucket counts.
    """
    require_aware("now", now)
    params = params or ScoringParams()
    if availability is not None and availability_counts is not None:
        raise ValueError("give availability or availability_counts, not both")
    miner_list = None if miners is None else sorted(set(miners))
    challenge_list = list(challenges)

    ownership = resolve_gpu_ownership(
        gpu_claims,
        challenges=challenge_list,
        miners=miner_list,
        now=now,
        claim_expiry=params.claim_expiry,
    )
    interval_list = list(lease_intervals)
    chal = challenge_scores(
        challenge_list,
        ownership=ownership,
        lease_intervals=interval_list,
        params=params,
        now=now,
        miners=miner_list,
    )
    leases = lease_scores(
        lease_usage, params, now, miners=miner_list, verified_hours=verified_hours
    )
    revenue = leases.miners
    avail: dict[str, MinerAvailability]
    if availability_counts is not None:
        avail = availability_from_counts(availability_counts, params, miners=miner_list)
    else:
        avail = availability_from_observations(
            availability or (),
            params,
            now,
            miners=miner_list,
            verified_hours=worker_verified_hours,
            lease_intervals=interval_list,
        )

    if miner_list is not None:
        hotkeys = miner_list
    else:
        seen = set(chal.gpus) | set(revenue) | set(avail)
        seen.update(iv.miner_hotkey for iv in interval_list)
        hotkeys = sorted(seen)

    raw = {h: chal.raw.get(h, 0.0) for h in hotkeys}
    money = {h: revenue[h].revenue if h in revenue else 0.0 for h in hotkeys}
    a = {h: avail[h].availability if h in avail else 0.0 for h in hotkeys}
    c_share = shares(raw)
    # each seller hands out at most its stake share of the lease pool (SPEC 5.5)
    l_share = {h: revenue[h].share if h in revenue else 0.0 for h in hotkeys}
    scores = {
        h: a[h] * (params.lease_weight * l_share[h] + params.challenge_weight * c_share[h])
        for h in hotkeys
    }
    total = math.fsum(scores.values())
    if total > 0.0:
        weights = {h: scores[h] / total for h in hotkeys}
        reason = None
    else:
        weights = {}
        reason = _no_weights_reason(hotkeys, a, raw, money, params)

    lost: dict[str, list[GpuConflict]] = {}
    for conflict in ownership.conflicts:
        lost.setdefault(conflict.claimant_hotkey, []).append(conflict)
    explanations = {
        h: MinerExplanation(
            miner_hotkey=h,
            gpus=chal.gpus.get(h, ()),
            fraud_locked_workers=chal.fraud_locked_workers.get(h, ()),
            conflicts=tuple(lost.get(h, ())),
            challenge_raw=raw[h],
            challenge_share=c_share[h],
            lease_revenue=money[h],
            lease_gpu_hours=revenue[h].gpu_hours if h in revenue else 0.0,
            lease_share=l_share[h],
            availability=a[h],
            availability_detail=avail.get(h),
            score=scores[h],
            weight=weights.get(h, 0.0),
        )
        for h in hotkeys
    }
    return WeightResult(
        now=now,
        params=params,
        weights=weights,
        miners=explanations,
        conflicts=ownership.conflicts,
        reason=reason,
        lease_sellers=leases.sellers,
    )
