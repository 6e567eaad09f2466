"""One card behind many claims, replayed through the validator's real planner, timing and scorer.

    python bench/sybil.py                # one simulated day: N = 1..200 claims, five card speeds
    python bench/sybil.py --quick        # N = 1 and 10, three speeds, a 6-hour day
    python bench/sybil.py --json out.json   # also write the figures as JSON

The attack (SPEC 4.5): one physical GPU answers the challenges of N claimed GPUs, on one miner or
spread over several. The defence measured here is the validator's own code, called as the daemon
calls it:

- the epochs are those of :meth:`EpochPlanner.next_epoch_at` (about 144 a day at the defaults);
- each epoch, :meth:`EpochPlanner.plan` plans every claim at once (one worker per claim) with the
  expected rates of :func:`calibrate`, fed with the day's verified throughputs of an honest
  network (20 miners with one H100 SXM each, at the catalogue's figure x U(0.95, 1.10));
- each miner's batch leaves at a random offset within ``epoch_spread_s`` and each miner has a
  round trip in U(0.02, 0.3) s (passed to the planner, and added to the elapsed time);
- as in the challenger, a commit's elapsed time runs from its own miner's dispatch until it
  arrives (the card's time plus the round trip), and its deadline from the epoch's *first*
  dispatch: an answer later than that is a timeout; else :func:`check_plausible` against
  :func:`impossible_limit` decides (impossible: fraud), else it is verified at
  :func:`credited_throughput`; a ``busy`` answer is the miner's excuse (``ours=False``);
- after the day, :func:`challenge_scores` with the default :class:`ScoringParams` (excuse budget
  included) scores every claim, and the attacker's summed raw score is divided by that of ONE
  honest card of the same speed serving one claim, simulated alongside as its own miner (with the
  mean round trip of the attacker's miners, so the ratio measures sharing, not the link).

The attacker's card serves its claims by one of these strategies (``best`` is the largest):

- ``queue``: one after another in a fresh random order each epoch, each committed when done;
- ``rotate``: the same, the first claim rotating so that each is first equally often;
- ``fixed``: the same, always in the same order (the late claims never count, the early ones
  always do: this is the order that reaches the harmonic sum below);
- ``parallel``: time-sliced, every claim finishes at N x W / R;
- ``excuse``: in a random order, serves each claim that can still meet its deadline and answers
  ``busy`` at once for the others.

A card k = R / E times the calibrated expected rate E fits about floor(1.5 k) claims before one
deadline (``deadline_factor`` 1.5), and serving them in a fixed order earns up to the harmonic sum
1 + 1/2 + ... of one card's throughput (about that / (1 - excuse_budget) when the rest are
excused). A second "world" shows the same attack when five decoy miners answer their own
challenges as late as the deadline allows: their slow verified throughputs pull the calibration
down to its floor (``calibration_floor`` x the catalogue figure).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from byteleap.challenge.sizing import (
    CalibrationSettings,
    calibrate,
    credited_throughput,
    impossible_limit,
)
from byteleap.challenge.timing import DEFAULT_IMPOSSIBLE_FACTOR, check_plausible
from byteleap.config.validator import ChallengeSection
from byteleap.errors import Outcome, VerificationFailed
from byteleap.hardware import CATALOGUE
from byteleap.scoring import (
    ChallengeObservation,
    GpuClaim,
    ScoringParams,
    challenge_scores,
    resolve_gpu_ownership,
)
from byteleap.sessions.round_planner import EpochPlanner, PlannedChallenge
from neurons.validator.store.records import GpuSnapshot, WorkerRow

TERA = 1e12
H100_ID = "h100-sxm"
#: what an H100 SXM's NVML reports (name, total MiB, compute capability)
H100_NAME, H100_MEMORY_MIB, H100_CAPABILITY = "NVIDIA H100 80GB HBM3", 81559, "9.0"
#: "an honest H100's speed": the catalogue's expected challenge throughput for the model
BASE_FLOPS = CATALOGUE[H100_ID].backend_flops
START = datetime(2026, 3, 1, tzinfo=UTC)

HONEST_MINERS = 20
HONEST_SPEED = (0.95, 1.10)  # x BASE_FLOPS, drawn per card
ROUND_TRIP_S = (0.02, 0.3)  # drawn per miner
DECOYS = 5
#: a decoy commits at this share of its deadline: as slow as it dares
DECOY_LATENESS = 0.97

STRATEGIES = ("queue", "rotate", "fixed", "parallel", "excuse")
FULL_SPEEDS = (1.0, 1.2, 1.33, 2.0, 4.0)
QUICK_SPEEDS = (1.0, 1.33, 4.0)
FULL_CLAIMS = (1, 10, 50, 200)
QUICK_CLAIMS = (1, 10)
#: from N >= SPREAD_MINERS claims on, the claims are also spread over this many miners
SPREAD_MINERS = 10
#: at s = 1.0, one card behind N claims earns at most this multiple of one honest card
TARGET_RATIO = 1.10
DEFAULT_SEED = 20260301

_CODES = (Outcome.VERIFIED, Outcome.TIMEOUT, Outcome.EXCUSED, Outcome.FRAUD)
_CODE = {outcome: i for i, outcome in enumerate(_CODES)}


# --------------------------------------------------------------------------- the set-up


@dataclass(frozen=True, slots=True)
class Attack:
    """One card of ``speed`` x an honest H100 behind ``claims`` claims on ``miners`` miners."""

    speed: float
    claims: int
    miners: int = 1
    #: the round trip the attacker's miners make the validator measure (slow answers to its
    #: polls); None: their true one. The deadline adds the measured one (at most
    #: ``deadline_grace_s``), the elapsed time the true one.
    shown_round_trip_s: float | None = None

    @property
    def label(self) -> str:
        shown = "" if self.shown_round_trip_s is None else f"-rt{self.shown_round_trip_s:g}"
        return f"s{self.speed:g}-n{self.claims}-m{self.miners}{shown}"


def attacks_for(speeds: Iterable[float], claims: Iterable[int]) -> list[Attack]:
    """Every speed x claim count, on one miner and (from 10 claims on) over 10 miners."""
    out = []
    for speed in speeds:
        for n in claims:
            out.append(Attack(speed, n, 1))
            if n >= SPREAD_MINERS:
                out.append(Attack(speed, n, SPREAD_MINERS))
    return out


@dataclass(slots=True)
class Miner:
    hotkey: str
    uid: int
    round_trip_s: float


@dataclass(slots=True)
class Device:
    """One claimed GPU: its own worker on ``miner``."""

    miner: Miner
    worker: str
    uuid: str

    def row(self) -> WorkerRow:
        return WorkerRow(
            miner_hotkey=self.miner.hotkey,
            miner_uid=self.miner.uid,
            endpoint=f"http://{self.miner.hotkey}.invalid:8091",
            worker_pubkey=self.worker,
            state="idle",
            online=True,
            last_seen=START,
            gpus=(GpuSnapshot(self.uuid, H100_NAME, H100_MEMORY_MIB, H100_CAPABILITY),),
        )


class Registry:
    """Hands out unique miner uids, worker keys and GPU uuids."""

    def __init__(self) -> None:
        self.uids = 0
        self.devices = 0

    def miner(self, hotkey: str, round_trip_s: float) -> Miner:
        self.uids += 1
        return Miner(hotkey, self.uids, round_trip_s)

    def device(self, miner: Miner) -> Device:
        self.devices += 1
        n = self.devices
        return Device(miner, f"{n:064x}", f"GPU-{n:08x}-5b1e-4c0d-9a7e-{n:012x}")


@dataclass(slots=True)
class Tally:
    """One device's outcomes over the day (index = epoch; throughput 0 unless verified)."""

    outcomes: bytearray = field(default_factory=bytearray)
    throughputs: array[float] = field(default_factory=lambda: array("d"))

    def add(self, outcome: Outcome, flops: float) -> None:
        self.outcomes.append(_CODE[outcome])
        self.throughputs.append(flops)


