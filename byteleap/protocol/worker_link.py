"""Messages on the worker <-> miner websocket (SPEC 2 and 4).

Flow of one connection (the worker dials out, so it works behind NAT)::

    miner  -> worker   Hello(nonce, miner_hotkey, heartbeat_interval_s)
    worker -> miner    Register(worker_pubkey, signature over the nonce, inventory, ...)
    miner  -> worker   Welcome(session_id)          (or ErrorReply, then close)
    worker -> miner    Heartbeat(seq, state, inventory?)    every heartbeat_interval_s
    miner  -> worker   HeartbeatAck(seq)
    miner  -> worker   ChallengeDispatch     -> ChallengeCommit | Unavailable | ErrorReply
    miner  -> worker   RevealRequest         -> Reveal | ErrorReply
    miner  -> worker   LeaseStart, LeaseStop -> LeaseAck
    miner  -> worker   JobSubmit             -> JobAccepted | JobRefused     (leased workers only)
    miner  -> worker   JobCancel, JobStatusQuery -> JobStatus | JobRefused
    miner  -> worker   JobLogsQuery          -> JobLogs | JobRefused
    miner  -> worker   JobResultQuery        -> JobResult | JobRefused
    miner  -> worker   ArtifactQuery         -> ArtifactChunk | JobRefused

Job messages carry a ``request_id`` chosen by the miner and echoed in the answer, so several
requests about the same job (a status poll while logs are followed) can be in flight at once.

Bulk bytes (roots, rows, proofs) are ``bytes`` fields, which the codec carries as binary blobs.
Evidence fields are only *bounded* here, not checked against the challenge parameters: a commit
with the wrong number of roots or a row of the wrong length is still decoded, so that the
verifier can score it as fraud (``FraudReason.BAD_COMMIT_SHAPE`` …) instead of the link
discarding it as a malformed message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from byteleap.challenge.params import ChallengeParams
from byteleap.crypto import WorkerKey, frame, verify_ed25519
from byteleap.errors import FraudReason, PeerUnavailable, VerificationFailed
from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    MAX_PROOF_BYTES,
    MAX_ROOTS_BYTES,
    MAX_ROW_BYTES,
    MAX_ROWS_PER_STAGE,
    MAX_U63,
    MAX_UNIX_SECONDS,
    Bytes32,
    Code,
    DeadlineMs,
    GpuUuid,
    Hotkey,
    Identifier,
    Message,
    NonNegFloat,
    PublicKey,
    Row,
    Seq,
    ShortName,
    Signature,
    Stage,
    Text,
    Token,
    UnixSeconds,
    WireModel,
    distinct,
)
from byteleap.protocol.inventory import Inventory

#: domain tag of the worker's signature over a GPU's roots
COMMIT_TAG = b"byteleap/commit/v1"
#: size of one Merkle root
ROOT_BYTES = 32

#: what a worker is doing: idle workers take challenges, busy ones are computing one, leased
#: ones are running a renter's jobs and are never challenged (SPEC 4.4)
WorkerState = Literal["idle", "busy", "leased"]

_GpuList = Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]
_StageTimings = Annotated[list[NonNegFloat], Field(max_length=MAX_ROOTS_BYTES // 32)]
_JoinToken = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]


def _join_roots(roots: bytes | Sequence[bytes]) -> bytes:
    if isinstance(roots, bytes | bytearray | memoryview):
        return bytes(roots)
    return b"".join(bytes(root) for root in roots)


def commit_payload(challenge_id: str, gpu_uuid: str, roots: bytes | Sequence[bytes]) -> bytes:
    """The bytes a worker signs for one GPU's commitment (SPEC 4.3).

    ``frame(b"byteleap/commit/v1", challenge_id, gpu_uuid, root_0 ‖ … ‖ root_{R-1})``. The roots
    may be given concatenated or as a list; both spell the same payload.
    """
    return frame(COMMIT_TAG, challenge_id, gpu_uuid, _join_roots(roots))


# --------------------------------------------------------------------------- handshake


class Hello(Message):
    """miner -> worker, first message: prove your key by signing this nonce."""

    type: Literal["hello"] = "hello"
    #: fresh random bytes from the miner's CSPRNG, one per connection
    nonce: Bytes32
    #: the miner's hotkey (ss58); the worker signs it too, so the answer is bound to this miner
    miner_hotkey: Hotkey
    #: how often the worker must send a Heartbeat
    heartbeat_interval_s: Annotated[float, Field(ge=0.05, le=3600.0)]


class Register(Message):
    """worker -> miner: who I am, proven by an ed25519 signature of ``handshake_payload``."""

    type: Literal["register"] = "register"
    worker_pubkey: PublicKey
    #: ed25519 signature of ``handshake.handshake_payload(nonce, miner_hotkey, worker_pubkey)``
    signature: Signature
    agent_version: ShortName
    #: a one-time token that lets the miner pin a key it does not know yet
    join_token: _JoinToken | None = None
    inventory: Inventory


class Welcome(Message):
    """miner -> worker: registration accepted."""

    type: Literal["welcome"] = "welcome"
    session_id: Identifier


# --------------------------------------------------------------------------- liveness


class Heartbeat(Message):
    """worker -> miner, every ``heartbeat_interval_s``; may carry a fresh inventory."""

    type: Literal["heartbeat"] = "heartbeat"
    seq: Seq
    state: WorkerState
    inventory: Inventory | None = None


class HeartbeatAck(Message):
    """miner -> worker: heartbeat ``seq`` received."""

    type: Literal["heartbeat_ack"] = "heartbeat_ack"
    seq: Seq


# --------------------------------------------------------------------------- challenge


class ChallengeDispatch(Message):
    """miner -> worker: run the challenge on these GPUs and commit before the deadline."""

    type: Literal["challenge"] = "challenge"
    challenge_id: Identifier
    seed: Bytes32
    params: ChallengeParams
    gpu_uuids: _GpuList
    #: milliseconds the worker has, from receiving this, until its commit must be sent
    deadline_ms: DeadlineMs

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct(self.gpu_uuids):
            raise ValueError("gpu_uuids must be distinct")
        return self


class GpuCommit(WireModel):
    """One GPU's commitment: its roots, its timings and the worker's signature over both."""

    gpu_uuid: GpuUuid
    #: ``root_0 ‖ … ‖ root_{R-1}``, 32 bytes each (checked against ``R`` by the verifier)
    roots: Annotated[bytes, Field(max_length=MAX_ROOTS_BYTES)]
    #: the worker's own per-stage timings in milliseconds: informative only, never trusted
    stage_ms: _StageTimings = Field(default_factory=list)
    #: ed25519 signature of ``commit_payload(challenge_id, gpu_uuid, roots)`` by the worker key
    signature: Signature

    @classmethod
    def create(
        cls,
        key: WorkerKey,
        challenge_id: str,
        gpu_uuid: str,
        roots: bytes | Sequence[bytes],
        stage_ms: Sequence[float] = (),
    ) -> GpuCommit:
        """Build and sign a commitment with the worker's key."""
        joined = _join_roots(roots)
        return cls(
            gpu_uuid=gpu_uuid,
            roots=joined,
            stage_ms=list(stage_ms),
            signature=key.sign(commit_payload(challenge_id, gpu_uuid, joined)),
        )

    def root_list(self) -> list[bytes]:
        """The roots one by one.

        Raises ``VerificationFailed(BAD_COMMIT_SHAPE)`` when ``roots`` is not a whole number of
        32-byte roots: that is signed evidence of a broken worker, not a link failure.
        """
        if len(self.roots) % ROOT_BYTES:
            raise VerificationFailed(
                FraudReason.BAD_COMMIT_SHAPE,
                f"roots are {len(self.roots)} bytes, not a multiple of {ROOT_BYTES}",
            )
        return [self.roots[i : i + ROOT_BYTES] for i in range(0, len(self.roots), ROOT_BYTES)]

    def payload(self, challenge_id: str) -> bytes:
        """The bytes ``signature`` must sign."""
        return commit_payload(challenge_id, self.gpu_uuid, self.roots)

    def verify(self, worker_pubkey: bytes, challenge_id: str) -> bool:
        """True when ``signature`` is the worker's signature of this commitment."""
        return verify_ed25519(worker_pubkey, self.payload(challenge_id), self.signature)


