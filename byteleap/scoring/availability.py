"""The availability multiplier (SPEC 5.3) and the bucket arithmetic shared with storage.

Time is cut into buckets of ``bucket_seconds`` (5 minutes) counted from the Unix epoch:
``bucket_index(t) = floor((t - epoch) / bucket_seconds)``. The horizon is the
``availability_buckets`` (2028) *completed* buckets before the one ``now`` falls in, so the score
does not flicker while the current bucket fills. A worker is online in a bucket when it reported
healthy in it. For a miner::

    A = Σ_w online_gpu_buckets_w / (Σ_w gpus_w · availability_buckets)

where ``gpus_w`` is the most GPUs worker ``w`` reported in the horizon and
``online_gpu_buckets_w`` sums, over its online buckets, the GPUs it reported healthy. With a
steady GPU count this is the SPEC's ``Σ gpus_w · online_buckets_w / (Σ gpus_w · 2028)``; when the
count changes, capacity added during the week ramps up like a new worker, and briefly claiming
more GPUs only raises the denominator.

The database can aggregate instead of shipping every bucket: see :func:`availability_from_counts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from byteleap.scoring.observations import (
    AvailabilityCount,
    AvailabilityObservation,
    require_aware,
)
from byteleap.scoring.params import ScoringParams

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_BUCKET_SECONDS = 300


def bucket_index(when: datetime, bucket_seconds: int = DEFAULT_BUCKET_SECONDS) -> int:
    """Index of the bucket ``when`` falls in: floor of epoch seconds / ``bucket_seconds``.

    Exact (integer timedelta arithmetic, no float rounding) and correct before the epoch.
    """
    require_aware("when", when)
    if bucket_seconds < 1:
        raise ValueError("bucket_seconds must be >= 1")
    return (when - EPOCH) // timedelta(seconds=bucket_seconds)


def bucket_start(index: int, bucket_seconds: int = DEFAULT_BUCKET_SECONDS) -> datetime:
    """The UTC instant bucket ``index`` starts at."""
    return EPOCH + timedelta(seconds=index * bucket_seconds)


def availability_bucket_range(now: datetime, params: ScoringParams) -> tuple[int, int]:
    """``[first, stop)`` bucket indexes of the horizon: the completed buckets before ``now``'s."""
    stop = bucket_index(now, params.bucket_seconds)
    return stop - params.availability_buckets, stop


@dataclass(frozen=True, slots=True)
class MinerAvailability:
    """One miner's availability and its parts."""

    miner_hotkey: str
    availability: float
    online_gpu_buckets: int
    possible_gpu_buckets: int
    #: per worker, sorted by worker id
    workers: tuple[AvailabilityCount, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "availability": self.availability,
            "online_gpu_buckets": self.online_gpu_buckets,
            "possible_gpu_buckets": self.possible_gpu_buckets,
            "workers": [
                {
                    "worker_id": w.worker_id,
                    "gpus": w.gpus,
                    "online_buckets": w.online_buckets,
                    "online_gpu_buckets": w.gpu_buckets,
                }
                for w in self.workers
            ],
        }


def availability_from_counts(
    counts: Iterable[AvailabilityCount],
    params: ScoringParams,
    *,
    miners: Iterable[str] | None = None,
) -> dict[str, MinerAvailability]:
    """Availability per miner from per-worker counts aggregated over the horizon.

    Each ``(miner_hotkey, worker_id)`` must appear once, and no count may exceed the horizon's
    ``availability_buckets``: either means the aggregation was wrong, so it raises ValueError.
    """
    allowed = None if miners is None else frozenset(miners)
    horizon = params.availability_buckets
    by_miner: dict[str, dict[str, AvailabilityCount]] = {}
    for count in counts:
        if allowed is not None and count.miner_hotkey not in allowed:
            continue
        if count.online_buckets > horizon:
            raise ValueError(
                f"worker {count.worker_id!r} of {count.miner_hotkey!r}: online_buckets "
                f"{count.online_buckets} exceeds the {horizon} buckets of the horizon"
            )
        workers = by_miner.setdefault(count.miner_hotkey, {})
        if count.worker_id in workers:
            raise ValueError(
                f"worker {count.worker_id!r} of {count.miner_hotkey!r} is counted twice"
            )
        workers[count.worker_id] = count

    result: dict[str, MinerAvailability] = {}
    for hotkey, workers in by_miner.items():
        ordered = tuple(workers[w] for w in sorted(workers))
        online = sum(w.gpu_buckets for w in ordered)
        possible = sum(w.gpus for w in ordered) * horizon
        result[hotkey] = MinerAvailability(
            miner_hotkey=hotkey,
            availability=online / possible if possible else 0.0,
            online_gpu_buckets=online,
            possible_gpu_buckets=possible,
            workers=ordered,
        )
    return result


def count_availability(
    observations: Iterable[AvailabilityObservation],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
) -> list[AvailabilityCount]:
    """Aggregate raw polls into the per-worker counts :func:`availability_from_counts` takes.

    Polls outside the horizon are ignored. In a bucket with several healthy polls the largest
    healthy GPU count counts; unhealthy polls still raise the worker's ``gpus``.
    """
    allowed = None if miners is None else frozenset(miners)
    first, stop = availability_bucket_range(now, params)
    bucket = timedelta(seconds=params.bucket_seconds)
    max_gpus: dict[tuple[str, str], int] = {}
    healthy: dict[tuple[str, str], dict[int, int]] = {}
    for obs in observations:
        if allowed is not None and obs.miner_hotkey not in allowed:
            continue
        index = (obs.observed_at - EPOCH) // bucket
        if not first <= index < stop:
            continue
        key = (obs.miner_hotkey, obs.worker_id)
        if obs.gpus > max_gpus.get(key, -1):
            max_gpus[key] = obs.gpus
        if obs.healthy:
            buckets = healthy.setdefault(key, {})
            if obs.gpus > buckets.get(index, -1):
                buckets[index] = obs.gpus
    counts = []
    for key in sorted(max_gpus):
        buckets = healthy.get(key, {})
        counts.append(
            AvailabilityCount(
                miner_hotkey=key[0],
                worker_id=key[1],
                gpus=max_gpus[key],
                online_buckets=len(buckets),
                online_gpu_buckets=sum(buckets.values()),
            )
        )
    return counts


def availability_from_observations(
    observations: Iterable[AvailabilityObservation],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
) -> dict[str, MinerAvailability]:
    """Availability per miner from raw polls (or stored buckets) in the horizon."""
    return availability_from_counts(
        count_availability(observations, params, now, miners=miners), params
    )
