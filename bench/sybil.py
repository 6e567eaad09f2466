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
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

# run as a script (python bench/sybil.py), the repository root is not on sys.path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sybil_report import Day, SimRow, print_day, target_check
from bench.sybil_serve import SimJob, calibration_settings, epoch_starts, judge, serve
from bench.sybil_world import (
    BASE_FLOPS,
    DECOY_LATENESS,
    DECOYS,
    DEFAULT_SEED,
    FULL_CLAIMS,
    FULL_SPEEDS,
    H100_ID,
    HONEST_MINERS,
    HONEST_SPEED,
    OUTCOME_CODE,
    OUTCOME_CODES,
    QUICK_CLAIMS,
    QUICK_SPEEDS,
    ROUND_TRIP_S,
    START,
    STRATEGIES,
    TARGET_RATIO,
    TERA,
    Attack,
    Registry,
    SimDevice,
    SimTally,
    Sybil,
    attacks_for,
    new_sybil,
)
from byteleap.challenge.sizing import (
    calibrate,
)
from byteleap.challenge.timing import DEFAULT_IMPOSSIBLE_FACTOR
from byteleap.config.challenge import ChallengeSection
from byteleap.errors import Outcome
from byteleap.hardware import CATALOGUE
from byteleap.scoring import (
    ChallengeObservation,
    GpuClaim,
    ScoringParams,
    challenge_scores,
    resolve_gpu_ownership,
)
from byteleap.sessions.round_planner import EpochPlanner, PlannedChallenge

# --------------------------------------------------------------------------- one day


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

        def challenge(device: SimDevice) -> PlannedChallenge:
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
    challenge: Callable[[SimDevice], PlannedChallenge],
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
        SimJob(
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
    device: SimDevice, tally: SimTally, issued: Sequence[datetime]
) -> Iterator[ChallengeObservation]:
    for at, code, tp in zip(issued, tally.outcomes, tally.throughputs, strict=True):
        outcome = OUTCOME_CODES[code]
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
) -> SimRow:
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
        counts = [0] * len(OUTCOME_CODES)
        for tally in tallies:
            for code in range(len(OUTCOME_CODES)):
                counts[code] += tally.outcomes.count(code)
        per_epoch[strategy] = {o.value: counts[OUTCOME_CODE[o]] / epochs for o in OUTCOME_CODES}
    return SimRow(
        attack=sybil.attack,
        rate_over_expected=sybil.rate_over_expected,
        ratios=ratios,
        per_epoch=per_epoch,
        reference_raw=reference_raw,
        deadline_factor=deadline_factor,
    )


# --------------------------------------------------------------------------- printing


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