class ChallengeCommit(Message):
    """worker -> miner: one commitment per challenged GPU."""

    type: Literal["commit"] = "commit"
    challenge_id: Identifier
    gpus: Annotated[list[GpuCommit], Field(min_length=1, max_length=MAX_GPUS)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([gpu.gpu_uuid for gpu in self.gpus]):
            raise ValueError("one commitment per GPU: gpu_uuid values must be distinct")
        return self

    def gpu(self, uuid: str) -> GpuCommit | None:
        return next((gpu for gpu in self.gpus if gpu.gpu_uuid == uuid), None)


class OpeningRequest(WireModel):
    """Open these rows of this GPU's stage."""

    gpu_uuid: GpuUuid
    stage: Stage
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS_PER_STAGE)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct(self.rows):
            raise ValueError("rows must be distinct")
        return self


class RevealRequest(Message):
    """miner -> worker (on the validator's behalf): reveal these rows with their Merkle paths."""

    type: Literal["reveal_request"] = "reveal_request"
    challenge_id: Identifier
    openings: Annotated[list[OpeningRequest], Field(min_length=1, max_length=MAX_OPENING_REQUESTS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_opening_requests(self.openings)
        return self


def check_opening_requests(openings: Sequence[OpeningRequest]) -> None:
    if not distinct([(o.gpu_uuid, o.stage) for o in openings]):
        raise ValueError("each (gpu_uuid, stage) may be requested once")
    total = sum(len(o.rows) for o in openings)
    if total > MAX_OPENINGS:
        raise ValueError(f"{total} rows requested, at most {MAX_OPENINGS} allowed")


class RowOpening(WireModel):
    """One revealed row and its Merkle path."""

    gpu_uuid: GpuUuid
    stage: Stage
    row: Row
    #: the row as ``n`` little-endian int32 values (length checked by the verifier)
    values: Annotated[bytes, Field(max_length=MAX_ROW_BYTES)]
    #: sibling hashes from the leaf up, ``depth * 32`` bytes (length checked by the verifier)
    proof: Annotated[bytes, Field(max_length=MAX_PROOF_BYTES)]

    def proof_list(self) -> list[bytes]:
        """The sibling hashes one by one, leaf level first.

        Raises ``VerificationFailed(BAD_PROOF_LENGTH)`` when ``proof`` is not a whole number of
        32-byte hashes. (Whether there are exactly ``depth`` of them is the verifier's check.)
        """
        if len(self.proof) % ROOT_BYTES:
            raise VerificationFailed(
                FraudReason.BAD_PROOF_LENGTH,
                f"proof is {len(self.proof)} bytes, not a multiple of {ROOT_BYTES}",
                stage=self.stage,
                row=self.row,
            )
        return [self.proof[i : i + ROOT_BYTES] for i in range(0, len(self.proof), ROOT_BYTES)]


class Reveal(Message):
    """worker -> miner: the requested rows."""

    type: Literal["reveal"] = "reveal"
    challenge_id: Identifier
    openings: Annotated[list[RowOpening], Field(max_length=MAX_OPENINGS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_row_openings(self.openings)
        return self


def check_row_openings(openings: Sequence[RowOpening]) -> None:
    if not distinct([(o.gpu_uuid, o.stage, o.row) for o in openings]):
        raise ValueError("each (gpu_uuid, stage, row) may be revealed once")


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


# --------------------------------------------------------------------------- jobs

#: most arguments in a job's command
MAX_JOB_ARGS = 256
#: longest single command argument or environment value, in characters
MAX_JOB_ARG_CHARS = 8192
#: most characters of a whole command line (all arguments together)
MAX_JOB_COMMAND_CHARS = 128 * 1024
#: most environment variables one job may set
MAX_JOB_ENV = 128
#: longest run time a job may ask for: 30 days
MAX_JOB_TIMEOUT_S = 30 * 24 * 3600
#: most bytes of one output stream in one logs answer
MAX_LOG_SLICE = 4 * 1024 * 1024
#: most bytes of one artifact in one chunk (a chunk fits the link's default 16 MiB message cap)
MAX_ARTIFACT_CHUNK = 4 * 1024 * 1024
#: most artifacts listed for one job
MAX_ARTIFACTS = 1024
#: environment variables the worker sets itself to pin the leased GPUs; a job may not set them
RESERVED_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})


def _job_text(value: str) -> str:
    # a NUL cannot be passed to execve, and a lone surrogate cannot be encoded again
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string contains a lone surrogate") from None
    return value


def _env_value(value: str) -> str:
    # one variable is one line of a docker --env-file
    if "\n" in value or "\r" in value:
        raise ValueError("environment values must not contain line breaks")
    return _job_text(value)


def _artifact_name(value: str) -> str:
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError("artifact names must not contain '.' or '..' components")
    return value


#: a job id, unique within its lease; it names a directory and a container, so it starts with a
#: letter or digit and has no ':' or '/'
JobId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
#: a container image reference (``registry:5000/repo/name:tag@sha256:...``); it cannot start with
#: '-', so it can never be read as an option of the container runtime
ImageRef = Annotated[
    str, Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
]
JobArg = Annotated[str, Field(max_length=MAX_JOB_ARG_CHARS), AfterValidator(_job_text)]
EnvName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = Annotated[str, Field(max_length=MAX_JOB_ARG_CHARS), AfterValidator(_env_value)]
#: a file below a job's ``output/`` directory, as a relative path with '/' separators
ArtifactName = Annotated[
    str,
    Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"),
    AfterValidator(_artifact_name),
]
ByteCount = Annotated[int, Field(ge=0, le=MAX_U63)]
JobTime = Annotated[float, Field(ge=0.0, le=float(MAX_UNIX_SECONDS))]

#: queued: accepted, waiting for a free slot; running; then one of the four final states
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out"]
#: states a job never leaves
FINAL_JOB_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

JobRefusal = Literal[
    "unknown_lease",  # (miner) no such lease, or it was forgotten
    "lease_ended",  # (miner) the lease is over: no new jobs
    "not_leased",  # (worker) this worker does not hold that lease (any more)
    "runner_disabled",  # (worker) jobs.runner is 'none'
    "duplicate_job",  # the job id is taken in this lease by a different job
    "too_many_jobs",  # the lease reached jobs.max_jobs_per_lease
    "invalid_job",  # this worker cannot run the job as asked (network, empty command, ...)
    "unknown_job",  # no such job in that lease
    "unknown_artifact",  # the job has no such artifact (or has not finished)
]
"""Why a job request was refused: a typed reason the validator can act on."""


class JobLimits(WireModel):
    """Resource limits of one job; ``None`` leaves a limit to the runner's default.

    The docker runner applies all of them; the subprocess runner (development only) applies
    none but ``network``, which it can only refuse.
    """

    #: memory cap in bytes (``docker run --memory``)
    memory_bytes: Annotated[int, Field(ge=4 * 1024 * 1024, le=2**50)] | None = None
    #: CPU share in thousandths of a CPU: 1500 is ``--cpus 1.5``
    cpu_millis: Annotated[int, Field(ge=10, le=1_000_000)] | None = None
    #: most processes (``--pids-limit``)
    pids: Annotated[int, Field(ge=16, le=4_194_304)] | None = None
    #: 'none' (no network) or 'bridge' (outbound network, if the worker allows it)
    network: Literal["none", "bridge"] = "none"


class JobSpec(WireModel):
    """What to run: a container image, its command and environment, a timeout and limits.

    The command is an argument list, never a shell string. The GPUs are not part of the spec: a
    job always gets exactly the GPUs of its lease.
    """

    image: ImageRef
    #: the command and its arguments; empty runs the image's default command (docker only)
    command: Annotated[list[JobArg], Field(max_length=MAX_JOB_ARGS)] = Field(default_factory=list)
    env: Annotated[dict[EnvName, EnvValue], Field(max_length=MAX_JOB_ENV)] = Field(
        default_factory=dict
    )
    #: seconds the job may run before it is stopped (state ``timed_out``)
    timeout_s: Annotated[int, Field(ge=1, le=MAX_JOB_TIMEOUT_S)]
    limits: JobLimits = Field(default_factory=JobLimits)

    @model_validator(mode="after")
    def _check(self) -> Self:
        reserved = sorted(RESERVED_ENV & set(self.env))
        if reserved:
            raise ValueError(f"env must not set {', '.join(reserved)}: the worker sets it")
        if sum(len(arg) for arg in self.command) > MAX_JOB_COMMAND_CHARS:
            raise ValueError(f"the command is longer than {MAX_JOB_COMMAND_CHARS} characters")
        return self


class JobInfo(WireModel):
    """The state of one job, as the worker reports it."""

    job_id: JobId
    state: JobState
    #: the process's exit status once it ended (negative: killed by that signal)
    exit_code: Annotated[int, Field(ge=-(2**31), le=2**31 - 1)] | None = None
    #: unix times by the worker's clock
    submitted_at: JobTime | None = None
    started_at: JobTime | None = None
    ended_at: JobTime | None = None
    #: bytes of stdout / stderr kept so far (at most the worker's jobs.max_output_bytes each)
    stdout_bytes: ByteCount = 0
    stderr_bytes: ByteCount = 0
    #: more output was produced than kept
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: a cancel was asked for and the job is stopping
    cancel_requested: bool = False
    #: why the job failed when the process did not even run (image pull failed, ...)
    error: Text = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_JOB_STATES


class ArtifactInfo(WireModel):
    """One file a finished job left in its ``output/`` directory."""

    name: ArtifactName
    size: ByteCount
    sha256: Bytes32


class JobLogSlice(WireModel):
    """A slice of each output stream, from the offsets asked for; ``*_total`` is what exists."""

    stdout_offset: ByteCount
    stdout: Annotated[bytes, Field(max_length=MAX_LOG_SLICE)]
    stdout_total: ByteCount
    stderr_offset: ByteCount
    stderr: Annotated[bytes, Field(max_length=MAX_LOG_SLICE)]
    stderr_total: ByteCount
    #: the job has ended: the totals will not grow any more
    finished: bool


class _JobRequest(Message):
    #: chosen by the miner, echoed by the answer (several requests per job may be in flight)
    request_id: Identifier
    lease_id: Identifier
    job_id: JobId


class JobSubmit(_JobRequest):
    """miner -> worker: run this job on the lease's GPUs. Answered by JobAccepted or JobRefused.

    Submitting the same ``job_id`` with the same spec again is answered as accepted (a retry);
    with another spec it is refused as ``duplicate_job``.
    """

    type: Literal["job_submit"] = "job_submit"
    spec: JobSpec


class JobCancel(_JobRequest):
    """miner -> worker: stop this job (SIGTERM, then SIGKILL after jobs.stop_timeout_s)."""

    type: Literal["job_cancel"] = "job_cancel"


class JobStatusQuery(_JobRequest):
    """miner -> worker: how is this job doing? Answered by JobStatus."""

    type: Literal["job_status_query"] = "job_status_query"


class JobLogsQuery(_JobRequest):
    """miner -> worker: up to ``limit`` bytes of stdout and of stderr from these offsets."""

    type: Literal["job_logs_query"] = "job_logs_query"
    stdout_offset: ByteCount = 0
    stderr_offset: ByteCount = 0
    limit: Annotated[int, Field(ge=1, le=MAX_LOG_SLICE)] = 64 * 1024


class JobResultQuery(_JobRequest):
    """miner -> worker: the job's state and, once it ended, its artifacts."""

    type: Literal["job_result_query"] = "job_result_query"


class ArtifactQuery(_JobRequest):
    """miner -> worker: up to ``limit`` bytes of one artifact from ``offset``."""

    type: Literal["artifact_query"] = "artifact_query"
    name: ArtifactName
    offset: ByteCount = 0
    limit: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_CHUNK)] = MAX_ARTIFACT_CHUNK


