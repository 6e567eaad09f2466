"""Request and response bodies of the renter API; the OpenAPI schema is generated from them.

Requests are strict about shape (unknown fields are refused) and bounded (every string, list and
number has a limit), so a body that validates can be passed on to the miner as it is. Times are
ISO 8601 UTC; money is in the validator's price unit per GPU-hour.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from byteleap.config.leasing import MAX_PRICE
from byteleap.protocol.common import MAX_GPUS
from byteleap.protocol.worker_link.jobs import (
    MAX_JOB_ARGS,
    MAX_JOB_ENV,
    MAX_JOB_TIMEOUT_S,
    EnvName,
    EnvValue,
    ImageRef,
    JobArg,
    JobState,
)
from byteleap.sessions.lease_events import LeaseStatus

#: longest lease duration or extension a request may name at all (the config caps it lower)
MAX_HOURS = 24 * 366


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- capacity


class CapacityLine(_Response):
    model: str = Field(description="GPU model as the worker's NVML reports it")
    vram_mib: int = Field(description="memory of one GPU, MiB")
    count: int = Field(description="GPUs of this model and memory that can be leased now")
    max_per_lease: int = Field(
        description="most of them one lease can get (a lease is served by one worker)"
    )
    price_per_gpu_hour: float
    region: str | None = Field(default=None, description="where the GPUs are; not known yet")


class Capacity(_Response):
    gpus: list[CapacityLine]


# --------------------------------------------------------------------------- leases


class LeaseCreate(_Request):
    model: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description='fragment of the GPU model name, case-insensitive ("H100"); any when null',
    )
    count: Annotated[int, Field(ge=1, le=MAX_GPUS)] = Field(description="GPUs, on one worker")
    min_vram_mib: Annotated[int, Field(ge=0, le=2**40)] = 0
    duration_hours: Annotated[float, Field(gt=0, le=MAX_HOURS)]
    max_price_per_gpu_hour: Annotated[float, Field(ge=0, le=MAX_PRICE)]


class LeaseExtend(_Request):
    hours: Annotated[float, Field(gt=0, le=MAX_HOURS)]


class LeaseView(_Response):
    id: str
    status: LeaseStatus
    gpus: int
    gpu_uuids: list[str]
    miner_hotkey: str
    worker_pubkey: str
    price_per_gpu_hour: float
    created_at: datetime
    started_at: datetime | None
    ends_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    cost: float = Field(description="what the lease is booked at: price x GPUs x hours")


class LeaseList(_Response):
    leases: list[LeaseView]


# --------------------------------------------------------------------------- jobs


class JobCreate(_Request):
    image: ImageRef = Field(description="container image reference")
    command: Annotated[list[JobArg], Field(max_length=MAX_JOB_ARGS)] = Field(
        default_factory=list, description="argument list (no shell)"
    )
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=MAX_JOB_ENV)] = Field(
        default_factory=dict
    )
    timeout_s: Annotated[int, Field(ge=1, le=MAX_JOB_TIMEOUT_S)] = 3600


class JobView(_Response):
    id: str
    lease_id: str
    state: JobState
    exit_code: int | None
    submitted_at: float | None = Field(description="unix time by the worker's clock")
    started_at: float | None
    ended_at: float | None
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    cancel_requested: bool
    error: str


class Artifact(_Response):
    name: str
    size: int
    sha256: str = Field(description="hex")


class JobResultView(_Response):
    job: JobView
    artifacts: list[Artifact]
    artifacts_omitted: int = Field(description="files left out (links, over the size cap, ...)")


__all__ = [
    "MAX_HOURS",
    "Artifact",
    "Capacity",
    "CapacityLine",
    "JobCreate",
    "JobResultView",
    "JobView",
    "LeaseCreate",
    "LeaseExtend",
    "LeaseList",
    "LeaseView",
]
