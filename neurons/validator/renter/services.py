"""What the renter API's routes call: leases (through the lease driver) and jobs (through the
lease's miner), each answered as the API's response models.

Every action goes through a lease the renter owns: :meth:`RenterLeaseService.owned` answers another
renter's lease exactly like a missing one (``NotFound``), so lease ids leak nothing. A miner's
failure is turned into what the renter sees (:func:`~.errors.from_miner`): its protocol and
verification failures are the validator's upstream's fault (502), never a bad request.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from pydantic import ValidationError

from byteleap.errors import ByteLeapError, MalformedMessage
from byteleap.protocol.worker_link.jobs import MAX_ARTIFACT_CHUNK, ArtifactInfo, JobInfo, JobSpec
from neurons.validator.leasing.errors import JobRequestRefused, LeaseNotActive
from neurons.validator.leasing.gateway import JobLink, MinerGateway
from neurons.validator.leasing.manager import LeaseManager
from neurons.validator.leasing.matching import LeaseRequest
from neurons.validator.renter.errors import InvalidRequest, from_miner, validation_message
from neurons.validator.renter.models import (
    Artifact,
    Capacity,
    CapacityLine,
    JobCreate,
    JobResultView,
    JobView,
    LeaseCreate,
    LeaseList,
    LeaseView,
)
from neurons.validator.store.lease_rows import LeaseRow, RenterRow, booked_amount
from neurons.validator.store.leases import LeaseStore

log = structlog.get_logger("byteleap.validator.renter")

T = TypeVar("T")


def lease_view(lease: LeaseRow) -> LeaseView:
    return LeaseView(
        id=lease.id,
        status=lease.status,
        gpus=lease.gpus,
        gpu_uuids=list(lease.gpu_uuids),
        miner_hotkey=lease.miner_hotkey,
        worker_pubkey=lease.worker_pubkey,
        price_per_gpu_hour=lease.price_per_gpu_hour,
        created_at=lease.created_at,
        started_at=lease.started_at,
        ends_at=lease.ends_at,
        ended_at=lease.ended_at,
        end_reason=lease.end_reason,
        cost=booked_amount(lease),
    )


def job_view(lease_id: str, job: JobInfo) -> JobView:
    return JobView(
        id=job.job_id,
        lease_id=lease_id,
        state=job.state,
        exit_code=job.exit_code,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        stdout_bytes=job.stdout_bytes,
        stderr_bytes=job.stderr_bytes,
        stdout_truncated=job.stdout_truncated,
        stderr_truncated=job.stderr_truncated,
        cancel_requested=job.cancel_requested,
        error=job.error,
    )


class RenterLeaseService:
    """The renter's leases."""

    def __init__(self, *, store: LeaseStore, manager: LeaseManager) -> None:
        self.store = store
        self.manager = manager

    async def owned(self, renter: RenterRow, lease_id: str) -> LeaseRow:
        return await self.manager.lease_of(renter, lease_id)

    async def capacity(self) -> Capacity:
        lines = await self.manager.capacity()
        return Capacity(
            gpus=[
                CapacityLine(
                    model=line.model,
                    vram_mib=line.vram_mib,
                    count=line.count,
                    max_per_lease=line.max_per_lease,
                    price_per_gpu_hour=line.price_per_gpu_hour,
                )
                for line in lines
            ]
        )

    async def create(self, renter: RenterRow, body: LeaseCreate) -> LeaseView:
        request = LeaseRequest(
            count=body.count,
            duration_hours=body.duration_hours,
            max_price_per_gpu_hour=body.max_price_per_gpu_hour,
            model=body.model,
            min_vram_mib=body.min_vram_mib,
        )
        try:
            lease = await self.manager.create(renter, request)
        except ByteLeapError as exc:
            raise from_miner(exc) from None
        log.info("renter_lease_created", renter=renter.name, lease=lease.id)
        return lease_view(lease)

    async def listed(self, renter: RenterRow) -> LeaseList:
        return LeaseList(leases=[lease_view(x) for x in await self.store.renter_leases(renter.id)])

    async def get(self, renter: RenterRow, lease_id: str) -> LeaseView:
        return lease_view(await self.owned(renter, lease_id))

    async def extend(self, renter: RenterRow, lease_id: str, hours: float) -> LeaseView:
        return lease_view(await self.manager.extend(renter, lease_id, hours))

    async def terminate(self, renter: RenterRow, lease_id: str) -> LeaseView:
        return lease_view(await self.manager.terminate(renter, lease_id))


@dataclass(frozen=True, slots=True)
class LogSlice:
    """A slice of one output stream of a job."""

    data: bytes
    next_offset: int
    total: int
    finished: bool


@dataclass(frozen=True, slots=True)
class ArtifactDownload:
    """An artifact checked against its listed SHA-256 while its chunks stream."""

    name: str
    size: int
    sha256: bytes
    chunks: AsyncIterator[bytes]


