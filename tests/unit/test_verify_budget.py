"""The verifier's budget: how large a share of an epoch's reveals is checked entry by entry."""

from __future__ import annotations

import pytest

from neurons.validator.verify_budget import VerifyBudget


def budget(**kw: float) -> VerifyBudget:
    values: dict[str, float] = {"processes": 2, "epoch_s": 600.0, "utilization": 0.5}
    values.update(kw)
    return VerifyBudget(**values)  # type: ignore[arg-type]


def test_every_reveal_is_opened_while_the_pool_keeps_up() -> None:
    b = budget(mean_verify_s=0.032, mean_merkle_s=0.002)
    fits = int(b.pool_seconds / 0.032)
    assert b.fraction(0) == 1.0
    assert b.fraction(fits) == 1.0


def test_past_capacity_the_share_leaves_the_pool_busy_for_its_budget() -> None:
    b = budget(mean_verify_s=0.013, mean_merkle_s=0.0002)
    gpus = 204_800
    p, merkle = b.plan(gpus)
    assert 0.0 < p < 1.0 and merkle  # the Merkle checks are cheap enough to keep
    busy = gpus * (p * 0.013 + (1 - p) * 0.0002)
    assert busy == pytest.approx(b.pool_seconds)


def test_merkle_checks_that_would_eat_the_exact_sample_are_dropped() -> None:
    b = budget(mean_verify_s=0.014, mean_merkle_s=0.002)
    gpus = 204_800
    p, merkle = b.plan(gpus)
    assert not merkle
    assert gpus * p * 0.014 == pytest.approx(b.pool_seconds)  # all of the pool on the sample
    assert 0.0 < p < 1.0


def test_the_costs_follow_what_the_pool_measures() -> None:
    b = budget()
    before = b.fraction(200_000)
    for _ in range(200):
        b.observe(0.013)
        b.observe(0.002, exact=False)
    assert b.mean_verify_s == pytest.approx(0.013, rel=0.01)
    assert b.mean_merkle_s == pytest.approx(0.002, rel=0.05)
    assert b.fraction(200_000) > before  # cheaper than assumed: more is opened
    b.observe(-1.0)  # nonsense is ignored
    assert b.mean_verify_s == pytest.approx(0.013, rel=0.01)