class JobAccepted(Message):
    """worker -> miner: the job is queued (or already known, on a retry)."""

    type: Literal["job_accepted"] = "job_accepted"
    request_id: Identifier
    lease_id: Identifier
    job: JobInfo


class JobRefused(Message):
    """worker -> miner: the job request cannot be served, and why."""

    type: Literal["job_refused"] = "job_refused"
    request_id: Identifier
    lease_id: Identifier
    job_id: JobId
    reason: JobRefusal
    message: Text = ""


class JobStatus(Message):
    """worker -> miner: answer to JobStatusQuery and JobCancel."""

    type: Literal["job_status"] = "job_status"
    request_id: Identifier
    lease_id: Identifier
    job: JobInfo


class JobLogs(Message):
    """worker -> miner: answer to JobLogsQuery."""

    type: Literal["job_logs"] = "job_logs"
    request_id: Identifier
    lease_id: Identifier
    job_id: JobId
    logs: JobLogSlice


class JobResult(Message):
    """worker -> miner: answer to JobResultQuery. ``artifacts`` is empty until the job ended."""

    type: Literal["job_result"] = "job_result"
    request_id: Identifier
    lease_id: Identifier
    job: JobInfo
    artifacts: Annotated[list[ArtifactInfo], Field(max_length=MAX_ARTIFACTS)] = Field(
        default_factory=list
    )
    #: files of output/ left out of the list: over jobs.max_artifact_bytes or MAX_ARTIFACTS,
    #: not regular files (links, devices), or with names the protocol cannot carry
    artifacts_omitted: Annotated[int, Field(ge=0, le=MAX_U63)] = 0

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([artifact.name for artifact in self.artifacts]):
            raise ValueError("artifact names must be distinct")
        return self


