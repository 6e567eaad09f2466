"""Every knob of the scorer (SPEC 5) in one frozen, validated model.

The validator's configuration maps onto this model; the scorer never reads configuration itself.
Durations accept a :class:`~datetime.timedelta`, a number of seconds or an ISO 8601 duration, so
the same model validates YAML values directly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: how far ``lease_weight + challenge_weight`` may stray from 1 (it is a float typed in YAML)
WEIGHT_SUM_TOLERANCE = 1e-9


class ScoringParams(BaseModel):
    """Windows, bucket size, the lease/challenge split, the excuse budget and claim expiry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    challenge_window: Annotated[
        timedelta, Field(description="window of challenges behind a GPU's perf (unleased time)")
    ] = timedelta(hours=24)
    lease_window: Annotated[
        timedelta, Field(description="window of lease usage counted as revenue")
    ] = timedelta(days=7)
    bucket_seconds: Annotated[
        int, Field(ge=1, le=86_400, description="size of an availability bucket in seconds")
    ] = 300
    availability_horizon: Annotated[
        timedelta, Field(description="how far back availability is observed")
    ] = timedelta(hours=169)
    lease_weight: Annotated[
        float, Field(ge=0.0, le=1.0, allow_inf_nan=False, description="weight of the lease share")
    ] = 0.7
    challenge_weight: Annotated[
        float,
        Field(ge=0.0, le=1.0, allow_inf_nan=False, description="weight of the challenge share"),
    ] = 0.3
    excuse_budget: Annotated[
        float,
        Field(
            ge=0.0,
            le=1.0,
            allow_inf_nan=False,
            description="share of a GPU's challenges in the window the miner may excuse; "
            "excuses beyond it count as failures",
        ),
    ] = 0.05
    claim_expiry: Annotated[
        timedelta,
        Field(
            description="a GPU claim that no worker of its miner has reported for this long no "
            "longer blocks a later claimant"
        ),
    ] = timedelta(days=7)

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("challenge_window", "lease_window", "availability_horizon", "claim_expiry"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        total = self.lease_weight + self.challenge_weight
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ValueError(
                f"lease_weight + challenge_weight must be 1, got {self.lease_weight} + "
                f"{self.challenge_weight} = {total}"
            )
        horizon = self.availability_horizon
        bucket = timedelta(seconds=self.bucket_seconds)
        if horizon % bucket:
            raise ValueError(
                f"availability_horizon ({horizon}) must be a whole number of "
                f"{self.bucket_seconds}-second buckets"
            )
        return self

    @property
    def availability_buckets(self) -> int:
        """Number of buckets in the availability horizon (2028 with the defaults)."""
        return self.availability_horizon // timedelta(seconds=self.bucket_seconds)
