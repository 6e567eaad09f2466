"""Throughput from the validator's own clock, and the "impossibly fast" check (SPEC 4.4, 4.5).

The worker's own per-stage timings are informative only: the validator measures ``elapsed`` from
dispatch until the commit arrives, so a worker cannot flatter itself. A throughput above
``factor`` x the peak of the claimed model's *fastest exact format* is physically impossible: the
work was not done on that device (or at all), and it is scored as fraud.

Why the fastest exact format and not TF32: the product's entries are small integers, so int8
inputs with int32 accumulation give exactly the same result several times faster than TF32. An
honest worker that uses them is optimised, not cheating (the limits come from
:func:`byteleap.challenge.sizing.impossible_limit` and the model catalogue).
"""

from __future__ import annotations

from byteleap.challenge.params import ChallengeParams
from byteleap.errors import FraudReason, VerificationFailed
from byteleap.hardware import match_model

TERA = 1e12

DEFAULT_IMPOSSIBLE_FACTOR = 1.1


def peak_for(model: str) -> float | None:
    """Dense TF32 peak of the catalogue model ``model`` names; None when it names none or
    several (for reports such as ``byteleap-worker selftest``, never for a verdict)."""
    found = match_model(model)
    return None if found is None else found.dense_tf32_flops


def throughput(params: ChallengeParams, elapsed_seconds: float) -> float:
    """``R * 2 * m * n * k / elapsed`` in FLOP/s."""
    if elapsed_seconds <= 0:
        return float("inf")
    return params.flops / elapsed_seconds


def check_plausible(
    params: ChallengeParams, elapsed_seconds: float, limit_flops: float, claimed: str
) -> float:
    """The challenge's throughput; raises ``VerificationFailed(IMPOSSIBLE_THROUGHPUT)`` when it
    exceeds ``limit_flops`` (see :func:`byteleap.challenge.sizing.impossible_limit`)."""
    rate = throughput(params, elapsed_seconds)
    if rate > limit_flops:
        raise VerificationFailed(
            FraudReason.IMPOSSIBLE_THROUGHPUT,
            f"{rate / TERA:.1f} TFLOP/s claimed on {claimed!r}, above {limit_flops / TERA:.1f}",
        )
    return rate
