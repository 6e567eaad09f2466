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
from typing import Annotated, Final, Literal, Self

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
    MAX_INVENTORY_BYTES,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    MAX_U63,
    MAX_UNIX_SECONDS,
    MAX_WORKERS,
    Bytes32,
    Code,
    DeadlineMs,
    GpuUuid,
    Hotkey,
    Identifier,
    Message,
    NonNegFloat,
    PublicKeyHex,
    Seq,
    ShortName,
    Signature,
    Text,
    UnixSeconds,
    WireModel,
    distinct,
)
from byteleap.protocol.worker_link import (
    JOB_ANSWERS,
    MAX_ARTIFACT_CHUNK,
    MAX_ARTIFACTS,
    MAX_LOG_SLICE,
    ArtifactChunk,
    ArtifactInfo,
    ArtifactName,
    ArtifactQuery,
    ByteCount,
    GpuCommit,
    JobAccepted,
    JobCancel,
    JobId,
    JobInfo,
    JobLogs,
    JobLogSlice,
    JobLogsQuery,
    JobRefusal,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
    LeaseAck,
    LeaseStart,
    LeaseStop,
    OpeningRequest,
    RowOpening,
    WorkerState,
    check_opening_requests,
    check_row_openings,
)

#: domain tag of the miner's hotkey signature over a challenge's evidence
EVIDENCE_TAG = b"byteleap/evidence/v1"
#: most receipts in one ``GET /receipts`` page (keeps the page's JSON header far below its cap)
MAX_RECEIPTS_PAGE = 200
#: the receipt format this code writes and reads
RECEIPT_VERSION: Final = 1
#: highest price per GPU-hour a receipt may carry, in micro-units (a billion units)
MAX_PRICE_MICROS = 10**15

ReceiptKind = Literal["start", "hourly", "end"]

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
        _unique_gpus([gpu.uuid for gpu in self.gpus])
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return _pubkey_bytes(self.worker_pubkey)


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


class EpochRequest(Message):
    """``POST /epoch``: every challenge of one epoch for this miner, one per worker, in one request.

    The miner dispatches them all at once and streams one record per challenge back (a
    ``ChallengeResponse`` or an :class:`EpochFailure`, see ``byteleap.protocol.stream``) as each
    finishes, so the validator times every commit on its own clock (SPEC 4.5).
    """

    type: Literal["epoch_request"] = "epoch_request"
    epoch_id: Identifier
    challenges: Annotated[list[ChallengeRequest], Field(min_length=1, max_length=MAX_WORKERS)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([challenge.challenge_id for challenge in self.challenges]):
            raise ValueError("challenge_id values must be distinct")
        if not distinct([challenge.worker_pubkey for challenge in self.challenges]):
            raise ValueError("worker_pubkey values must be distinct")
        return self


class EpochFailure(Message):
    """One record of an epoch stream: the miner got no commit for this challenge.

    ``code`` and ``message`` are those of the ``ApiError`` the same failure gets on
    ``POST /challenge`` (``unavailable``, ``timeout``, ``worker_failure``, ``malformed``, ...).
    """

    type: Literal["epoch_failure"] = "epoch_failure"
    challenge_id: Identifier
    code: Code
    message: Text


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


# --------------------------------------------------------------------------- jobs
#
# A job request names a lease the caller started; the miner routes it to the worker holding the
# lease. Every answer is a 200 with either its payload or ``refusal`` set (a typed reason, with
# ``reason`` in words): refusals are answers, not failures. Failures (worker offline, timeout,
# not the lease's owner, ...) are ``ApiError``s like on every other route.


class _JobQuery(Message):
    lease_id: Identifier
    job_id: JobId


class _JobAnswer(Message):
    lease_id: Identifier
    job_id: JobId
    #: set when the request was refused; the payload fields are then empty
    refusal: JobRefusal | None = None
    reason: Text = ""


class JobSubmitRequest(_JobQuery):
    """``POST /lease/job/submit``: run a job on the lease's GPUs."""

    type: Literal["job_submit_request"] = "job_submit_request"
    spec: JobSpec


class JobSubmitResponse(_JobAnswer):
    type: Literal["job_submit_response"] = "job_submit_response"
    job: JobInfo | None = None

    @property
    def accepted(self) -> bool:
        return self.refusal is None and self.job is not None


class JobStatusRequest(_JobQuery):
    """``POST /lease/job/status``."""

    type: Literal["job_status_request"] = "job_status_request"


class JobStatusResponse(_JobAnswer):
    type: Literal["job_status_response"] = "job_status_response"
    job: JobInfo | None = None


class JobCancelRequest(_JobQuery):
    """``POST /lease/job/cancel``: stop the job (SIGTERM, then SIGKILL)."""

    type: Literal["job_cancel_request"] = "job_cancel_request"


class JobCancelResponse(_JobAnswer):
    type: Literal["job_cancel_response"] = "job_cancel_response"
    job: JobInfo | None = None


class JobLogsRequest(_JobQuery):
    """``POST /lease/job/logs``: up to ``limit`` bytes of stdout and of stderr from the offsets."""

    type: Literal["job_logs_request"] = "job_logs_request"
    stdout_offset: ByteCount = 0
    stderr_offset: ByteCount = 0
    limit: Annotated[int, Field(ge=1, le=MAX_LOG_SLICE)] = 64 * 1024


class JobLogsResponse(_JobAnswer):
    type: Literal["job_logs_response"] = "job_logs_response"
    logs: JobLogSlice | None = None


class JobResultRequest(_JobQuery):
    """``POST /lease/job/result``: the job's state and, once it ended, its artifacts."""

    type: Literal["job_result_request"] = "job_result_request"


class JobResultResponse(_JobAnswer):
    type: Literal["job_result_response"] = "job_result_response"
    job: JobInfo | None = None
    artifacts: Annotated[list[ArtifactInfo], Field(max_length=MAX_ARTIFACTS)] = Field(
        default_factory=list
    )
    artifacts_omitted: ByteCount = 0


class JobArtifactRequest(_JobQuery):
    """``POST /lease/job/artifact``: up to ``limit`` bytes of one artifact from ``offset``."""

    type: Literal["job_artifact_request"] = "job_artifact_request"
    name: ArtifactName
    offset: ByteCount = 0
    limit: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_CHUNK)] = MAX_ARTIFACT_CHUNK


