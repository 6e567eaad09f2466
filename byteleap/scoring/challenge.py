"""Per-GPU challenge performance and the miner's challenge raw score (SPEC 5.1).

Over a GPU's challenge window::

    allowed      = min(excused by the miner, excuse_budget * (issued - excused by us))
    success_rate = verified / (issued - excused by us - allowed)   # timeouts, fraud: failures
    perf         = median(throughput of verified) * success_rate

**The excuse budget.** An excuse (busy, unavailable, a dropped link) is the miner's word, and a
miner that could excuse freely would pick which challenges count: one card behind N claims
would answer one claim per epoch and excuse the others, and every claim would keep a full
success rate. Within the budget an excuse drops out; beyond it, it is a failure. One card
behind N >= 2 claims therefore earns at most ``1 / (1 - excuse_budget)`` times what it earns
alone (1.053 with the default 5 %); the validator's own failures (``ours``) never count.

and a miner's ``challenge_raw`` is the sum of ``perf`` over the GPUs it owns (see
:mod:`byteleap.scoring.ownership`). Nothing countable (``issued - excused == 0``) gives
``perf = 0``. One fraud by a worker zeroes the perf of all its GPUs for the window.

**Leased time does not count.** A leased worker is never challenged (SPEC 4.4), so a window that
simply ended at ``now`` would empty out during a long lease and leasing would cost the miner its
challenge score. Instead a worker's window is ``challenge_window`` of *unleased* time ending at
``now``: walking back from ``now``, leased stretches are skipped and the window reaches further
back by as much. While a lease that began at ``S`` is open (and no other lease lies within a
window of it), this is exactly the window ``[S - challenge_window, S)``: the GPU keeps the perf
it had when the lease began. The same rule also covers back-to-back leases and the time right
after a lease ends, where a literal "window ending at lease start" would drop to zero.

All intervals are half-open: a challenge counts when ``start <= issued_at < now`` and it was
not issued inside a leased stretch ``[lease.start, lease.end)``.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from byteleap.aliases import WorkerRef
from byteleap.errors import Outcome
from byteleap.scoring.observations import ChallengeObservation, LeaseInterval, require_aware
from byteleap.scoring.ownership import GpuOwnership
from byteleap.scoring.params import ScoringParams


@dataclass(frozen=True, slots=True)
class ChallengeWindow:
    """The stretch of time whose challenges count for one worker."""

    start: datetime
    end: datetime
    #: leased stretches inside ``[start, end)``, sorted and disjoint; skipped
    leased: tuple[tuple[datetime, datetime], ...] = ()
    #: the worker is leased at ``end``: its perf is carried over from before the lease
    carried_over: bool = False

    def contains(self, when: datetime) -> bool:
        if not (self.start <= when < self.end):
            return False
        if not self.leased:
            return True
        i = bisect_right(self.leased, when, key=lambda stretch: stretch[0]) - 1
        return i < 0 or when >= self.leased[i][1]

    @property
    def leased_seconds(self) -> float:
        """Leased time skipped inside the window."""
        return sum((b - a).total_seconds() for a, b in self.leased)


def challenge_window(
    intervals: Iterable[LeaseInterval], window: timedelta, now: datetime
) -> ChallengeWindow:
    """``window`` of unleased time ending at ``now``, given one worker's lease intervals."""
    require_aware("now", now)
    stretches: list[tuple[datetime, datetime]] = []
    carried_over = False
    for iv in intervals:
        if iv.start <= now and (iv.end is None or iv.end > now):
            carried_over = True
        end = now if iv.end is None else min(iv.end, now)
        if iv.start < end:
            stretches.append((iv.start, end))
    stretches.sort()
    merged: list[tuple[datetime, datetime]] = []
    for a, b in stretches:
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))

    remaining = window
    cursor = now
    inside: list[tuple[datetime, datetime]] = []
    for a, b in reversed(merged):
        gap = cursor - b
        if gap >= remaining:
            break
        remaining -= gap
        inside.append((a, b))
        cursor = a
    inside.reverse()
    return ChallengeWindow(
        start=cursor - remaining, end=now, leased=tuple(inside), carried_over=carried_over
    )


def challenge_windows(
    lease_intervals: Iterable[LeaseInterval], params: ScoringParams, now: datetime
) -> dict[WorkerRef, ChallengeWindow]:
    """The window of every worker that has lease intervals (others use the plain window)."""
    by_worker: dict[WorkerRef, list[LeaseInterval]] = {}
    for iv in lease_intervals:
        by_worker.setdefault((iv.miner_hotkey, iv.worker_id), []).append(iv)
    return {
        key: challenge_window(ivs, params.challenge_window, now) for key, ivs in by_worker.items()
    }


