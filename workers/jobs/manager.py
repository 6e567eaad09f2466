"""The worker's jobs: which exist, what state each is in, and the answers to the miner's queries.

The agent (``byteleap.sessions.worker_agent``) decides whether a job request may be served at
all (the worker must hold that lease; the runner must not be 'none') and hands it here with the
lease's GPUs.
The manager lives in the runtime, not on the link, so jobs keep running and keep their state
while the link to the miner is down; a lease stop cancels them.

Rules:

* A job is identified by ``(lease_id, job_id)``. Submitting the same id with the same spec again
  is a retry and answers with the job as it is; with another spec it is ``duplicate_job``.
* At most ``max_parallel`` jobs run at once; the others wait, ``queued``, in submission order.
  At most ``max_jobs_per_lease`` jobs (of any state) exist per lease.
* A cancelled queued job never starts; a running one is stopped by its runner.
* A finished job keeps its logs and artifacts until a *different* lease starts on the worker
  (:meth:`purge`) or the worker restarts (:meth:`start` clears the jobs directory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from byteleap.errors import MalformedMessage, WorkerFailure
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactInfo,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobInfo,
    JobLogs,
    JobLogSlice,
    JobLogsQuery,
    JobRefusal,
    JobRefused,
    JobReply,
    JobRequest,
    JobResult,
    JobResultQuery,
    JobSpec,
    JobState,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from workers.jobs.files import (
    JobOutput,
    JobPaths,
    lease_dir_name,
    list_artifacts,
    read_artifact,
    read_slice,
    remove_tree,
)
from workers.jobs.runner import JobRun, Runner, RunResult

log = structlog.get_logger("byteleap.worker.jobs")


@dataclass
class Job:
    """One job and everything known about it."""

    lease_id: str
    job_id: str
    spec: JobSpec
    gpu_uuids: tuple[str, ...]
    paths: JobPaths
    submitted_at: float
    state: JobState = "queued"
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str = ""
    cancel_requested: bool = False
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    output: JobOutput | None = None
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    artifacts_omitted: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def final(self) -> bool:
        return self.state not in ("queued", "running")

    def info(self) -> JobInfo:
        out, err = (self.output.stdout, self.output.stderr) if self.output else (None, None)
        return JobInfo(
            job_id=self.job_id,
            state=self.state,
            exit_code=self.exit_code,
            submitted_at=self.submitted_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            stdout_bytes=out.kept if out else 0,
            stderr_bytes=err.kept if err else 0,
            stdout_truncated=out.truncated if out else False,
            stderr_truncated=err.truncated if err else False,
            cancel_requested=self.cancel_requested and not self.final,
            error=self.error[:1000],
        )


class JobManager:
    def __init__(
        self,
        runner: Runner | None,
        root: Path,
        *,
        max_output_bytes: int,
        max_artifact_bytes: int,
        max_parallel: int = 1,
        max_jobs_per_lease: int = 256,
        wall: Callable[[], float] = time.time,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        if max_parallel < 1 or max_jobs_per_lease < 1:
            raise ValueError("max_parallel and max_jobs_per_lease must be at least 1")
        self.runner = runner
        self.root = root
        self.max_output_bytes = max_output_bytes
        self.max_artifact_bytes = max_artifact_bytes
        self.max_parallel = max_parallel
        self.max_jobs_per_lease = max_jobs_per_lease
        self.wall = wall
        self.on_finished = on_finished
        self._jobs: dict[tuple[str, str], Job] = {}
        self._slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Clear the jobs directory: jobs of an earlier run of the worker are unknown now."""
        await asyncio.to_thread(self._reset_root)

    def _reset_root(self) -> None:
        remove_tree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)

    async def close(self) -> None:
        """Cancel every job and wait until their runners have stopped them."""
        self.cancel_lease(None)
        tasks = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        if tasks:
            await asyncio.wait(tasks)

    # ------------------------------------------------------------------ lookups

    def get(self, lease_id: str, job_id: str) -> Job | None:
        return self._jobs.get((lease_id, job_id))

    def jobs(self, lease_id: str | None = None) -> list[Job]:
        return [job for job in self._jobs.values() if lease_id in (None, job.lease_id)]

    def running(self) -> int:
        return sum(1 for job in self._jobs.values() if job.state == "running")

    # ------------------------------------------------------------------ requests

    async def handle(self, request: JobRequest, gpu_uuids: Sequence[str] = ()) -> JobReply:
        """The answer to one job request. Raises ``WorkerFailure`` when files cannot be read."""
        if isinstance(request, JobSubmit):
            return self._submit(request, tuple(gpu_uuids))
        job = self.get(request.lease_id, request.job_id)
        if job is None:
            return self._refused(request, "unknown_job", "no such job in this lease")
        match request:
            case JobCancel():
                self._cancel(job)
                return JobStatus(
                    request_id=request.request_id, lease_id=job.lease_id, job=job.info()
                )
            case JobStatusQuery():
                return JobStatus(
                    request_id=request.request_id, lease_id=job.lease_id, job=job.info()
                )
            case JobLogsQuery():
                return await self._logs(request, job)
            case JobResultQuery():
                return JobResult(
                    request_id=request.request_id,
                    lease_id=job.lease_id,
                    job=job.info(),
                    artifacts=list(job.artifacts),
                    artifacts_omitted=job.artifacts_omitted,
                )
            case ArtifactQuery():
                return await self._artifact(request, job)
        raise MalformedMessage(f"not a job request: {request.type}")  # pragma: no cover

    @staticmethod
    def _refused(request: JobRequest, reason: JobRefusal, message: str) -> JobRefused:
        return refused_for_reason(request, reason, message)

    def _submit(self, request: JobSubmit, gpu_uuids: tuple[str, ...]) -> JobReply:
        existing = self.get(request.lease_id, request.job_id)
        if existing is not None:
            if existing.spec == request.spec:
                return JobAccepted(
                    request_id=request.request_id, lease_id=request.lease_id, job=existing.info()
                )
            return self._refused(request, "duplicate_job", "this job id was used for another job")
        if self.runner is None:
            return self._refused(request, "runner_disabled", "this worker runs no jobs")
        if len(self.jobs(request.lease_id)) >= self.max_jobs_per_lease:
            return self._refused(
                request, "too_many_jobs", f"at most {self.max_jobs_per_lease} jobs per lease"
            )
        why = self.runner.refuse(request.spec)
        if why is not None:
            return self._refused(request, "invalid_job", why)
        if not gpu_uuids:
            return self._refused(request, "not_leased", "the lease names no GPU")
        job = Job(
            lease_id=request.lease_id,
            job_id=request.job_id,
            spec=request.spec,
            gpu_uuids=gpu_uuids,
            paths=JobPaths.under(self.root, request.lease_id, request.job_id),
            submitted_at=self.wall(),
        )
        self._jobs[(job.lease_id, job.job_id)] = job
        job.task = asyncio.create_task(self._run(job), name=f"job-{job.job_id}")
        log.info(
            "job_accepted",
            lease=job.lease_id,
            job=job.job_id,
            image=job.spec.image,
            gpus=len(gpu_uuids),
            runner=self.runner.name,
        )
        return JobAccepted(request_id=request.request_id, lease_id=job.lease_id, job=job.info())

    def _cancel(self, job: Job) -> None:
        if job.final:
            return
        job.cancel_requested = True
        if job.state == "queued":
            job.state = "cancelled"
            job.ended_at = self.wall()
            log.info("job_cancelled", lease=job.lease_id, job=job.job_id, was="queued")
        job.cancel.set()

    def cancel_lease(self, lease_id: str | None) -> None:
        """Cancel every unfinished job of ``lease_id`` (of every lease when ``None``)."""
        for job in self.jobs(lease_id):
            self._cancel(job)

    async def purge(self, keep_lease: str | None) -> None:
        """Forget finished jobs of every lease but ``keep_lease`` and delete their files."""
        doomed = [j for j in self._jobs.values() if j.lease_id != keep_lease and j.final]
        leases = {job.lease_id for job in doomed}
        for job in doomed:
            del self._jobs[(job.lease_id, job.job_id)]
        for lease_id in leases:
            if not self.jobs(lease_id):
                await asyncio.to_thread(remove_tree, self.root / lease_dir_name(lease_id))
            else:
                for job in doomed:
                    if job.lease_id == lease_id:
                        await asyncio.to_thread(remove_tree, job.paths.workdir)

    # ------------------------------------------------------------------ running

    def _slots_now(self) -> asyncio.Semaphore:
        if self._slots is None:  # created on the running loop
            self._slots = asyncio.Semaphore(self.max_parallel)
        return self._slots

    async def _run(self, job: Job) -> None:
        async with self._slots_now():
            if job.state != "queued":  # cancelled while it waited
                return
            job.state = "running"
            job.started_at = self.wall()
            result = await self._execute(job)
            job.state = result.state
            job.exit_code = result.exit_code
            job.error = result.error
            job.ended_at = self.wall()
        log.info(
            "job_finished",
            lease=job.lease_id,
            job=job.job_id,
            state=job.state,
            exit_code=job.exit_code,
            seconds=round((job.ended_at or 0) - (job.started_at or 0), 3),
            error=job.error or None,
        )
        if self.on_finished is not None:
            self.on_finished(job)

    async def _execute(self, job: Job) -> RunResult:
        assert self.runner is not None
        try:
            await asyncio.to_thread(job.paths.create)
            job.output = JobOutput.open(job.paths, self.max_output_bytes)
        except OSError as exc:
            return RunResult("failed", None, f"cannot prepare the job directory: {exc}")
        log.info("job_started", lease=job.lease_id, job=job.job_id, runner=self.runner.name)
        run = JobRun(job.lease_id, job.job_id, job.spec, job.gpu_uuids, job.paths)
        try:
            result = await self.runner.run(run, job.output, job.cancel)
        except Exception as exc:  # a runner bug must not kill the worker
            log.exception("job_runner_crashed", lease=job.lease_id, job=job.job_id)
            result = RunResult("failed", None, f"internal error of the runner: {exc!r}")
        finally:
            job.output.close()
        try:
            job.artifacts, job.artifacts_omitted = await asyncio.to_thread(
                list_artifacts, job.paths.output, self.max_artifact_bytes
            )
        except OSError as exc:
            log.warning("job_artifacts_unreadable", job=job.job_id, error=str(exc))
        return result

    # ------------------------------------------------------------------ reading

    async def _logs(self, request: JobLogsQuery, job: Job) -> JobLogs:
        final = job.final  # read before the sizes: a final job's sizes do not change any more
        out, err = (job.output.stdout.kept, job.output.stderr.kept) if job.output else (0, 0)
        limit = request.limit

        def read() -> tuple[bytes, bytes]:
            stdout = read_slice(
                job.paths.stdout, request.stdout_offset, min(limit, out - request.stdout_offset)
            )
            stderr = read_slice(
                job.paths.stderr, request.stderr_offset, min(limit, err - request.stderr_offset)
            )
            return stdout, stderr

        try:
            stdout, stderr = await asyncio.to_thread(read)
        except OSError as exc:
            raise WorkerFailure(f"cannot read the logs of job {job.job_id}: {exc}") from None
        return JobLogs(
            request_id=request.request_id,
            lease_id=job.lease_id,
            job_id=job.job_id,
            logs=JobLogSlice(
                stdout_offset=request.stdout_offset,
                stdout=stdout,
                stdout_total=out,
                stderr_offset=request.stderr_offset,
                stderr=stderr,
                stderr_total=err,
                finished=final,
            ),
        )

    async def _artifact(self, request: ArtifactQuery, job: Job) -> JobReply:
        info = next((a for a in job.artifacts if a.name == request.name), None)
        if info is None or not job.final:
            return self._refused(request, "unknown_artifact", f"no artifact {request.name}")
        if request.offset > info.size:
            raise MalformedMessage(f"offset {request.offset} is past the end ({info.size} bytes)")
        want = min(request.limit, info.size - request.offset)
        data = await asyncio.to_thread(
            read_artifact, job.paths.output, info.name, request.offset, want
        )
        if len(data) != want:
            raise WorkerFailure(f"artifact {info.name} changed since the job ended")
        return ArtifactChunk(
            request_id=request.request_id,
            lease_id=job.lease_id,
            job_id=job.job_id,
            artifact=info,
            offset=request.offset,
            data=data,
            eof=request.offset + len(data) >= info.size,
        )


def refused_for_reason(request: JobRequest, reason: JobRefusal, message: str) -> JobRefused:
    """A refusal of ``request`` (the agent answers this way when it refuses by itself)."""
    return JobRefused(
        request_id=request.request_id,
        lease_id=request.lease_id,
        job_id=request.job_id,
        reason=reason,
        message=message,
    )


__all__ = ["Job", "JobManager", "refused_for_reason"]
