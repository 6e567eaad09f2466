"""Challenge parameters (SPEC 4.1) and the identity every challenge is bound to.

The validator picks the parameters per challenge and sends them with it; the worker refuses any
that break the exactness bound, because a product that is not exact in float32 could not be
verified bit for bit.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: every partial sum of a product must stay an integer float32 represents exactly
EXACT_LIMIT = 2**24

#: hard caps so that a hostile validator cannot make a worker allocate absurd memory
MAX_DIM = 65_536
MAX_STAGES = 100_000


def is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class ChallengeParams(BaseModel):
    """Shape and size of one compute challenge. Frozen and strictly validated."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    m: Annotated[int, Field(ge=2, le=MAX_DIM, description="output rows; a power of two")]
    n: Annotated[int, Field(ge=1, le=MAX_DIM, description="output columns")]
    k: Annotated[int, Field(ge=1, le=MAX_DIM, description="inner dimension")]
    v: Annotated[int, Field(ge=1, le=1024, description="entries are integers in [-v, v]")]
    stages: Annotated[int, Field(ge=1, le=MAX_STAGES, description="chained stages R")]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not is_power_of_two(self.m):
            raise ValueError(f"m must be a power of two, got {self.m}")
        if self.k * self.v * self.v >= EXACT_LIMIT:
            raise ValueError(
                f"k * v * v = {self.k * self.v * self.v} must stay below 2**24 so that every "
                "partial sum is exact in float32"
            )
        return self

    @property
    def depth(self) -> int:
        """Merkle depth: the exact length of every row's proof."""
        return self.m.bit_length() - 1

    @property
    def flops_per_stage(self) -> int:
        return 2 * self.m * self.n * self.k

    @property
    def flops(self) -> int:
        """Work the worker must do: ``R * 2 * m * n * k``."""
        return self.stages * self.flops_per_stage


class SamplingParams(BaseModel):
    """How much of a commitment the validator opens (SPEC 4.4)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    stages: Annotated[int, Field(ge=1, le=1024, description="r: stages opened")] = 4
    rows: Annotated[int, Field(ge=1, le=4096, description="s: rows opened per stage")] = 16
    columns: Annotated[int, Field(ge=1, le=4096, description="e: entries checked per row")] = 4


class Binding(BaseModel):
    """Who and what a challenge is for. Every stage key depends on all of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    miner_hotkey: Annotated[str, Field(min_length=1, max_length=64)]
    worker_pubkey: Annotated[bytes, Field(min_length=32, max_length=32)]
    gpu_uuid: Annotated[str, Field(min_length=1, max_length=128)]


#: sized so that one H100 stage at TF32 takes a few milliseconds; R scales it to the target time
GPU_DEFAULT = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=64)
#: small enough for a CPU worker and for the devnet
CPU_DEFAULT = ChallengeParams(m=256, n=256, k=256, v=15, stages=4)
DEFAULT_SAMPLING = SamplingParams()


def stages_for_target(
    base: ChallengeParams, flops_per_second: float, target_seconds: float
) -> ChallengeParams:
    """``base`` with ``stages`` chosen so that a device doing ``flops_per_second`` needs about
    ``target_seconds``. Never fewer than one stage."""
    if flops_per_second <= 0 or target_seconds <= 0:
        raise ValueError("flops_per_second and target_seconds must be positive")
    stages = max(
        1, min(MAX_STAGES, round(flops_per_second * target_seconds / base.flops_per_stage))
    )
    return base.model_copy(update={"stages": stages})