def earliest_challenge_needed(
    lease_intervals: Iterable[LeaseInterval], params: ScoringParams, now: datetime
) -> datetime:
    """The oldest ``issued_at`` any worker's window reaches: load challenges from here on."""
    require_aware("now", now)
    earliest = now - params.challenge_window
    for win in challenge_windows(lease_intervals, params, now).values():
        earliest = min(earliest, win.start)
    return earliest


def excuses_allowed(*, issued: int, excused: int, ours: int, budget: float) -> float:
    """How many of the miner's own excuses (``excused - ours``) drop out of the success rate:
    at most ``budget`` of the challenges that were not the validator's fault. The rest of them
    count as failures."""
    return min(float(excused - ours), budget * (issued - ours))


def gpu_perf(
    verified_throughputs: Sequence[float],
    *,
    issued: int,
    excused: int,
    ours: int = 0,
    budget: float = 1.0,
) -> tuple[float | None, float | None, float]:
    """``(median throughput, success rate, perf)`` of one GPU's window.

    ``excused`` counts every excused challenge, ``ours`` those of them that were the
    validator's own fault; the miner's (``excused - ours``) drop out only up to ``budget`` of
    the challenges that were not ours. The median is ``None`` with no verified challenge; the
    success rate is ``None`` when nothing is countable, and then perf is 0.
    """
    verified = len(verified_throughputs)
    if excused < 0 or ours < 0 or ours > excused or verified > issued - excused:
        raise ValueError(
            f"inconsistent counts: issued={issued}, excused={excused}, ours={ours}, "
            f"verified={verified}"
        )
    allowed = excuses_allowed(issued=issued, excused=excused, ours=ours, budget=budget)
    countable = issued - ours - allowed
    median = float(statistics.median(verified_throughputs)) if verified else None
    if countable <= 0:
        return median, None, 0.0
    rate = verified / countable
    perf = median * rate if median is not None else 0.0
    return median, rate, perf


@dataclass(frozen=True, slots=True)
class GpuScore:
    """How one GPU copy scored, with everything needed to explain it."""

    miner_hotkey: str
    worker_id: str
    gpu_uuid: str
    issued: int
    verified: int
    excused: int
    timeouts: int
    frauds: int
    #: of ``excused``, those that were the validator's own fault (never against the miner)
    excused_ours: int
    #: of the miner's own excuses (``excused - excused_ours``), how many went over the excuse
    #: budget and counted as failures (fractional: the budget is a share of the challenges)
    excused_over_budget: float
    median_throughput_flops: float | None
    success_rate: float | None
    #: median x success rate, before exclusion and fraud lockout
    measured_perf: float
    #: what counts towards challenge_raw
    perf: float
    carried_over: bool
    window_start: datetime
    leased_seconds_skipped: float
    excluded_conflict: bool
    fraud_locked: bool

    @property
    def failed(self) -> int:
        """Timeouts plus fraud."""
        return self.timeouts + self.frauds

    @property
    def excused_theirs(self) -> int:
        """Excuses that were the miner's word (busy, unavailable, a dropped link)."""
        return self.excused - self.excused_ours

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu_uuid": self.gpu_uuid,
            "worker_id": self.worker_id,
            "issued": self.issued,
            "verified": self.verified,
            "excused": self.excused,
            "excused_ours": self.excused_ours,
            "excused_theirs": self.excused_theirs,
            "excused_over_budget": self.excused_over_budget,
            "failed": self.failed,
            "timeouts": self.timeouts,
            "frauds": self.frauds,
            "median_throughput_flops": self.median_throughput_flops,
            "success_rate": self.success_rate,
            "measured_perf": self.measured_perf,
            "perf": self.perf,
            "carried_over": self.carried_over,
            "window_start": self.window_start.isoformat(),
            "leased_seconds_skipped": self.leased_seconds_skipped,
            "excluded_conflict": self.excluded_conflict,
            "fraud_locked": self.fraud_locked,
        }


@dataclass(frozen=True, slots=True)
class ChallengeScores:
    """Challenge results of every miner seen."""

    #: hotkey -> its GPU copies, sorted by (worker_id, gpu_uuid)
    gpus: dict[str, tuple[GpuScore, ...]]
    #: hotkey -> Σ perf over its owned GPUs
    raw: dict[str, float]
    #: hotkey -> its workers locked out by fraud, sorted
    fraud_locked_workers: dict[str, tuple[str, ...]]


