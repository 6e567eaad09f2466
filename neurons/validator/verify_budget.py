"""How much of an epoch the verifier can open exactly, and which reveals it opens.

Exact verification of one GPU's reveal costs tens of milliseconds of CPU (32 ms for the default
GPU challenge). A large subnet has more GPUs per epoch than the pool can verify in one epoch, so
the validator still *requests* every reveal (a worker cannot tell which will be checked) but
verifies each one with probability ``p = min(1, capacity / GPUs)``, drawn from fresh randomness
after the reveal is requested. The reveals not opened exactly can still have their Merkle
paths checked (cheap, but not free at this scale: 2 ms against 14 ms): that catches every
commitment a worker cannot open, in every epoch. It is worth it only while it costs the exact
sample little, so :meth:`VerifyBudget.plan` checks the rest's Merkle paths when that keeps
``p`` within 90 % of what the exact checks alone would get, and skips them otherwise:

    with:    GPUs x (p x exact + (1 - p) x merkle) = processes x epoch x utilization
    without: GPUs x p x exact                      = processes x epoch x utilization

A worker that cheats in a fraction of its epochs is then caught with probability ``p x d`` per
cheating epoch, where ``d`` is the per-challenge detection probability of the sampling
(docs/challenge.md states the bound), and one proven fraud zeroes its whole window.

Pure: the measured costs come in, a probability goes out.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the costs assumed before anything was measured (the default GPU challenge on one core)
DEFAULT_VERIFY_S = 0.05
DEFAULT_MERKLE_S = 0.005
#: weight of the newest measurement in the moving average
EWMA_ALPHA = 0.05


@dataclass
class VerifyBudget:
    """The moving cost of one verification, and the share of an epoch that fits."""

    processes: int
    epoch_s: float
    utilization: float
    mean_verify_s: float = DEFAULT_VERIFY_S
    mean_merkle_s: float = DEFAULT_MERKLE_S

    def observe(self, seconds: float, *, exact: bool = True) -> None:
        """One check took ``seconds`` in the pool: an exact one, or a Merkle-only one."""
        if seconds <= 0:
            return
        if exact:
            self.mean_verify_s += EWMA_ALPHA * (seconds - self.mean_verify_s)
        else:
            self.mean_merkle_s += EWMA_ALPHA * (seconds - self.mean_merkle_s)

    @property
    def pool_seconds(self) -> float:
        """Pool seconds one epoch may spend."""
        return self.processes * self.epoch_s * self.utilization

    @property
    def capacity(self) -> float:
        """GPUs the pool can verify exactly in one epoch, with nothing else to do."""
        return self.pool_seconds / max(self.mean_verify_s, 1e-6)

    def plan(self, gpus: int) -> tuple[float, bool]:
        """``(p, merkle)``: the probability that one of ``gpus`` reveals is verified exactly,
        and whether the others get their Merkle paths checked (see the module docstring)."""
        if gpus <= 0:
            return 1.0, True
        exact, merkle = max(self.mean_verify_s, 1e-6), min(self.mean_merkle_s, self.mean_verify_s)
        if gpus * exact <= self.pool_seconds:
            return 1.0, True
        alone = self.pool_seconds / (gpus * exact)
        extra = self.pool_seconds / gpus - merkle  # per GPU, beyond the Merkle check
        with_merkle = max(0.0, min(1.0, extra / max(exact - merkle, 1e-9)))
        if with_merkle >= 0.9 * alone:
            return with_merkle, True
        return alone, False

    def fraction(self, gpus: int) -> float:
        """Probability that one of ``gpus`` reveals of an epoch is verified exactly."""
        return self.plan(gpus)[0]


__all__ = ["DEFAULT_MERKLE_S", "DEFAULT_VERIFY_S", "VerifyBudget"]