class ArtifactChunk(Message):
    """worker -> miner: answer to ArtifactQuery; ``eof`` when the chunk reaches the end."""

    type: Literal["artifact_chunk"] = "artifact_chunk"
    request_id: Identifier
    lease_id: Identifier
    job_id: JobId
    artifact: ArtifactInfo
    offset: ByteCount
    data: Annotated[bytes, Field(max_length=MAX_ARTIFACT_CHUNK)]
    eof: bool


JobRequest = JobSubmit | JobCancel | JobStatusQuery | JobLogsQuery | JobResultQuery | ArtifactQuery
"""A job request the miner sends on a validator's behalf."""

JobReply = JobAccepted | JobRefused | JobStatus | JobLogs | JobResult | ArtifactChunk
"""A worker's answer to a job request."""

#: the answers each job request may get (besides JobRefused and ErrorReply)
JOB_ANSWERS: dict[type[Message], type[Message]] = {
    JobSubmit: JobAccepted,
    JobCancel: JobStatus,
    JobStatusQuery: JobStatus,
    JobLogsQuery: JobLogs,
    JobResultQuery: JobResult,
    ArtifactQuery: ArtifactChunk,
}


# --------------------------------------------------------------------------- failures


class ErrorReply(Message):
    """Either direction: the message we got could not be processed.

    ``code`` is the ``.code`` of the ``ByteLeapError`` subclass that describes the failure, so the
    receiver can tell "you sent garbage" from "we are unavailable" (see ``codec.error_reply_for``).
    """

    type: Literal["error"] = "error"
    code: Code
    message: Text
    #: the id (challenge_id, lease_id, seq, …) or ``type`` of the message this answers, if known
    in_reply_to: Token | None = None


