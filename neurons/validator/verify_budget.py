"""How much of an epoch the verifier can open exactly, and which reveals it opens.

Exact verification of one GPU's reveal costs tens of milliseconds of CPU (32 ms for the default
GPU challenge). A large subnet has more GPUs per epoch than the pool can verify in one epoch, so
the validator still *requests* every reveal (a worker cannot tell which will be checked) but
verifies each one with probability ``p = min(1, capacity / GPUs)``, drawn from fresh randomness
after the reveal is requested. ``capacity`` is what ``verifier_processes`` can do in
``verify_utilization`` of an epoch at the measured cost per GPU.

A worker that cheats in a fraction of its epochs is then caught with probability ``p x d`` per
cheating epoch, where ``d`` is the per-challenge detection probability of the sampling
(docs/challenge.md states the bound), and one proven fraud zeroes its whole window.

Pure: the measured costs come in, a probability goes out.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the cost assumed before anything was measured (the default GPU challenge on one core)
DEFAULT_VERIFY_S = 0.05
#: weight of the newest measurement in the moving average
EWMA_ALPHA = 0.05


@dataclass
class VerifyBudget:
    """The moving cost of one verification, and the share of an epoch that fits."""

    processes: int
    epoch_s: float
    utilization: float
    mean_verify_s: float = DEFAULT_VERIFY_S

    def observe(self, seconds: float) -> None:
        """One verification took ``seconds`` (CPU time in the pool)."""
        if seconds > 0:
            self.mean_verify_s += EWMA_ALPHA * (seconds - self.mean_verify_s)

    @property
    def capacity(self) -> float:
        """GPUs the pool can verify in one epoch."""
        return self.processes * self.epoch_s * self.utilization / max(self.mean_verify_s, 1e-6)

    def fraction(self, gpus: int) -> float:
        """Probability that one of ``gpus`` reveals of an epoch is verified."""
        if gpus <= 0:
            return 1.0
        return min(1.0, self.capacity / gpus)


__all__ = ["DEFAULT_VERIFY_S", "VerifyBudget"]
