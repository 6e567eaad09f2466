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

**Only verified capacity counts** (SPEC 5.5). Given verification information, a worker's online
GPUs count in a bucket only when the worker had a verified challenge in the bucket's hour or in
one of the :data:`VERIFIED_WITHIN_HOURS` (24) hours before it, or when a lease this validator
knows of (its own, or from receipts) covers the bucket. The rule is per *worker*: in a covered
bucket all the GPUs it reported healthy count, in any other bucket none do (they are reported as
``unverified_gpu_buckets``). The denominator is unchanged, so capacity that is never verified
(a phantom worker kept busy) only lowers the multiplier. Hours are whole UTC hours counted from
the Unix epoch (:func:`hour_index`); :func:`worker_coverage` turns a worker's verified hours and
leases into the bucket ranges that count, and storage uses the same function.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from byteleap.aliases import WorkerRef
from byteleap.scoring.observations import (
    AvailabilityCount,
    AvailabilityObservation,
    LeaseInterval,
    require_aware,
)
from byteleap.scoring.params import ScoringParams

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_BUCKET_SECONDS = 300
HOUR = timedelta(hours=1)
HOUR_SECONDS = 3600
#: a bucket counts when its worker was verified in the bucket's hour or this many hours before
VERIFIED_WITHIN_HOURS = 24

#: ``[first, stop)`` bucket indexes, sorted, disjoint and not touching
BucketRanges = tuple[tuple[int, int], ...]


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


def hour_index(when: datetime) -> int:
    """Whole UTC hours since the Unix epoch: the hour ``when`` falls in."""
    require_aware("when", when)
    return (when - EPOCH) // HOUR


def hour_start(index: int) -> datetime:
    """The UTC instant hour ``index`` starts at (the truncated hour)."""
    return EPOCH + index * HOUR


def verification_since(now: datetime, params: ScoringParams) -> datetime:
    """The oldest instant a verification can count from for the horizon ending at ``now``: the
    start of the hour :data:`VERIFIED_WITHIN_HOURS` before the hour of the horizon's first
    bucket. Load verified hours from here on."""
    first, _ = availability_bucket_range(now, params)
    first_hour = hour_index(bucket_start(first, params.bucket_seconds))
    return hour_start(first_hour - VERIFIED_WITHIN_HOURS)