@dataclass(slots=True)
class Sybil:
    """An attack in flight: its devices, its honest reference, and a tally per strategy."""

    attack: Attack
    miners: list[Miner]
    devices: list[Device]
    reference: Device
    rng: dict[str, random.Random]
    dispatch_rng: random.Random
    tallies: dict[str, list[Tally]]
    reference_tally: Tally = field(default_factory=Tally)
    #: the card's rate / the calibrated expected rate, in the latest epoch
    rate_over_expected: float = 0.0

    @property
    def rate(self) -> float:
        return self.attack.speed * BASE_FLOPS


def new_sybil(attack: Attack, registry: Registry, seed: int) -> Sybil:
    trips = random.Random(f"{seed}/{attack.label}/round-trips")
    miners = [
        registry.miner(f"sybil-{attack.label}-{i}", trips.uniform(*ROUND_TRIP_S))
        for i in range(attack.miners)
    ]
    devices = [registry.device(miners[i % attack.miners]) for i in range(attack.claims)]
    # the reference's link is the attacker's average one, so the ratio measures sharing only
    mean_trip = math.fsum(m.round_trip_s for m in miners) / len(miners)
    reference = registry.device(registry.miner(f"honest-{attack.label}", mean_trip))
    return Sybil(
        attack=attack,
        miners=miners,
        devices=devices,
        reference=reference,
        rng={s: random.Random(f"{seed}/{attack.label}/{s}") for s in STRATEGIES},
        dispatch_rng=random.Random(f"{seed}/{attack.label}/dispatch"),
        tallies={s: [Tally() for _ in devices] for s in STRATEGIES},
    )


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