class JobArtifactResponse(_JobAnswer):
    type: Literal["job_artifact_response"] = "job_artifact_response"
    artifact: ArtifactInfo | None = None
    offset: ByteCount = 0
    data: Annotated[bytes, Field(max_length=MAX_ARTIFACT_CHUNK)] = b""
    eof: bool = False


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


# --------------------------------------------------------------------------- receipts


class Receipt(WireModel):
    """One usage receipt (``byteleap.leases.receipts`` has its canonical bytes and rules).

    Build it, then sign ``byteleap.leases.receipts.signing_payload(receipt)``.
    """

    version: Literal[1] = 1
    netuid: Annotated[int, Field(ge=0, le=65_535)]
    lease_id: Identifier
    #: position in this validator's chain for the lease: 0 for "start", then growing
    seq: Seq
    kind: ReceiptKind
    validator_hotkey: Hotkey
    miner_hotkey: Hotkey
    worker_pubkey: PublicKeyHex
    #: the leased GPUs, sorted
    gpu_uuids: Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]
    #: ``len(gpu_uuids)``, spelled out so a reader of the JSON sees the billed count
    gpus: Annotated[int, Field(ge=1, le=MAX_GPUS)]
    #: price per GPU-hour in micro-units of the validator's currency
    price_per_gpu_hour_micros: Annotated[int, Field(ge=0, le=MAX_PRICE_MICROS)]
    #: the usage this receipt bills: ``[period_start, period_end)``, unix seconds
    period_start: UnixSeconds
    period_end: UnixSeconds
    #: when the validator issued it, unix seconds
    issued_at: UnixSeconds

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if not distinct(self.gpu_uuids):
            raise ValueError("gpu_uuids must be distinct")
        if self.gpu_uuids != sorted(self.gpu_uuids):
            raise ValueError("gpu_uuids must be sorted")
        if self.gpus != len(self.gpu_uuids):
            raise ValueError(f"gpus is {self.gpus} but {len(self.gpu_uuids)} GPUs are listed")
        return self

    @property
    def seconds(self) -> int:
        """Length of the billed period."""
        return self.period_end - self.period_start

    @property
    def amount_micros(self) -> int:
        """What the period costs, in micro-units, rounded down: ``price × gpus × hours``."""
        return self.price_per_gpu_hour_micros * self.gpus * self.seconds // 3600


class SignedReceipt(WireModel):
    """A receipt with the validator's signature and (once countersigned) the miner's."""

    receipt: Receipt
    #: the validator hotkey's sr25519 signature of ``signing_payload(receipt)``
    validator_signature: Signature
    #: the miner hotkey's sr25519 signature of the same bytes
    miner_signature: Signature


class ReceiptSubmitRequest(Message):
    """``POST /lease/receipt``: a receipt the calling validator signed, for the miner to
    countersign (``byteleap.leases.receipts``)."""

    type: Literal["receipt_submit_request"] = "receipt_submit_request"
    receipt: Receipt
    #: the caller's sr25519 signature of ``signing_payload(receipt)``
    validator_signature: Signature


