"""The sybil simulation's results: one row per strategy and claim count, one day of them, and
their tables with the target check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.sybil_world import (
    STRATEGIES,
    Attack,
)


@dataclass(frozen=True, slots=True)
class SimRow:
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
    rows: list[SimRow]

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
