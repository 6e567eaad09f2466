"""The sybil simulation's epochs and commits: when epochs start, how one card serves the jobs
it is given in turn, and how the validator judges each commit's lateness."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bench.sybil_world import (
    START,
)
from byteleap.challenge.sizing import (
    CalibrationSettings,
    credited_throughput,
    impossible_limit,
)
from byteleap.challenge.timing import DEFAULT_IMPOSSIBLE_FACTOR, check_plausible
from byteleap.config.challenge import ChallengeSection
from byteleap.errors import Outcome, VerificationFailed
from byteleap.sessions.round_planner import EpochPlanner, PlannedChallenge


def calibration_settings(section: ChallengeSection) -> CalibrationSettings:
    """As the validator's daemon builds them from its ``challenge`` section."""
    return CalibrationSettings(
        cpu_expected_flops=section.cpu_expected_flops,
        unknown_flops=section.unknown_flops,
        percentile=section.calibration_percentile,
        min_miners=section.calibration_min_miners,
        min_samples=section.calibration_min_samples,
        floor=section.calibration_floor,
    )


def epoch_starts(section: ChallengeSection, hours: float, seed: int) -> list[datetime]:
    """The day's epochs, drawn by the planner's own clock."""
    clock = EpochPlanner(section, random.Random(f"{seed}/epochs"))
    end = START + timedelta(hours=hours)
    starts = []
    at = clock.next_epoch_at(START)
    while at < end:
        starts.append(at)
        at = clock.next_epoch_at(at)
    return starts


def late(elapsed_s: float, dispatch_s: float, deadline_s: float, from_epoch: bool) -> bool:
    """Whether an answer ``elapsed_s`` after its miner's dispatch, which left ``dispatch_s`` after
    the epoch's first, misses ``deadline_s``. The challenger runs every deadline from the epoch's
    first dispatch (``from_epoch``); the other rule runs it from the miner's own dispatch."""
    return (elapsed_s + dispatch_s if from_epoch else elapsed_s) > deadline_s


def judge(
    planned: PlannedChallenge, uuid: str, elapsed_s: float, dispatch_s: float, from_epoch: bool
) -> tuple[Outcome, float]:
    """The validator's verdict on a commit (the challenger's rules): late is a timeout; then the
    throughput over ``elapsed_s`` (from the miner's own dispatch) is checked and credited."""
    sizing = planned.sizing
    if late(elapsed_s, dispatch_s, sizing.deadline_s, from_epoch):
        return Outcome.TIMEOUT, 0.0
    identity = planned.identities[uuid]
    try:
        measured = check_plausible(
            sizing.params,
            elapsed_s,
            impossible_limit(identity, DEFAULT_IMPOSSIBLE_FACTOR),
            planned.gpu_models[uuid],
        )
    except VerificationFailed:
        return Outcome.FRAUD, 0.0
    return Outcome.VERIFIED, credited_throughput(identity, measured)


@dataclass(frozen=True, slots=True)
class SimJob:
    """One claim's challenge as the attacker's card sees it (seconds from the epoch's first
    dispatch)."""

    arrival_s: float
    round_trip_s: float
    work: float
    deadline_s: float


def serve(
    strategy: str,
    jobs: Sequence[SimJob],
    rate: float,
    epoch: int,
    rng: random.Random,
    from_epoch: bool = True,
) -> list[float | None]:
    """Each job's elapsed time from its miner's dispatch under ``strategy`` (None: excused)."""
    n = len(jobs)
    if strategy == "parallel":
        finish = min(j.arrival_s for j in jobs) + sum(j.work for j in jobs) / rate
        return [finish - j.arrival_s + j.round_trip_s for j in jobs]  # one claim: honest
    if strategy in ("queue", "excuse"):
        order = list(range(n))
        rng.shuffle(order)
    elif strategy == "rotate":
        order = [(epoch + i) % n for i in range(n)]
    elif strategy == "fixed":
        order = list(range(n))
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    elapsed: list[float | None] = [None] * n
    free = 0.0
    for i in order:
        job = jobs[i]
        finish = max(free, job.arrival_s) + job.work / rate
        taken = finish - job.arrival_s + job.round_trip_s
        if strategy == "excuse" and late(taken, job.arrival_s, job.deadline_s, from_epoch):
            continue  # "busy", at once: the card does not spend a second on it
        free = finish
        elapsed[i] = taken
    return elapsed