class JobService:
    """Jobs on the renter's leases, through the lease's miner."""

    def __init__(self, *, leases: RenterLeaseService, gateway: MinerGateway) -> None:
        self.leases = leases
        self.gateway = gateway

    async def _call(self, lease: LeaseRow, call: Callable[[JobLink], Awaitable[T]]) -> T:
        try:
            async with self.gateway.jobs(lease.miner_hotkey, lease.id, lease.worker_pubkey) as link:
                return await call(link)
        except JobRequestRefused:
            raise
        except ByteLeapError as exc:
            raise from_miner(exc) from None

    async def submit(self, renter: RenterRow, lease_id: str, body: JobCreate) -> JobView:
        lease = await self.leases.owned(renter, lease_id)
        if lease.status != "active":
            raise LeaseNotActive(f"lease {lease_id} is {lease.status}: it takes no new jobs")
        try:
            spec = JobSpec(
                image=body.image, command=body.command, env=body.env, timeout_s=body.timeout_s
            )
        except ValidationError as exc:
            raise InvalidRequest(validation_message(exc.errors())) from None
        job_id = "job-" + secrets.token_hex(8)

        async def call(link: JobLink) -> JobView:
            return job_view(lease.id, await link.submit(job_id, spec))

        view = await self._call(lease, call)
        log.info("renter_job_submitted", renter=renter.name, lease=lease.id, job=job_id)
        return view

    async def status(self, renter: RenterRow, lease_id: str, job_id: str) -> JobView:
        lease = await self.leases.owned(renter, lease_id)

        async def call(link: JobLink) -> JobView:
            return job_view(lease.id, await link.status(job_id))

        return await self._call(lease, call)

    async def cancel(self, renter: RenterRow, lease_id: str, job_id: str) -> JobView:
        lease = await self.leases.owned(renter, lease_id)

        async def call(link: JobLink) -> JobView:
            return job_view(lease.id, await link.cancel(job_id))

        return await self._call(lease, call)

    async def logs(
        self, renter: RenterRow, lease_id: str, job_id: str, stream: str, offset: int, limit: int
    ) -> LogSlice:
        lease = await self.leases.owned(renter, lease_id)

        async def call(link: JobLink) -> LogSlice:
            logs = await link.logs(
                job_id,
                stdout_offset=offset if stream == "stdout" else 0,
                stderr_offset=offset if stream == "stderr" else 0,
                limit=limit,
            )
            if stream == "stdout":
                data, start, total = logs.stdout, logs.stdout_offset, logs.stdout_total
            else:
                data, start, total = logs.stderr, logs.stderr_offset, logs.stderr_total
            return LogSlice(data, start + len(data), total, logs.finished)

        return await self._call(lease, call)

    async def _result(
        self, lease: LeaseRow, job_id: str
    ) -> tuple[JobInfo, list[ArtifactInfo], int]:
        async def call(link: JobLink) -> tuple[JobInfo, list[ArtifactInfo], int]:
            answer = await link.result(job_id)
            return answer.job, list(answer.artifacts), answer.artifacts_omitted

        return await self._call(lease, call)

    async def result(self, renter: RenterRow, lease_id: str, job_id: str) -> JobResultView:
        lease = await self.leases.owned(renter, lease_id)
        job, artifacts, omitted = await self._result(lease, job_id)
        return JobResultView(
            job=job_view(lease.id, job),
            artifacts=[
                Artifact(name=a.name, size=a.size, sha256=a.sha256.hex()) for a in artifacts
            ],
            artifacts_omitted=omitted,
        )

    async def artifact(
        self, renter: RenterRow, lease_id: str, job_id: str, name: str
    ) -> ArtifactDownload:
        """The first chunk is fetched before the answer starts (so a refusal is a typed error);
        the rest stream, checked against the SHA-256: on a mismatch the stream stops before its
        last byte, so a client never receives a complete wrong file."""
        lease = await self.leases.owned(renter, lease_id)
        _, artifacts, _ = await self._result(lease, job_id)
        artifact = next((a for a in artifacts if a.name == name), None)
        if artifact is None:
            raise JobRequestRefused("unknown_artifact", f"job {job_id} has no artifact {name!r}")

        async def chunk(link: JobLink, offset: int) -> bytes:
            answer = await link.artifact(
                job_id, artifact.name, offset=offset, limit=MAX_ARTIFACT_CHUNK
            )
            if answer.offset != offset or (not answer.data and offset < artifact.size):
                raise MalformedMessage(f"artifact {artifact.name}: no progress at byte {offset}")
            return answer.data

        first = await self._call(lease, lambda link: chunk(link, 0))

        async def stream() -> AsyncIterator[bytes]:
            digest = hashlib.sha256(first)
            sent = len(first)
            if sent >= artifact.size:
                if sent != artifact.size or digest.digest() != artifact.sha256:
                    raise MalformedMessage(f"artifact {artifact.name} does not match its SHA-256")
                yield first
                return
            yield first
            async with self.gateway.jobs(lease.miner_hotkey, lease.id, lease.worker_pubkey) as link:
                while sent < artifact.size:
                    data = await chunk(link, sent)
                    sent += len(data)
                    digest.update(data)
                    if sent > artifact.size or (
                        sent == artifact.size and digest.digest() != artifact.sha256
                    ):
                        raise MalformedMessage(
                            f"artifact {artifact.name} does not match its SHA-256"
                        )
                    yield data

        return ArtifactDownload(artifact.name, artifact.size, artifact.sha256, stream())


__all__ = [
    "ArtifactDownload",
    "JobService",
    "LogSlice",
    "RenterLeaseService",
    "job_view",
    "lease_view",
]
