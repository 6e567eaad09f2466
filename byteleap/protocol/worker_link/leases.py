"""The worker link's lease messages: the miner starts and stops a lease on the worker.

A validator sends them through the miner's forwarding envelope
(:mod:`byteleap.protocol.miner_api.forward`); the miner relays them unchanged.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from byteleap.protocol.common import (
    MAX_GPUS,
    GpuUuid,
    Identifier,
    Message,
    Text,
    UnixSeconds,
    distinct,
)

_GpuList = Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]


# --------------------------------------------------------------------------- leases


class LeaseStart(Message):
    """miner -> worker: these GPUs are leased until ``ends_at``; stop taking challenges."""

    type: Literal["lease_start"] = "lease_start"
    lease_id: Identifier
    gpu_uuids: _GpuList
    ends_at: UnixSeconds

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct(self.gpu_uuids):
            raise ValueError("gpu_uuids must be distinct")
        return self


class LeaseStop(Message):
    """miner -> worker: the lease ended (expiry, renter termination, …)."""

    type: Literal["lease_stop"] = "lease_stop"
    lease_id: Identifier
    reason: Text


class LeaseAck(Message):
    """worker -> miner: answer to LeaseStart or LeaseStop."""

    type: Literal["lease_ack"] = "lease_ack"
    lease_id: Identifier
    accepted: bool
    reason: Text = ""


__all__ = [
    "LeaseAck",
    "LeaseStart",
    "LeaseStop",
]