class Unavailable(Message):
    """worker -> miner: this challenge cannot run now (busy with another one, or leased).

    An answer, not a failure: the challenge is excused and never scored against the worker.
    """

    type: Literal["unavailable"] = "unavailable"
    challenge_id: Identifier
    leased: bool

    def to_error(self) -> PeerUnavailable:
        return PeerUnavailable(leased=self.leased)


#: the same reply, under the name "busy"
Busy = Unavailable


MinerToWorker = Annotated[
    Hello
    | Welcome
    | HeartbeatAck
    | ChallengeDispatch
    | RevealRequest
    | LeaseStart
    | LeaseStop
    | JobSubmit
    | JobCancel
    | JobStatusQuery
    | JobLogsQuery
    | JobResultQuery
    | ArtifactQuery
    | ErrorReply,
    Field(discriminator="type"),
]
"""Everything a worker may receive."""

WorkerToMiner = Annotated[
    Register
    | Heartbeat
    | ChallengeCommit
    | Reveal
    | LeaseAck
    | JobAccepted
    | JobRefused
    | JobStatus
    | JobLogs
    | JobResult
    | ArtifactChunk
    | Unavailable
    | ErrorReply,
    Field(discriminator="type"),
]
"""Everything a miner may receive from a worker."""

WorkerLinkMessage = Annotated[
    Hello
    | Register
    | Welcome
    | Heartbeat
    | HeartbeatAck
    | ChallengeDispatch
    | ChallengeCommit
    | RevealRequest
    | Reveal
    | LeaseStart
    | LeaseStop
    | LeaseAck
    | JobSubmit
    | JobCancel
    | JobStatusQuery
    | JobLogsQuery
    | JobResultQuery
    | ArtifactQuery
    | JobAccepted
    | JobRefused
    | JobStatus
    | JobLogs
    | JobResult
    | ArtifactChunk
    | ErrorReply
    | Unavailable,
    Field(discriminator="type"),
]
"""Every message of the worker link, either direction."""