# --------------------------------------------------------------------------- one commit


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
class Job:
    """One claim's challenge as the attacker's card sees it (seconds from the epoch's first
    dispatch)."""

    arrival_s: float
    round_trip_s: float
    work: float
    deadline_s: float


def serve(
    strategy: str,
    jobs: Sequence[Job],
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


# --------------------------------------------------------------------------- one day


@dataclass(frozen=True, slots=True)
class Row:
    """One attack's result after the day."""

    attack: Attack
    #: k: the card's rate / the calibrated expected rate, in the day's last epoch
    rate_over_expected: float
    ratios: dict[str, float]
    #: strategy -> outcome name -> claims per epoch
    per_epoch: dict[str, dict[str, float]]
    reference_raw: float

    #: the deadline's share of the expected time (``deadline_factor``)
    deadline_factor: float = 1.5

    @property
    def fits(self) -> int:
        """Claims one card fits before one deadline of the last epoch: floor(1.5 k), at least
        one (1e-6 of slack: at k = 4/3 two claims fit exactly, to the stage rounding)."""
        return max(1, math.floor(self.deadline_factor * self.rate_over_expected + 1e-6))

    @property
    def harmonic(self) -> float:
        return sum(1.0 / j for j in range(1, min(self.fits, self.attack.claims) + 1))

    @property
    def best(self) -> tuple[str, float]:
        name = max(self.ratios, key=lambda s: self.ratios[s])
        return name, self.ratios[name]

    def to_dict(self) -> dict[str, Any]:
        name, best = self.best
        return {
            "speed": self.attack.speed,
            "claims": self.attack.claims,
            "miners": self.attack.miners,
            "rate_over_expected": self.rate_over_expected,
            "fits": self.fits,
            "harmonic": self.harmonic,
            "ratios": self.ratios,
            "best": best,
            "best_strategy": name,
            "per_epoch": self.per_epoch,
            "reference_raw_flops": self.reference_raw,
        }


@dataclass(frozen=True, slots=True)
class Day:
    decoys: int
    epochs: int
    hours: float
    #: the calibrated expected rate of an H100 / the catalogue figure: first, last, lowest epoch
    expected_first: float
    expected_last: float
    expected_min: float
    rows: list[Row]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decoys": self.decoys,
            "epochs": self.epochs,
            "hours": self.hours,
            "expected_over_catalogue": {
                "first": self.expected_first,
                "last": self.expected_last,
                "min": self.expected_min,
            },
            "rows": [r.to_dict() for r in self.rows],
        }