def challenge_scores(
    challenges: Iterable[ChallengeObservation],
    *,
    ownership: GpuOwnership,
    lease_intervals: Iterable[LeaseInterval] = (),
    params: ScoringParams,
    now: datetime,
    miners: Iterable[str] | None = None,
) -> ChallengeScores:
    """Score every GPU copy seen in ``challenges`` or in ``ownership``.

    Runs in one pass over the observations (plus a binary search per observation of a worker
    with leases). With ``miners`` given, other hotkeys are ignored.
    """
    require_aware("now", now)
    allowed = None if miners is None else frozenset(miners)
    windows = challenge_windows(lease_intervals, params, now)
    plain_start = now - params.challenge_window
    plain = ChallengeWindow(start=plain_start, end=now)

    by_worker: dict[WorkerRef, dict[str, list[ChallengeObservation]]] = {}
    for obs in challenges:
        if obs.issued_at >= now or (allowed is not None and obs.miner_hotkey not in allowed):
            continue
        key = (obs.miner_hotkey, obs.worker_id)
        by_worker.setdefault(key, {}).setdefault(obs.gpu_uuid, []).append(obs)
    claimed = [(c.miner_hotkey, c.worker_id, c.gpu_uuid) for c in ownership.owners.values()]
    claimed += [(c.claimant_hotkey, c.claimant_worker_id, c.gpu_uuid) for c in ownership.conflicts]
    for hotkey, worker_id, uuid in claimed:
        if allowed is None or hotkey in allowed:
            by_worker.setdefault((hotkey, worker_id), {}).setdefault(uuid, [])

    gpus: dict[str, list[GpuScore]] = {}
    locked_workers: dict[str, list[str]] = {}
    for (hotkey, worker_id), per_gpu in by_worker.items():
        win = windows.get((hotkey, worker_id), plain)
        locked = any(
            o.outcome is Outcome.FRAUD and (o.issued_at >= plain_start or win.contains(o.issued_at))
            for observations in per_gpu.values()
            for o in observations
        )
        if locked:
            locked_workers.setdefault(hotkey, []).append(worker_id)
        out = gpus.setdefault(hotkey, [])
        for uuid, observations in per_gpu.items():
            issued = excused = ours = timeouts = frauds = 0
            throughputs: list[float] = []
            for o in observations:
                if not win.contains(o.issued_at):
                    continue
                issued += 1
                if o.outcome is Outcome.VERIFIED:
                    assert o.throughput_flops is not None  # checked when the record was built
                    throughputs.append(o.throughput_flops)
                elif o.outcome is Outcome.EXCUSED:
                    excused += 1
                    ours += o.ours
                elif o.outcome is Outcome.TIMEOUT:
                    timeouts += 1
                else:
                    frauds += 1
            median, rate, measured = gpu_perf(
                throughputs,
                issued=issued,
                excused=excused,
                ours=ours,
                budget=params.excuse_budget,
            )
            excluded = not ownership.owns(hotkey, worker_id, uuid)
            excusable = excuses_allowed(
                issued=issued, excused=excused, ours=ours, budget=params.excuse_budget
            )
            out.append(
                GpuScore(
                    miner_hotkey=hotkey,
                    worker_id=worker_id,
                    gpu_uuid=uuid,
                    issued=issued,
                    verified=len(throughputs),
                    excused=excused,
                    excused_ours=ours,
                    excused_over_budget=max(0.0, excused - ours - excusable),
                    timeouts=timeouts,
                    frauds=frauds,
                    median_throughput_flops=median,
                    success_rate=rate,
                    measured_perf=measured,
                    perf=0.0 if (excluded or locked) else measured,
                    carried_over=win.carried_over,
                    window_start=win.start,
                    leased_seconds_skipped=win.leased_seconds,
                    excluded_conflict=excluded,
                    fraud_locked=locked,
                )
            )

    sorted_gpus = {
        hotkey: tuple(sorted(entries, key=lambda g: (g.worker_id, g.gpu_uuid)))
        for hotkey, entries in gpus.items()
    }
    return ChallengeScores(
        gpus=sorted_gpus,
        raw={hotkey: math.fsum(g.perf for g in entries) for hotkey, entries in sorted_gpus.items()},
        fraud_locked_workers={h: tuple(sorted(ws)) for h, ws in locked_workers.items()},
    )
