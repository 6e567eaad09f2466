"""The worker link's job messages: a renter's jobs on the GPUs of a lease.

Job messages carry a ``request_id`` chosen by the miner and echoed in the answer, so several
requests about the same job (a status poll while logs are followed) can be in flight at once.
A validator sends them through the miner's forwarding envelope
(:mod:`byteleap.protocol.miner_api.forward`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from byteleap.protocol.common import (
    MAX_U63,
    MAX_UNIX_SECONDS,
    Bytes32,
    Identifier,
    Message,
    Text,
    WireModel,
    distinct,
)

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


__all__ = [
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
    "ArtifactChunk",
    "ArtifactInfo",
    "ArtifactName",
    "ArtifactQuery",
    "ByteCount",
    "EnvName",
    "EnvValue",
    "ImageRef",
    "JobAccepted",
    "JobArg",
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
    "JobTime",
]