def simulate(
    attacks: Sequence[Attack],
    *,
    hours: float = 24.0,
    max_epochs: int | None = None,
    decoys: int = 0,
    seed: int = DEFAULT_SEED,
    section: ChallengeSection | None = None,
    params: ScoringParams | None = None,
    deadline_from_epoch: bool = True,
) -> Day:
    """Replay one day of epochs with every attack in it, then score each attack and strategy.

    The attacks do not interact: the calibration is fed by the honest network (and the
    ``decoys``) only, and every attack draws its own random numbers, so an attack's figures do
    not depend on which others run beside it. ``deadline_from_epoch``: every deadline runs from
    the epoch's first dispatch, as the challenger does; False runs it from each miner's own
    dispatch instead (the rule before it), for comparison."""
    from_epoch = deadline_from_epoch
    section = section or ChallengeSection()
    params = params or ScoringParams()
    settings = calibration_settings(section)
    starts = epoch_starts(section, hours, seed)[:max_epochs]
    network_rng = random.Random(f"{seed}/network")
    network_dispatch = random.Random(f"{seed}/network-dispatch")
    spread = section.epoch_spread_s
    registry = Registry()

    honest = []  # (device, card FLOP/s)
    for i in range(HONEST_MINERS):
        miner = registry.miner(f"honest-{i}", network_rng.uniform(*ROUND_TRIP_S))
        honest.append((registry.device(miner), BASE_FLOPS * network_rng.uniform(*HONEST_SPEED)))
    decoy_devices = [
        registry.device(registry.miner(f"decoy-{i}", network_rng.uniform(*ROUND_TRIP_S)))
        for i in range(decoys)
    ]
    sybils = [new_sybil(a, registry, seed) for a in attacks]

    rows = [d.row() for d, _ in honest] + [d.row() for d in decoy_devices]
    for sybil in sybils:
        rows += [d.row() for d in sybil.devices] + [sybil.reference.row()]
    trips = {d.miner.hotkey: d.miner.round_trip_s for d, _ in honest}
    trips |= {d.miner.hotkey: d.miner.round_trip_s for d in decoy_devices}
    for sybil in sybils:
        shown = sybil.attack.shown_round_trip_s
        trips |= {m.hotkey: m.round_trip_s if shown is None else shown for m in sybil.miners}
        trips[sybil.reference.miner.hotkey] = sybil.reference.miner.round_trip_s

    planner = EpochPlanner(section, random.Random(f"{seed}/planner"))
    samples: list[tuple[str, str, float]] = []  # the day's verified throughputs
    expected: list[float] = []
    for epoch, _at in enumerate(starts):
        rates = calibrate(samples, settings)
        expected.append(rates.expected_flops(H100_ID))
        plan = planner.plan(rows, rates=rates, round_trips=trips)
        planned = {(p.miner_hotkey, p.worker_pubkey): p for p in plan.challenges}
        if len(planned) != len(rows):
            raise RuntimeError(f"the planner left out {dict(plan.skipped)}")

        def challenge(device: Device) -> PlannedChallenge:
            return planned[(device.miner.hotkey, device.worker)]

        fresh: list[tuple[str, str, float]] = []
        for device, flops in honest:
            p = challenge(device)
            d = network_dispatch.uniform(0.0, spread)
            elapsed = p.params.flops / flops + device.miner.round_trip_s
            outcome, tp = judge(p, device.uuid, elapsed, d, from_epoch)
            if outcome is Outcome.VERIFIED:
                fresh.append((device.miner.hotkey, p.model_id, tp))
        for device in decoy_devices:
            p = challenge(device)
            d = network_dispatch.uniform(0.0, spread)
            on_time = p.params.flops / BASE_FLOPS + device.miner.round_trip_s
            slow = DECOY_LATENESS * p.sizing.deadline_s - (d if from_epoch else 0.0)
            outcome, tp = judge(p, device.uuid, max(on_time, slow), d, from_epoch)
            if outcome is Outcome.VERIFIED:
                fresh.append((device.miner.hotkey, p.model_id, tp))
        for sybil in sybils:
            play_epoch(sybil, epoch, challenge, spread, from_epoch)
        samples += fresh

    now = START + timedelta(hours=hours)
    issued = starts
    out = [
        score(sybil, issued, now, params, len(starts), section.deadline_factor) for sybil in sybils
    ]
    return Day(
        decoys=decoys,
        epochs=len(starts),
        hours=hours,
        expected_first=expected[0] / BASE_FLOPS,
        expected_last=expected[-1] / BASE_FLOPS,
        expected_min=min(expected) / BASE_FLOPS,
        rows=out,
    )


