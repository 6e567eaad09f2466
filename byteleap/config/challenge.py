"""Configuration of ``byteleap-validator``'s challenges and scoring: the challenge shapes and
timing (``challenge:``) and the scorer's windows and weights (``scoring:``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    model_validator,
)

from byteleap.challenge.params import (
    CPU_DEFAULT,
    DEFAULT_SAMPLING,
    GPU_DEFAULT,
    ChallengeParams,
    SamplingParams,
)
from byteleap.config._base import (
    Seconds,
    Section,
)
from byteleap.config.common import (
    cross_check,
)

if TYPE_CHECKING:
    from byteleap.scoring.params import ScoringParams


def _over_default(default: BaseModel) -> Callable[[Any], Any]:
    """A before-validator that reads a partial mapping as changes to ``default``.

    So ``challenge.gpu: {stages: 32}`` (or ``BYTELEAP_CHALLENGE__GPU__STAGES=32``) keeps the
    other GPU defaults instead of demanding every field.
    """

    def merge(value: Any) -> Any:
        if value is None:
            return default
        if isinstance(value, Mapping):
            return {**default.model_dump(), **value}
        return value

    return merge


GpuParams = Annotated[ChallengeParams, BeforeValidator(_over_default(GPU_DEFAULT))]


CpuParams = Annotated[ChallengeParams, BeforeValidator(_over_default(CPU_DEFAULT))]


Sampling = Annotated[SamplingParams, BeforeValidator(_over_default(DEFAULT_SAMPLING))]


class ChallengeSection(Section):
    """How often and how hard workers are challenged (SPEC 4, 4.5)."""

    interval_s: Seconds = Field(
        default=600.0,
        description="mean seconds between two challenge epochs; at each epoch every idle, "
        "challengeable GPU of every miner is challenged at once",
    )
    jitter: float = Field(
        default=0.25,
        ge=0.0,
        le=0.9,
        description="each epoch starts interval_s x a random factor in [1 - jitter, 1 + jitter] "
        "after the previous one, drawn from the operating system's CSPRNG, so no miner can "
        "predict it",
    )
    plan_interval_s: Seconds = Field(
        default=5.0, description="seconds between two looks for an epoch that is due"
    )
    epoch_spread_s: Seconds = Field(
        default=2.0,
        description="target time from the first to the last dispatch of an epoch; every "
        "deadline runs from the first dispatch, so a GPU dispatched later has less slack. A "
        "longer spread is logged (metric byteleap_validator_epoch_spread_seconds)",
    )
    target_seconds: Seconds = Field(
        default=5.0,
        description="compute time a GPU challenge should take at the claimed model's expected "
        "throughput; the number of stages is sized to it. (2 - deadline_factor) x "
        "target_seconds must exceed deadline_grace_s (one card cannot answer two claims) and "
        "(deadline_factor - 1) x target_seconds must cover epoch_spread_s",
    )
    cpu_expected_flops: float = Field(
        default=2e9,
        gt=0.0,
        le=1e15,
        description="FLOP/s expected of a CPU device before calibration (CPU challenges use "
        "challenge.cpu as given, not sized)",
    )
    cpu_workers: bool = Field(
        default=False,
        description="challenge and lease CPU devices (uuid CPU-...); for the devnet and tests "
        "only: a CPU device is never priced or shown as a GPU",
    )
    unknown_flops: float | None = Field(
        default=None,
        gt=0.0,
        le=1e16,
        description="FLOP/s a GPU of unknown model is sized at; default: the slowest model in "
        "the catalogue",
    )
    deadline_factor: float = Field(
        default=1.5,
        ge=1.0,
        le=1.5,
        description="a commit is late deadline_factor x expected seconds + the miner's round "
        "trip after the epoch's first dispatch; at most 1.5, so no card can finish two "
        "challenges of its own model before one deadline",
    )
    deadline_grace_s: Seconds = Field(
        default=0.25,
        description="most seconds of the miner's measured round trip the deadline adds (a miner "
        "controls how slowly it answers polls, so this stays small next to target_seconds)",
    )
    calibration_hours: int = Field(
        default=24,
        ge=1,
        le=24 * 14,
        description="verified throughputs of this window calibrate each model's expected "
        "throughput",
    )
    calibration_percentile: float = Field(
        default=25.0,
        gt=0.0,
        lt=100.0,
        description="the expected throughput of a model is this low percentile of the per-miner "
        "median throughputs verified for it",
    )
    calibration_min_miners: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description="miners with verified challenges of a model needed before the network's "
        "figure replaces the catalogue's",
    )
    calibration_min_samples: int = Field(
        default=12,
        ge=1,
        le=100_000,
        description="verified challenges of a model a miner needs in the window before it votes "
        "in that model's calibration",
    )
    calibration_floor: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="the calibrated throughput never falls below this share of the catalogue "
        "figure (bounds what slow sybils can do to everyone's deadlines)",
    )
    verify_utilization: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of an epoch the verifier processes may spend verifying; past it, a "
        "random subset of the reveals is verified (every reveal is still requested)",
    )
    reveal_timeout_s: Seconds = Field(
        default=30.0, description="seconds a worker has to answer the reveal request"
    )
    max_concurrency: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="reveal exchanges and verifications in flight at once (dispatch is not "
        "limited: an epoch challenges everything at once)",
    )
    verifier_processes: int = Field(
        default=2,
        ge=1,
        le=256,
        description="processes that verify revealed rows, so verification never blocks the "
        "event loop",
    )
    excused_warning_rate: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="a miner whose recent challenges are excused more often than this is "
        "logged as a warning (excuses are the miner's own claims)",
    )
    impossible_throughput_factor: float = Field(
        default=1.1,
        gt=1.0,
        description="throughput above this multiple of the claimed model's fastest exact "
        "format peak (int8) is fraud",
    )
    gpu: GpuParams = Field(
        default=GPU_DEFAULT,
        description="matrix shape for GPU workers; stages is recomputed from target_seconds",
    )
    cpu: CpuParams = Field(
        default=CPU_DEFAULT, description="matrix shape for CPU-only workers (devnet)"
    )
    sampling: Sampling = Field(
        default=DEFAULT_SAMPLING,
        description="how much of each commitment is opened: r stages, s rows, e columns",
    )

    @model_validator(mode="after")
    def _sampling_fits(self) -> Self:
        # every deadline of an epoch runs from its first dispatch. One card behind two claims
        # finishes the second 2 x expected after it: late, as long as the round-trip allowance
        # is smaller than (2 - deadline_factor) x expected
        cross_check(
            (2.0 - self.deadline_factor) * self.target_seconds > self.deadline_grace_s,
            f"challenge.deadline_grace_s ({self.deadline_grace_s:g}) must stay below "
            f"(2 - deadline_factor) x target_seconds "
            f"({(2.0 - self.deadline_factor) * self.target_seconds:g}), or one card could "
            "answer two claims before the deadline",
        )
        # and an honest claim dispatched at the end of the spread still has its full time
        cross_check(
            (self.deadline_factor - 1.0) * self.target_seconds >= self.epoch_spread_s,
            f"challenge.epoch_spread_s ({self.epoch_spread_s:g}) must not exceed "
            f"(deadline_factor - 1) x target_seconds "
            f"({(self.deadline_factor - 1.0) * self.target_seconds:g}), or an honest GPU "
            "dispatched late in the epoch could miss its deadline",
        )
        rows = min(self.gpu.m, self.cpu.m)
        columns = min(self.gpu.n, self.cpu.n)
        cross_check(
            self.sampling.rows <= rows,
            f"challenge.sampling.rows ({self.sampling.rows}) exceeds the rows of a challenge "
            f"({rows})",
        )
        cross_check(
            self.sampling.columns <= columns,
            f"challenge.sampling.columns ({self.sampling.columns}) exceeds the columns of a "
            f"challenge ({columns})",
        )
        return self


class ScoringSection(Section):
    """How observations become weights (SPEC 5)."""

    lease_weight: float = Field(
        default=0.7, ge=0, le=1, description="share of the score from lease revenue"
    )
    challenge_weight: float = Field(
        default=0.3, ge=0, le=1, description="share of the score from proven compute"
    )
    challenge_window_hours: int = Field(
        default=24, ge=1, description="window of challenge results that counts"
    )
    lease_window_hours: int = Field(
        default=168, ge=1, description="window of lease receipts that counts"
    )
    excuse_budget: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="share of a GPU's challenges in the window its miner may excuse (busy, "
        "unavailable, a dropped link); excuses beyond it count as failures, so one card behind "
        "several claims gains at most 1 / (1 - excuse_budget)",
    )
    claim_expiry_days: int = Field(
        default=7,
        ge=1,
        description="a GPU claim that no worker of its miner has reported for this many days no "
        "longer blocks a later claimant (a miner may move its UUIDs between its own workers)",
    )
    bucket_minutes: int = Field(default=5, ge=1, le=1440, description="availability bucket length")
    availability_hours: int = Field(
        default=169, ge=1, description="availability window (169 h of 5-minute buckets = 2028)"
    )
    weights_interval_blocks: int | None = Field(
        default=None, ge=1, description="blocks between weight submissions; default the tempo"
    )
    weights_check_interval_s: Seconds = Field(
        default=12.0,
        description="seconds between looks at the current block to see whether weights are due",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        total = self.lease_weight + self.challenge_weight
        cross_check(
            math.isclose(total, 1.0, abs_tol=1e-9),
            f"scoring.lease_weight + scoring.challenge_weight must be 1, got {total:g}",
        )
        cross_check(
            (self.availability_hours * 60) % self.bucket_minutes == 0,
            f"scoring.bucket_minutes ({self.bucket_minutes}) must divide the availability "
            f"window of {self.availability_hours} hours evenly",
        )
        return self

    @property
    def availability_buckets(self) -> int:
        """Buckets in the availability window (2028 with the defaults)."""
        return self.availability_hours * 60 // self.bucket_minutes

    def to_params(self) -> ScoringParams:
        """The scorer's parameters (``byteleap.scoring.ScoringParams``) for this section."""
        from byteleap.scoring.params import ScoringParams

        return ScoringParams(
            challenge_window=timedelta(hours=self.challenge_window_hours),
            lease_window=timedelta(hours=self.lease_window_hours),
            bucket_seconds=self.bucket_minutes * 60,
            availability_horizon=timedelta(hours=self.availability_hours),
            lease_weight=self.lease_weight,
            challenge_weight=self.challenge_weight,
            excuse_budget=self.excuse_budget,
            claim_expiry=timedelta(days=self.claim_expiry_days),
        )
