"""Bodies of the validator -> miner HTTP API (SPEC 1, 2, 4 and 6).

Every request is authenticated by ``btauth/1`` at the HTTP layer; these models are only the bodies.
Bodies travel as codec frames (``application/x-byteleap-frame``) because commitments and revealed
rows are binary. The challenge sub-models (``GpuCommit``, ``OpeningRequest``, ``RowOpening``) are
the worker link's own, so the miner relays the worker's evidence without re-packing it.

The miner signs the evidence it returns (``ChallengeResponse``) with its hotkey over
:func:`evidence_payload`; that binds the worker's signed roots to the miner, the validator that
asked, and the exact challenge, so a proven fraud can be shown to anyone.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from byteleap.challenge.params import ChallengeParams
from byteleap.crypto import frame, u32le
from byteleap.errors import (
    AuthError,
    ByteLeapError,
    Forbidden,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
    RateLimited,
    TransientError,
    Unauthenticated,
    WorkerFailure,
)
from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    MAX_UNIX_SECONDS,
    Bytes32,
    Code,
    DeadlineMs,
    GpuUuid,
    Hotkey,
    Identifier,
    Message,
    NonNegFloat,
    PublicKeyHex,
    ShortName,
    Signature,
    Text,
    UnixSeconds,
    WireModel,
    distinct,
)
from byteleap.protocol.worker_link import (
    GpuCommit,
    OpeningRequest,
    RowOpening,
    WorkerState,
    check_opening_requests,
    check_row_openings,
)

#: domain tag of the miner's hotkey signature over a challenge's evidence
EVIDENCE_TAG = b"byteleap/evidence/v1"
#: most workers one miner may list
MAX_WORKERS = 4096

_GpuList = Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]
_Capability = Annotated[str, Field(max_length=7, pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$")]
_Timestamp = Annotated[float, Field(ge=0.0, le=float(MAX_UNIX_SECONDS))]


def _pubkey_bytes(hex_key: str) -> bytes:
    return bytes.fromhex(hex_key)


def _params_bytes(params: ChallengeParams) -> bytes:
    return struct.pack("<5Q", params.m, params.n, params.k, params.v, params.stages)


def evidence_payload(
    *,
    challenge_id: str,
    validator_hotkey: str,
    miner_hotkey: str,
    worker_pubkey: bytes,
    seed: bytes,
    params: ChallengeParams,
    gpus: Sequence[GpuCommit],
) -> bytes:
    """The bytes the miner signs with its hotkey for a ``ChallengeResponse``.

    ``frame(tag, challenge_id, validator_hotkey, miner_hotkey, worker_pubkey, seed,
    u64le(m, n, k, v, R), u32le(len(gpus)))`` followed, per GPU in order, by
    ``frame(gpu_uuid, roots, worker_signature)``. The worker's informative timings are not signed.
    """
    out = bytearray(
        frame(
            EVIDENCE_TAG,
            challenge_id,
            validator_hotkey,
            miner_hotkey,
            worker_pubkey,
            seed,
            _params_bytes(params),
            u32le(len(gpus)),
        )
    )
    for gpu in gpus:
        out += frame(gpu.gpu_uuid, gpu.roots, gpu.signature)
    return bytes(out)


def _unique_gpus(uuids: list[str]) -> None:
    if not distinct(uuids):
        raise ValueError("gpu_uuids must be distinct")


# --------------------------------------------------------------------------- inventory


class GpuSummary(WireModel):
    """One GPU as the miner reports it to validators."""

    uuid: GpuUuid
    name: ShortName
    memory_total_mib: Annotated[int, Field(ge=0, le=2**40)]
    compute_capability: _Capability | None = None


class WorkerSummary(WireModel):
    """One connected worker."""

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
        _unique_gpus([gpu.uuid for gpu in self.gpus])
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return _pubkey_bytes(self.worker_pubkey)


class InventoryResponse(Message):
    """``GET /inventory``: the miner's connected workers."""

    type: Literal["inventory_response"] = "inventory_response"
    miner_hotkey: Hotkey
    workers: Annotated[list[WorkerSummary], Field(max_length=MAX_WORKERS)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([worker.worker_pubkey for worker in self.workers]):
            raise ValueError("worker_pubkey values must be distinct")
        return self


# --------------------------------------------------------------------------- challenge


class ChallengeRequest(Message):
    """``POST /challenge``: dispatch a challenge to one worker's GPUs and return its commit."""

    type: Literal["challenge_request"] = "challenge_request"
    challenge_id: Identifier
    worker_pubkey: PublicKeyHex
    gpu_uuids: _GpuList
    seed: Bytes32
    params: ChallengeParams
    deadline_ms: DeadlineMs

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _unique_gpus(self.gpu_uuids)
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return _pubkey_bytes(self.worker_pubkey)


class ChallengeResponse(Message):
    """The worker's commitments, relayed and countersigned by the miner's hotkey."""

    type: Literal["challenge_response"] = "challenge_response"
    challenge_id: Identifier
    miner_hotkey: Hotkey
    worker_pubkey: PublicKeyHex
    gpus: Annotated[list[GpuCommit], Field(min_length=1, max_length=MAX_GPUS)]
    #: the miner hotkey's signature of ``evidence_payload(...)`` for this challenge
    miner_signature: Signature

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _unique_gpus([gpu.gpu_uuid for gpu in self.gpus])
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return _pubkey_bytes(self.worker_pubkey)

    def payload(self, *, validator_hotkey: str, seed: bytes, params: ChallengeParams) -> bytes:
        """``evidence_payload`` for this response; the validator supplies what it asked for."""
        return evidence_payload(
            challenge_id=self.challenge_id,
            validator_hotkey=validator_hotkey,
            miner_hotkey=self.miner_hotkey,
            worker_pubkey=self.worker_pubkey_bytes,
            seed=seed,
            params=params,
            gpus=self.gpus,
        )


class OpeningsRequest(Message):
    """``POST /reveal``: open these rows of a committed challenge."""

    type: Literal["openings_request"] = "openings_request"
    challenge_id: Identifier
    worker_pubkey: PublicKeyHex
    openings: Annotated[list[OpeningRequest], Field(min_length=1, max_length=MAX_OPENING_REQUESTS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_opening_requests(self.openings)
        return self


class OpeningsResponse(Message):
    """The revealed rows with their Merkle paths, as the worker sent them."""

    type: Literal["openings_response"] = "openings_response"
    challenge_id: Identifier
    openings: Annotated[list[RowOpening], Field(max_length=MAX_OPENINGS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_row_openings(self.openings)
        return self


# --------------------------------------------------------------------------- leases

LeaseState = Literal["starting", "active", "ended", "unknown"]


class LeaseStartRequest(Message):
    """``POST /lease/start``: lease these GPUs of one worker until ``ends_at``."""

    type: Literal["lease_start_request"] = "lease_start_request"
    lease_id: Identifier
    worker_pubkey: PublicKeyHex
    gpu_uuids: _GpuList
    ends_at: UnixSeconds

    @model_validator(mode="after")
    def _unique(self) -> Self:
        _unique_gpus(self.gpu_uuids)
        return self


class LeaseStartResponse(Message):
    type: Literal["lease_start_response"] = "lease_start_response"
    lease_id: Identifier
    accepted: bool
    reason: Text = ""


class LeaseStopRequest(Message):
    """``POST /lease/stop``."""

    type: Literal["lease_stop_request"] = "lease_stop_request"
    lease_id: Identifier
    reason: Text


class LeaseStopResponse(Message):
    type: Literal["lease_stop_response"] = "lease_stop_response"
    lease_id: Identifier
    stopped: bool
    reason: Text = ""


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


# --------------------------------------------------------------------------- health, errors


class HealthResponse(Message):
    """``GET /health``."""

    type: Literal["health_response"] = "health_response"
    status: Literal["ok", "degraded"]
    miner_hotkey: Hotkey
    version: ShortName
    workers_connected: Annotated[int, Field(ge=0, le=MAX_WORKERS)]
    uptime_s: NonNegFloat


class ApiError(Message):
    """Body of every non-2xx answer. ``code`` is the ``.code`` of a ``ByteLeapError`` class."""

    type: Literal["api_error"] = "api_error"
    code: Code
    message: Text


def http_status_for(exc: ByteLeapError) -> int:
    """The HTTP status an API error of this type is answered with."""
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, MessageTooLarge):
        return 413
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, ProtocolError):
        return 400
    if isinstance(exc, PeerUnavailable):
        return 409
    if isinstance(exc, PeerTimeout):
        return 504
    if isinstance(exc, WorkerFailure):
        return 502
    if isinstance(exc, TransientError):
        return 503
    return 500


ValidatorRequest = Annotated[
    ChallengeRequest | OpeningsRequest | LeaseStartRequest | LeaseStopRequest | LeaseStatusRequest,
    Field(discriminator="type"),
]
"""Every body a validator sends."""

MinerResponse = Annotated[
    InventoryResponse
    | ChallengeResponse
    | OpeningsResponse
    | LeaseStartResponse
    | LeaseStopResponse
    | LeaseStatusResponse
    | HealthResponse
    | ApiError,
    Field(discriminator="type"),
]
"""Every body a miner answers with."""

ValidatorApiMessage = Annotated[
    InventoryResponse
    | ChallengeRequest
    | ChallengeResponse
    | OpeningsRequest
    | OpeningsResponse
    | LeaseStartRequest
    | LeaseStartResponse
    | LeaseStopRequest
    | LeaseStopResponse
    | LeaseStatusRequest
    | LeaseStatusResponse
    | HealthResponse
    | ApiError,
    Field(discriminator="type"),
]
"""Every body of the validator API, either direction."""


__all__ = [
    "EVIDENCE_TAG",
    "MAX_WORKERS",
    "ApiError",
    "ChallengeRequest",
    "ChallengeResponse",
    "GpuSummary",
    "HealthResponse",
    "InventoryResponse",
    "LeaseStartRequest",
    "LeaseStartResponse",
    "LeaseState",
    "LeaseStatusRequest",
    "LeaseStatusResponse",
    "LeaseStopRequest",
    "LeaseStopResponse",
    "MinerResponse",
    "OpeningsRequest",
    "OpeningsResponse",
    "ValidatorApiMessage",
    "ValidatorRequest",
    "WorkerSummary",
    "evidence_payload",
    "http_status_for",
]