def worker_coverage(
    hours: Iterable[int],
    leases: Iterable[LeaseInterval],
    params: ScoringParams,
    now: datetime,
) -> BucketRanges:
    """The buckets of the horizon in which one worker's online GPUs count.

    ``hours`` are the hour indexes (:func:`hour_index`) in which the worker had a verified
    challenge; a bucket is covered when its start lies in such an hour or in one of the 24
    hours after it.
    ``leases`` are the worker's known lease intervals; a bucket is covered when it overlaps one
    (an open lease runs to ``now``). Returns merged ``[first, stop)`` bucket ranges inside the
    horizon.
    """
    first, stop = availability_bucket_range(now, params)
    size = params.bucket_seconds
    ranges: list[tuple[int, int]] = []
    island: list[int] | None = None  # [first hour, last hour] of a run of covered hours
    for h in sorted(set(hours)):
        if island is not None and h <= island[1] + VERIFIED_WITHIN_HOURS + 1:
            island[1] = h
            continue
        if island is not None:
            ranges.append(_hours_to_buckets(island[0], island[1], size))
        island = [h, h]
    if island is not None:
        ranges.append(_hours_to_buckets(island[0], island[1], size))
    bucket = timedelta(seconds=size)
    for iv in leases:
        end = now if iv.end is None else min(iv.end, now)
        if end <= iv.start:
            continue
        ranges.append(((iv.start - EPOCH) // bucket, -((EPOCH - end) // bucket)))
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in ranges:
        lo, hi = max(lo, first), min(hi, stop)
        if lo >= hi:
            continue
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _hours_to_buckets(first_hour: int, last_hour: int, bucket_seconds: int) -> tuple[int, int]:
    """Buckets whose start lies in ``[first_hour, last_hour + VERIFIED_WITHIN_HOURS]``."""
    begin = first_hour * HOUR_SECONDS
    end = (last_hour + VERIFIED_WITHIN_HOURS + 1) * HOUR_SECONDS
    return -(-begin // bucket_seconds), -(-end // bucket_seconds)


def availability_coverage(
    verified_hours: Mapping[WorkerRef, Iterable[datetime]],
    lease_intervals: Iterable[LeaseInterval],
    params: ScoringParams,
    now: datetime,
) -> dict[WorkerRef, BucketRanges]:
    """:func:`worker_coverage` of every worker that has verified hours or leases.

    ``verified_hours`` maps ``(miner_hotkey, worker_id)`` to the instants (any instant within
    the hour will do, usually the truncated hour) at which it had a verified challenge.
    """
    leases: dict[WorkerRef, list[LeaseInterval]] = {}
    for iv in lease_intervals:
        leases.setdefault((iv.miner_hotkey, iv.worker_id), []).append(iv)
    out: dict[WorkerRef, BucketRanges] = {}
    for key in set(verified_hours) | set(leases):
        hours = [hour_index(at) for at in verified_hours.get(key, ())]
        ranges = worker_coverage(hours, leases.get(key, ()), params, now)
        if ranges:
            out[key] = ranges
    return out


def covered(ranges: BucketRanges, index: int) -> bool:
    """Whether bucket ``index`` lies in one of ``ranges``."""
    i = bisect_right(ranges, index, key=lambda r: r[0]) - 1
    return i >= 0 and index < ranges[i][1]


@dataclass(frozen=True, slots=True)
class MinerAvailability:
    """One miner's availability and its parts."""

    miner_hotkey: str
    availability: float
    online_gpu_buckets: int
    possible_gpu_buckets: int
    #: per worker, sorted by worker id
    workers: tuple[AvailabilityCount, ...]
    #: GPU-buckets reported healthy but not counted: no verification within 24 h, no lease
    unverified_gpu_buckets: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "availability": self.availability,
            "online_gpu_buckets": self.online_gpu_buckets,
            "possible_gpu_buckets": self.possible_gpu_buckets,
            "unverified_gpu_buckets": self.unverified_gpu_buckets,
            "workers": [
                {
                    "worker_id": w.worker_id,
                    "gpus": w.gpus,
                    "online_buckets": w.online_buckets,
                    "online_gpu_buckets": w.gpu_buckets,
                    "unverified_gpu_buckets": w.unverified_gpu_buckets,
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
            unverified_gpu_buckets=sum(w.unverified_gpu_buckets for w in ordered),
        )
    return result


def count_availability(
    observations: Iterable[AvailabilityObservation],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
    verified_hours: Mapping[WorkerRef, Iterable[datetime]] | None = None,
    lease_intervals: Iterable[LeaseInterval] = (),
) -> list[AvailabilityCount]:
    """Aggregate raw polls into the per-worker counts :func:`availability_from_counts` takes.

    Polls outside the horizon are ignored. In a bucket with several healthy polls the largest
    healthy GPU count counts; unhealthy polls still raise the worker's ``gpus``.

    With ``verified_hours`` (per worker; see :func:`availability_coverage`) a healthy bucket
    counts only when the worker was verified within 24 hours or a lease in ``lease_intervals``
    covers it; the other healthy GPU-buckets become ``unverified_gpu_buckets``. Without it
    (``None``: no verification information) every healthy bucket counts.
    """
    allowed = None if miners is None else frozenset(miners)
    coverage = (
        None
        if verified_hours is None
        else availability_coverage(verified_hours, lease_intervals, params, now)
    )
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
        online = sum(buckets.values())
        if coverage is None:
            counted = online
        else:
            ranges = coverage.get(key, ())
            counted = sum(g for index, g in buckets.items() if covered(ranges, index))
        counts.append(
            AvailabilityCount(
                miner_hotkey=key[0],
                worker_id=key[1],
                gpus=max_gpus[key],
                online_buckets=len(buckets),
                online_gpu_buckets=counted,
                unverified_gpu_buckets=online - counted,
            )
        )
    return counts


def availability_from_observations(
    observations: Iterable[AvailabilityObservation],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
    verified_hours: Mapping[WorkerRef, Iterable[datetime]] | None = None,
    lease_intervals: Iterable[LeaseInterval] = (),
) -> dict[str, MinerAvailability]:
    """Availability per miner from raw polls (or stored buckets) in the horizon; the
    verification rule applies as in :func:`count_availability`."""
    counts = count_availability(
        observations,
        params,
        now,
        miners=miners,
        verified_hours=verified_hours,
        lease_intervals=lease_intervals,
    )
    return availability_from_counts(counts, params)