class ReceiptSubmitResponse(Message):
    """The receipt with both signatures, as the miner stored it."""

    type: Literal["receipt_submit_response"] = "receipt_submit_response"
    signed: SignedReceipt
    #: the receipt's position in ``GET /receipts``
    cursor: Annotated[int, Field(ge=1, le=MAX_U63)]


class ReceiptPage(Message):
    """``GET /receipts?after=<cursor>&limit=<n>``: stored receipts after ``cursor``, oldest first.

    ``cursors[i]`` is the position of ``receipts[i]``; ask again with ``after=next_cursor``
    while ``more`` is true.
    """

    type: Literal["receipt_page"] = "receipt_page"
    miner_hotkey: Hotkey
    receipts: Annotated[list[SignedReceipt], Field(max_length=MAX_RECEIPTS_PAGE)] = Field(
        default_factory=list
    )
    cursors: Annotated[
        list[Annotated[int, Field(ge=1, le=MAX_U63)]], Field(max_length=MAX_RECEIPTS_PAGE)
    ] = Field(default_factory=list)
    next_cursor: Annotated[int, Field(ge=0, le=MAX_U63)]
    more: bool

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.cursors) != len(self.receipts):
            raise ValueError("one cursor per receipt")
        if any(b <= a for a, b in zip(self.cursors, self.cursors[1:], strict=False)):
            raise ValueError("cursors must increase")
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
    ChallengeRequest
    | EpochRequest
    | OpeningsRequest
    | LeaseStartRequest
    | LeaseStopRequest
    | LeaseStatusRequest
    | JobSubmitRequest
    | JobStatusRequest
    | JobCancelRequest
    | JobLogsRequest
    | JobResultRequest
    | JobArtifactRequest
    | ReceiptSubmitRequest
    | ForwardRequest,
    Field(discriminator="type"),
]
"""Every body a validator sends."""

MinerResponse = Annotated[
    InventoryResponse
    | ChallengeResponse
    | EpochFailure
    | OpeningsResponse
    | LeaseStartResponse
    | LeaseStopResponse
    | LeaseStatusResponse
    | JobSubmitResponse
    | JobStatusResponse
    | JobCancelResponse
    | JobLogsResponse
    | JobResultResponse
    | JobArtifactResponse
    | ReceiptSubmitResponse
    | ForwardResponse
    | ReceiptPage
    | HealthResponse
    | ApiError,
    Field(discriminator="type"),
]
"""Every body a miner answers with."""

ValidatorApiMessage = Annotated[
    InventoryResponse
    | ChallengeRequest
    | ChallengeResponse
    | EpochRequest
    | EpochFailure
    | OpeningsRequest
    | OpeningsResponse
    | LeaseStartRequest
    | LeaseStartResponse
    | LeaseStopRequest
    | LeaseStopResponse
    | LeaseStatusRequest
    | LeaseStatusResponse
    | JobSubmitRequest
    | JobSubmitResponse
    | JobStatusRequest
    | JobStatusResponse
    | JobCancelRequest
    | JobCancelResponse
    | JobLogsRequest
    | JobLogsResponse
    | JobResultRequest
    | JobResultResponse
    | JobArtifactRequest
    | JobArtifactResponse
    | ReceiptSubmitRequest
    | ReceiptSubmitResponse
    | ForwardRequest
    | ForwardResponse
    | ReceiptPage
    | HealthResponse
    | ApiError,
    Field(discriminator="type"),
]
"""Every body of the validator API, either direction."""


__all__ = [
    "EVIDENCE_TAG",
    "FORWARD_ANSWERS",
    "MAX_INVENTORY_BYTES",
    "MAX_PRICE_MICROS",
    "MAX_RECEIPTS_PAGE",
    "MAX_WORKERS",
    "RECEIPT_VERSION",
    "ApiError",
    "ChallengeRequest",
    "ChallengeResponse",
    "EpochFailure",
    "EpochRequest",
    "ForwardRequest",
    "ForwardResponse",
    "ForwardedAnswer",
    "ForwardedMessage",
    "GpuSummary",
    "HealthResponse",
    "InventoryResponse",
    "JobArtifactRequest",
    "JobArtifactResponse",
    "JobCancelRequest",
    "JobCancelResponse",
    "JobLogsRequest",
    "JobLogsResponse",
    "JobResultRequest",
    "JobResultResponse",
    "JobStatusRequest",
    "JobStatusResponse",
    "JobSubmitRequest",
    "JobSubmitResponse",
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
    "Receipt",
    "ReceiptKind",
    "ReceiptPage",
    "ReceiptSubmitRequest",
    "ReceiptSubmitResponse",
    "SignedReceipt",
    "ValidatorApiMessage",
    "ValidatorRequest",
    "WorkerSummary",
    "evidence_payload",
    "http_status_for",
]
