"""``GET /inventory`` and ``GET /health``: what a miner tells validators about itself."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_U63,
    MAX_UNIX_SECONDS,
    MAX_WORKERS,
    GpuUuid,
    Hotkey,
    Message,
    NonNegFloat,
    PublicKeyHex,
    ShortName,
    WireModel,
    check_distinct_gpus,
    distinct,
)
from byteleap.protocol.worker_link.session import WorkerState

_Capability = Annotated[str, Field(max_length=7, pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$")]
_Timestamp = Annotated[float, Field(ge=0.0, le=float(MAX_UNIX_SECONDS))]


# --------------------------------------------------------------------------- inventory


class GpuSummary(WireModel):
    """One GPU as the miner reports it to validators."""

    uuid: GpuUuid
    name: ShortName
    memory_total_mib: Annotated[int, Field(ge=0, le=2**40)]
    compute_capability: _Capability | None = None


class WorkerSummary(WireModel):
    """One connected worker: at most ``MAX_GPUS`` GPUs (refused while decoding, before the
    worker is built)."""

    worker_pubkey: PublicKeyHex
    state: WorkerState
    gpus: Annotated[list[GpuSummary], Field(max_length=MAX_GPUS)]
    #: unix time of the worker's last heartbeat, by the miner's clock
    last_heartbeat: _Timestamp
    agent_version: ShortName | None = None
    backends: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_.-]+$")]],
        Field(max_length=16),
    ] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        check_distinct_gpus([gpu.uuid for gpu in self.gpus])
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return bytes.fromhex(self.worker_pubkey)


class InventoryResponse(Message):
    """``GET /inventory``: the miner's connected workers.

    Bounded per miner (SPEC 5.5): at most ``MAX_WORKERS`` workers of at most ``MAX_GPUS`` GPUs
    each, refused while decoding: pydantic checks a list's length before it validates a single
    item, so an oversized inventory is never built. The body is at most ``MAX_INVENTORY_BYTES``.
    A validator may configure lower limits (``miners.max_workers``,
    ``miners.max_gpus_per_worker``) and refuses an inventory over them whole.
    """

    type: Literal["inventory_response"] = "inventory_response"
    miner_hotkey: Hotkey
    workers: Annotated[list[WorkerSummary], Field(max_length=MAX_WORKERS)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([worker.worker_pubkey for worker in self.workers]):
            raise ValueError("worker_pubkey values must be distinct")
        return self


# --------------------------------------------------------------------------- health, errors


class HealthResponse(Message):
    """``GET /health``."""

    type: Literal["health_response"] = "health_response"
    status: Literal["ok", "degraded"]
    miner_hotkey: Hotkey
    version: ShortName
    #: a count, not a list (it costs nothing to decode): a miner may have more workers
    #: connected than the ``MAX_WORKERS`` its inventory lists
    workers_connected: Annotated[int, Field(ge=0, le=MAX_U63)]
    uptime_s: NonNegFloat


__all__ = [
    "GpuSummary",
    "HealthResponse",
    "InventoryResponse",
    "WorkerSummary",
]