def play_epoch(
    sybil: Sybil,
    epoch: int,
    challenge: Callable[[Device], PlannedChallenge],
    spread_s: float,
    from_epoch: bool,
) -> None:
    """One epoch of one attack: its reference card, then the shared card under each strategy.
    Each miner's batch leaves at a random point of the spread."""
    offsets = {m.hotkey: sybil.dispatch_rng.uniform(0.0, spread_s) for m in sybil.miners}
    ref = sybil.reference
    p = challenge(ref)
    ref_d = sybil.dispatch_rng.uniform(0.0, spread_s)
    elapsed = p.params.flops / sybil.rate + ref.miner.round_trip_s
    sybil.reference_tally.add(*judge(p, ref.uuid, elapsed, ref_d, from_epoch))
    plans = [challenge(d) for d in sybil.devices]
    jobs = [
        Job(
            offsets[d.miner.hotkey],
            d.miner.round_trip_s,
            float(p.params.flops),
            p.sizing.deadline_s,
        )
        for d, p in zip(sybil.devices, plans, strict=True)
    ]
    sybil.rate_over_expected = sybil.rate / plans[0].sizing.expected_flops
    for strategy in STRATEGIES:
        times = serve(strategy, jobs, sybil.rate, epoch, sybil.rng[strategy], from_epoch)
        for device, job, p, taken, tally in zip(
            sybil.devices, jobs, plans, times, sybil.tallies[strategy], strict=True
        ):
            if taken is None:
                tally.add(Outcome.EXCUSED, 0.0)
            else:
                tally.add(*judge(p, device.uuid, taken, job.arrival_s, from_epoch))


def observations(
    device: Device, tally: Tally, issued: Sequence[datetime]
) -> Iterator[ChallengeObservation]:
    for at, code, tp in zip(issued, tally.outcomes, tally.throughputs, strict=True):
        outcome = _CODES[code]
        yield ChallengeObservation(
            device.miner.hotkey,
            device.worker,
            device.uuid,
            at,
            outcome,
            tp if outcome is Outcome.VERIFIED else None,
            False,  # every excuse here is the miner's own word
        )


def score(
    sybil: Sybil,
    issued: Sequence[datetime],
    now: datetime,
    params: ScoringParams,
    epochs: int,
    deadline_factor: float,
) -> Row:
    """The real scorer over the attack's claims and its reference, once per strategy."""
    everyone = [*sybil.devices, sybil.reference]
    ownership = resolve_gpu_ownership(
        GpuClaim(d.uuid, d.miner.hotkey, d.worker, START) for d in everyone
    )
    reference_obs = list(observations(sybil.reference, sybil.reference_tally, issued))
    hotkeys = {m.hotkey for m in sybil.miners}
    ratios: dict[str, float] = {}
    per_epoch: dict[str, dict[str, float]] = {}
    reference_raw = 0.0
    for strategy in STRATEGIES:
        tallies = sybil.tallies[strategy]
        obs = list(reference_obs)
        for device, tally in zip(sybil.devices, tallies, strict=True):
            obs += observations(device, tally, issued)
        result = challenge_scores(obs, ownership=ownership, params=params, now=now)
        reference_raw = result.raw.get(sybil.reference.miner.hotkey, 0.0)
        attacker = math.fsum(result.raw.get(h, 0.0) for h in hotkeys)
        ratios[strategy] = attacker / reference_raw if reference_raw > 0 else math.inf
        counts = [0] * len(_CODES)
        for tally in tallies:
            for code in range(len(_CODES)):
                counts[code] += tally.outcomes.count(code)
        per_epoch[strategy] = {o.value: counts[_CODE[o]] / epochs for o in _CODES}
    return Row(
        attack=sybil.attack,
        rate_over_expected=sybil.rate_over_expected,
        ratios=ratios,
        per_epoch=per_epoch,
        reference_raw=reference_raw,
        deadline_factor=deadline_factor,
    )


# --------------------------------------------------------------------------- printing