__all__ = [
    "COMMIT_TAG",
    "FINAL_JOB_STATES",
    "JOB_ANSWERS",
    "MAX_ARTIFACTS",
    "MAX_ARTIFACT_CHUNK",
    "MAX_JOB_ARGS",
    "MAX_JOB_ARG_CHARS",
    "MAX_JOB_COMMAND_CHARS",
    "MAX_JOB_ENV",
    "MAX_JOB_TIMEOUT_S",
    "MAX_LOG_SLICE",
    "RESERVED_ENV",
    "ROOT_BYTES",
    "ArtifactChunk",
    "ArtifactInfo",
    "ArtifactName",
    "ArtifactQuery",
    "Busy",
    "ChallengeCommit",
    "ChallengeDispatch",
    "ErrorReply",
    "GpuCommit",
    "Heartbeat",
    "HeartbeatAck",
    "Hello",
    "ImageRef",
    "JobAccepted",
    "JobCancel",
    "JobId",
    "JobInfo",
    "JobLimits",
    "JobLogSlice",
    "JobLogs",
    "JobLogsQuery",
    "JobRefusal",
    "JobRefused",
    "JobReply",
    "JobRequest",
    "JobResult",
    "JobResultQuery",
    "JobSpec",
    "JobState",
    "JobStatus",
    "JobStatusQuery",
    "JobSubmit",
    "LeaseAck",
    "LeaseStart",
    "LeaseStop",
    "MinerToWorker",
    "OpeningRequest",
    "Register",
    "Reveal",
    "RevealRequest",
    "RowOpening",
    "Unavailable",
    "Welcome",
    "WorkerLinkMessage",
    "WorkerState",
    "WorkerToMiner",
    "commit_payload",
]
