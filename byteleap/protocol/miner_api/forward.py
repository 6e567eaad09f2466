"""Lease bodies of the validator -> miner HTTP API: ``POST /forward`` and ``POST /lease/status``."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from byteleap.protocol.common import (
    MAX_GPUS,
    GpuUuid,
    Identifier,
    Message,
    PublicKeyHex,
    UnixSeconds,
)
from byteleap.protocol.worker_link.jobs import (
    JOB_ANSWERS,
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobLogs,
    JobLogsQuery,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop

# --------------------------------------------------------------------------- leases

LeaseState = Literal["starting", "active", "ended", "unknown"]


class LeaseStatusRequest(Message):
    """``POST /lease/status``."""

    type: Literal["lease_status_request"] = "lease_status_request"
    lease_id: Identifier


class LeaseStatusResponse(Message):
    type: Literal["lease_status_response"] = "lease_status_response"
    lease_id: Identifier
    state: LeaseState
    worker_pubkey: PublicKeyHex | None = None
    gpu_uuids: Annotated[list[GpuUuid], Field(max_length=MAX_GPUS)] = Field(default_factory=list)
    ends_at: UnixSeconds | None = None


# --------------------------------------------------------------------------- forwarding
#
# One envelope carries every message a validator sends to the worker of a lease (lease start and
# stop, every job request) and the worker's answer back. The miner checks the caller, that the
# caller owns the lease and that the lease holds the named worker, once, then relays the
# worker-link message unchanged (but for ``request_id``, which the miner owns on its link and
# restores in the answer). A refusal by the miner (unknown lease, lease ended) is the same
# worker-link answer the worker would give (``JobRefused``, ``LeaseAck(accepted=False)``).

ForwardedMessage = Annotated[
    LeaseStart
    | LeaseStop
    | JobSubmit
    | JobCancel
    | JobStatusQuery
    | JobLogsQuery
    | JobResultQuery
    | ArtifactQuery,
    Field(discriminator="type"),
]
"""A worker-link message a validator may send to the worker of its lease."""

ForwardedAnswer = Annotated[
    LeaseAck | JobAccepted | JobRefused | JobStatus | JobLogs | JobResult | ArtifactChunk,
    Field(discriminator="type"),
]
"""The worker-link answer to a forwarded message."""

#: the answers each forwarded message may get (``JobRefused`` too, for the job requests)
FORWARD_ANSWERS: dict[type[Message], type[Message]] = {
    LeaseStart: LeaseAck,
    LeaseStop: LeaseAck,
    **JOB_ANSWERS,
}


class ForwardRequest(Message):
    """``POST /forward``: relay ``message`` to worker ``worker_pubkey`` under lease ``lease_id``."""

    type: Literal["forward_request"] = "forward_request"
    worker_pubkey: PublicKeyHex
    lease_id: Identifier
    message: ForwardedMessage

    @model_validator(mode="after")
    def _same_lease(self) -> Self:
        if self.message.lease_id != self.lease_id:
            raise ValueError("the forwarded message names another lease than the envelope")
        return self


class ForwardResponse(Message):
    """The worker's answer to a forwarded message (or the miner's refusal in the same shape)."""

    type: Literal["forward_response"] = "forward_response"
    worker_pubkey: PublicKeyHex
    lease_id: Identifier
    message: ForwardedAnswer

    @model_validator(mode="after")
    def _same_lease(self) -> Self:
        if self.message.lease_id != self.lease_id:
            raise ValueError("the forwarded answer names another lease than the envelope")
        return self


__all__ = [
    "FORWARD_ANSWERS",
    "ForwardRequest",
    "ForwardResponse",
    "ForwardedAnswer",
    "ForwardedMessage",
    "LeaseState",
    "LeaseStatusRequest",
    "LeaseStatusResponse",
]
