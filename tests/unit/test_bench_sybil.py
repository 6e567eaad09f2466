"""bench/sybil.py at a tiny size: the real planner, timing and scorer against one shared card.

A card of an honest H100's speed behind several claims must earn no more than one honest card
(the excuse budget allows 1 / 0.95), whatever order it serves them in. A card four times as fast
fits several claims before one deadline and does earn more. That second check fails if the
simulation stops modelling the attack.
"""

from __future__ import annotations

import pytest

from bench.sybil import simulate
from bench.sybil_report import Day
from bench.sybil_world import STRATEGIES, TARGET_RATIO, Attack

EPOCHS = 16  # past calibration_min_samples (12), so the calibration moves


@pytest.fixture(scope="module")
def day() -> Day:
    attacks = [Attack(1.0, 1), Attack(1.0, 3), Attack(4.0, 3)]
    return simulate(attacks, max_epochs=EPOCHS)


def test_the_day_is_the_planners_epochs(day: Day) -> None:
    assert day.epochs == EPOCHS
    assert day.expected_first == pytest.approx(1.0)  # the catalogue's figure, before any sample
    assert 0.9 < day.expected_last < 1.0  # then a low percentile of the honest network


def test_a_card_of_honest_speed_earns_no_more_than_one_honest_card(day: Day) -> None:
    by_claims = {r.attack.claims: r for r in day.rows if r.attack.speed == 1.0}
    assert set(by_claims) == {1, 3}
    for row in by_claims.values():
        for strategy in STRATEGIES:
            assert row.ratios[strategy] <= TARGET_RATIO, (row.attack, strategy)
    # one claim is honest work: every strategy is the reference itself
    assert all(by_claims[1].ratios[s] == pytest.approx(1.0) for s in STRATEGIES)
    # three claims: exactly one fits each epoch; the others time out or are excused
    three = by_claims[3].per_epoch
    assert three["queue"] == {"verified": 1.0, "timeout": 2.0, "excused": 0.0, "fraud": 0.0}
    assert three["excuse"] == {"verified": 1.0, "timeout": 0.0, "excused": 2.0, "fraud": 0.0}
    assert three["parallel"]["timeout"] == 3.0


def test_a_card_four_times_as_fast_earns_more_behind_three_claims(day: Day) -> None:
    (row,) = (r for r in day.rows if r.attack.speed == 4.0)
    assert row.fits >= 3
    assert row.per_epoch["queue"]["verified"] == 3.0
    assert row.ratios["queue"] > 1.0
    assert row.best[1] > 1.5
