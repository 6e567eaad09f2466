"""Scoring and weights (SPEC 5) as pure functions of stored observations.

Nothing here reads a clock, a database or the chain: the caller passes the observations and
``now`` (timezone-aware), so any score can be recomputed and explained later. The one-call entry
is :func:`compute_weights`; the building blocks are public so the validator can show each step.
See ``docs/scoring.md`` for the formulas and a worked example.
"""

from byteleap.scoring.availability import (
    DEFAULT_BUCKET_SECONDS,
    VERIFIED_WITHIN_HOURS,
    MinerAvailability,
    availability_bucket_range,
    availability_coverage,
    availability_from_counts,
    availability_from_observations,
    bucket_index,
    bucket_start,
    count_availability,
    hour_index,
    hour_start,
    verification_since,
    worker_coverage,
)
from byteleap.scoring.challenge import (
    ChallengeScores,
    ChallengeWindow,
    GpuScore,
    challenge_scores,
    challenge_window,
    challenge_windows,
    earliest_challenge_needed,
    excuses_allowed,
    gpu_perf,
)
from byteleap.scoring.explain import MinerExplanation, format_explanation
from byteleap.scoring.leases import MinerRevenue, lease_revenue
from byteleap.scoring.observations import (
    OUR_FAILURES,
    AvailabilityCount,
    AvailabilityObservation,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    LeaseUsage,
    is_ours,
)
from byteleap.scoring.ownership import GpuConflict, GpuOwnership, resolve_gpu_ownership
from byteleap.scoring.params import ScoringParams
from byteleap.scoring.weights import WeightResult, compute_weights, shares

__all__ = [
    "DEFAULT_BUCKET_SECONDS",
    "OUR_FAILURES",
    "VERIFIED_WITHIN_HOURS",
    "AvailabilityCount",
    "AvailabilityObservation",
    "ChallengeObservation",
    "ChallengeScores",
    "ChallengeWindow",
    "GpuClaim",
    "GpuConflict",
    "GpuOwnership",
    "GpuScore",
    "LeaseInterval",
    "LeaseUsage",
    "MinerAvailability",
    "MinerExplanation",
    "MinerRevenue",
    "ScoringParams",
    "WeightResult",
    "availability_bucket_range",
    "availability_coverage",
    "availability_from_counts",
    "availability_from_observations",
    "bucket_index",
    "bucket_start",
    "challenge_scores",
    "challenge_window",
    "challenge_windows",
    "compute_weights",
    "count_availability",
    "earliest_challenge_needed",
    "excuses_allowed",
    "format_explanation",
    "gpu_perf",
    "hour_index",
    "hour_start",
    "is_ours",
    "lease_revenue",
    "resolve_gpu_ownership",
    "shares",
    "verification_since",
    "worker_coverage",
]
