"""Throughput from the validator's own clock, and the "impossibly fast" check (SPEC 4.4).

The worker's own per-stage timings are informative only: the validator measures ``elapsed`` from
dispatch until the commit arrives, so a worker cannot flatter itself. A throughput above
``factor`` x the dense peak of the GPU model it claims is physically impossible: it means the work
was not done on that GPU (or at all), and it is scored as fraud.

Peaks are dense (non-sparse) TF32 tensor-core figures from the vendors' datasheets, in FLOP/s.
Where a datasheet gives several variants we keep the fastest, so that an honest GPU is never
flagged; an unknown model gets the fastest peak in the table, so naming an exotic model does not
escape the check.
"""

from __future__ import annotations

from byteleap.challenge.params import ChallengeParams
from byteleap.errors import FraudReason, VerificationFailed

TERA = 1e12

#: model-name fragment (matched case-insensitively, longest first) -> dense TF32 FLOP/s
DENSE_TF32_PEAK: dict[str, float] = {
    "GB200": 1250 * TERA,
    "B200": 1125 * TERA,
    "H200": 494.7 * TERA,
    "H100 PCIe": 378 * TERA,
    "H100": 494.7 * TERA,
    "H800": 494.7 * TERA,
    "GH200": 494.7 * TERA,
    "A100": 156 * TERA,
    "A800": 156 * TERA,
    "L40S": 183 * TERA,
    "L40": 90.5 * TERA,
    "L4": 60 * TERA,
    "A40": 74.8 * TERA,
    "A10": 62.5 * TERA,
    "RTX 6000 Ada": 182.1 * TERA,
    "RTX A6000": 154.8 * TERA,
    "RTX 5090": 104.8 * TERA,
    "RTX 4090": 82.6 * TERA,
    "RTX 3090": 35.6 * TERA,
    # CPU workers (devnet and CPU-class hosts): a generous cap far above any CPU's FP32 rate
    "CPU": 20 * TERA,
}

DEFAULT_IMPOSSIBLE_FACTOR = 1.1


def peak_for(model: str) -> float:
    """Dense TF32 peak of ``model``; the highest known peak when the model is unknown."""
    name = model.lower()
    for fragment in sorted(DENSE_TF32_PEAK, key=len, reverse=True):
        if fragment.lower() in name:
            return DENSE_TF32_PEAK[fragment]
    return max(DENSE_TF32_PEAK.values())


def throughput(params: ChallengeParams, elapsed_seconds: float) -> float:
    """``R * 2 * m * n * k / elapsed`` in FLOP/s."""
    if elapsed_seconds <= 0:
        return float("inf")
    return params.flops / elapsed_seconds


def check_plausible(
    params: ChallengeParams,
    elapsed_seconds: float,
    model: str,
    factor: float = DEFAULT_IMPOSSIBLE_FACTOR,
) -> float:
    """The challenge's throughput; raises ``VerificationFailed(IMPOSSIBLE_THROUGHPUT)`` when it
    exceeds ``factor`` times the claimed model's dense peak."""
    rate = throughput(params, elapsed_seconds)
    limit = factor * peak_for(model)
    if rate > limit:
        raise VerificationFailed(
            FraudReason.IMPOSSIBLE_THROUGHPUT,
            f"{rate / TERA:.1f} TFLOP/s claimed on {model!r}, above {limit / TERA:.1f}",
        )
    return rate