def print_day(title: str, day: Day) -> None:
    print(
        f"\n{title}: {day.epochs} epochs in {day.hours:g} h; calibrated H100 rate / catalogue "
        f"{day.expected_first:.3f} (first epoch) -> {day.expected_last:.3f} (last), "
        f"lowest {day.expected_min:.3f}"
    )
    print("  ratio = the attacker's summed challenge raw score / one honest card of the same speed")
    head = "".join(f"{s:>9}" for s in STRATEGIES)
    print(f"  {'s':>5} {'claims':>6} {'miners':>6} {'R/E':>5} {'fit':>4} {'H':>5}{head}     best")
    for r in day.rows:
        a = r.attack
        cells = "".join(f"{r.ratios[s]:9.3f}" for s in STRATEGIES)
        name, best = r.best
        print(
            f"  {a.speed:5.2f} {a.claims:6d} {a.miners:6d} {r.rate_over_expected:5.2f} "
            f"{r.fits:4d} {r.harmonic:5.2f}{cells} {best:8.3f} ({name})"
        )
    print(
        "  attacker's claims per epoch: verified / timed out / excused (fraud: none unless shown)"
    )
    head = "".join(f"{s:>19}" for s in STRATEGIES)
    print(f"  {'s':>5} {'claims':>6} {'miners':>6}{head}")
    for r in day.rows:
        a = r.attack
        cells = "".join(f"{counts_cell(r.per_epoch[s]):>19}" for s in STRATEGIES)
        print(f"  {a.speed:5.2f} {a.claims:6d} {a.miners:6d}{cells}")


def counts_cell(counts: dict[str, float]) -> str:
    cell = f"{counts['verified']:.2f}/{counts['timeout']:.2f}/{counts['excused']:.2f}"
    return cell + (f" F{counts['fraud']:.2f}" if counts["fraud"] else "")


def target_check(day: Day) -> tuple[float, str]:
    """The worst ratio at s = 1.0 over every claim count and strategy, and where."""
    worst, where = 0.0, "no s = 1.0 row"
    for r in day.rows:
        if r.attack.speed != 1.0:
            continue
        for strategy, ratio in r.ratios.items():
            if ratio > worst:
                worst = ratio
                miners = "1 miner" if r.attack.miners == 1 else f"{r.attack.miners} miners"
                where = f"{strategy}, {r.attack.claims} claims on {miners}"
    return worst, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 10; 3 speeds; a 6-hour day")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    speeds = QUICK_SPEEDS if args.quick else FULL_SPEEDS
    claims = QUICK_CLAIMS if args.quick else FULL_CLAIMS
    hours = 6.0 if args.quick else 24.0
    attacks = attacks_for(speeds, claims)
    section, params = ChallengeSection(), ScoringParams()
    print(
        f"sybil: one card behind N claims; {HONEST_MINERS} honest H100 SXM miners; H100 catalogue "
        f"rate {BASE_FLOPS / TERA:.1f} TFLOP/s; challenges sized to {section.target_seconds:g} s; "
        f"deadline {section.deadline_factor:g} x expected + round trip (grace "
        f"{section.deadline_grace_s:g} s) from the epoch's first dispatch; epoch spread "
        f"{section.epoch_spread_s:g} s; excuse budget {params.excuse_budget:.0%}; target at "
        f"s = 1.0: <= {TARGET_RATIO}"
    )
    started = time.perf_counter()
    network = simulate(attacks, hours=hours, seed=args.seed, section=section, params=params)
    print_day("the honest network's calibration", network)
    floor = simulate(
        attacks, hours=hours, decoys=DECOYS, seed=args.seed, section=section, params=params
    )
    print_day(f"{DECOYS} decoy miners answering late (calibration at its floor)", floor)
    worst, where = target_check(network)
    verdict = "met" if worst <= TARGET_RATIO else "MISSED"
    print(f"\ntarget: at s = 1.0 the worst ratio is {worst:.3f} ({where}): {verdict}")
    seconds = time.perf_counter() - started
    print(f"simulated in {seconds:.1f} s")
    if args.json:
        figures = {
            "quick": args.quick,
            "seed": args.seed,
            "hours": hours,
            "speeds": list(speeds),
            "claims": list(claims),
            "strategies": list(STRATEGIES),
            "honest_miners": HONEST_MINERS,
            "decoys": DECOYS,
            "catalogue_flops": BASE_FLOPS,
            "impossible_limit_flops": DEFAULT_IMPOSSIBLE_FACTOR
            * CATALOGUE[H100_ID].exact_peak_flops,
            "target_seconds": section.target_seconds,
            "deadline_factor": section.deadline_factor,
            "deadline_grace_s": section.deadline_grace_s,
            "epoch_spread_s": section.epoch_spread_s,
            "calibration_floor": section.calibration_floor,
            "excuse_budget": params.excuse_budget,
            "target_ratio": TARGET_RATIO,
            "worst_at_s1": worst,
            "worst_at_s1_where": where,
            "seconds": seconds,
            "network": network.to_dict(),
            "floor": floor.to_dict(),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
