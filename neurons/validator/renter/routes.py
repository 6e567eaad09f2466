"""The renter API's routes under ``/v1``: each authenticates through :data:`~.deps.RenterDep`
and hands the request to a service (:mod:`.services`); none holds business logic.

Every error is ``{"error": {"code", "message"}}`` (:mod:`.errors`), answered by the handlers
:func:`~.app.create_renter_app` installs.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at run time.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import StreamingResponse

from byteleap.protocol.worker_link.jobs import MAX_LOG_SLICE
from neurons.validator.renter.deps import JobIdParam, JobsDep, LeaseId, RenterDep, RenterLeasesDep
from neurons.validator.renter.errors import ERROR_RESPONSES
from neurons.validator.renter.models import (
    Capacity,
    JobCreate,
    JobResultView,
    JobView,
    LeaseCreate,
    LeaseExtend,
    LeaseList,
    LeaseView,
)

PREFIX = "/v1"

router = APIRouter(prefix=PREFIX, responses=ERROR_RESPONSES)

_OCTETS = {"application/octet-stream": {"schema": {"type": "string"}}}
_LOGS = {
    200: {
        "description": "the bytes of the stream from ``offset``; X-Next-Offset, "
        "X-Log-Total and X-Job-Finished say where to go on",
        "content": _OCTETS,
    }
}
_ARTIFACT = {
    200: {
        "description": "the artifact's bytes; X-Artifact-SHA256 is their SHA-256 (hex)",
        "content": _OCTETS,
    }
}


# --------------------------------------------------------------------------- capacity


@router.get("/capacity", response_model=Capacity, tags=["capacity"])
async def get_capacity(renter: RenterDep, leases: RenterLeasesDep) -> Capacity:
    """GPUs that can be leased now, grouped by model and memory."""
    return await leases.capacity()


# --------------------------------------------------------------------------- leases


@router.post("/leases", response_model=LeaseView, status_code=201, tags=["leases"])
async def create_lease(body: LeaseCreate, renter: RenterDep, leases: RenterLeasesDep) -> LeaseView:
    """Lease ``count`` GPUs of one worker for ``duration_hours``."""
    return await leases.create(renter, body)


@router.get("/leases", response_model=LeaseList, tags=["leases"])
async def list_leases(renter: RenterDep, leases: RenterLeasesDep) -> LeaseList:
    """The renter's leases, newest first."""
    return await leases.listed(renter)


@router.get("/leases/{lease_id}", response_model=LeaseView, tags=["leases"])
async def get_lease(lease_id: LeaseId, renter: RenterDep, leases: RenterLeasesDep) -> LeaseView:
    return await leases.get(renter, lease_id)


@router.post("/leases/{lease_id}/extend", response_model=LeaseView, tags=["leases"])
async def extend_lease(
    lease_id: LeaseId, body: LeaseExtend, renter: RenterDep, leases: RenterLeasesDep
) -> LeaseView:
    """Move the lease's end by ``hours`` (up to leases.max_duration_hours in all)."""
    return await leases.extend(renter, lease_id, body.hours)


@router.delete("/leases/{lease_id}", response_model=LeaseView, tags=["leases"])
async def terminate_lease(
    lease_id: LeaseId, renter: RenterDep, leases: RenterLeasesDep
) -> LeaseView:
    """End the lease now; its running jobs are cancelled. Ending an ended lease is a no-op."""
    return await leases.terminate(renter, lease_id)


# --------------------------------------------------------------------------- jobs


@router.post("/leases/{lease_id}/jobs", response_model=JobView, status_code=201, tags=["jobs"])
async def submit_job(
    lease_id: LeaseId, body: JobCreate, renter: RenterDep, jobs: JobsDep
) -> JobView:
    """Run a container (or, on development workers, a process) on the lease's GPUs."""
    return await jobs.submit(renter, lease_id, body)


@router.get("/leases/{lease_id}/jobs/{job_id}", response_model=JobView, tags=["jobs"])
async def job_status(
    lease_id: LeaseId, job_id: JobIdParam, renter: RenterDep, jobs: JobsDep
) -> JobView:
    return await jobs.status(renter, lease_id, job_id)


@router.delete("/leases/{lease_id}/jobs/{job_id}", response_model=JobView, tags=["jobs"])
async def cancel_job(
    lease_id: LeaseId, job_id: JobIdParam, renter: RenterDep, jobs: JobsDep
) -> JobView:
    """Stop the job (SIGTERM, then SIGKILL); a finished job is returned as it is."""
    return await jobs.cancel(renter, lease_id, job_id)


@router.get(
    "/leases/{lease_id}/jobs/{job_id}/logs",
    response_class=Response,
    tags=["jobs"],
    responses=_LOGS,  # type: ignore[arg-type]
)
async def job_logs(
    lease_id: LeaseId,
    job_id: JobIdParam,
    renter: RenterDep,
    jobs: JobsDep,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_SLICE)] = 64 * 1024,
) -> Response:
    """A slice of the job's stdout or stderr; follow a running job by asking again from
    ``X-Next-Offset``."""
    logs = await jobs.logs(renter, lease_id, job_id, stream, offset, limit)
    return Response(
        content=logs.data,
        media_type="application/octet-stream",
        headers={
            "X-Next-Offset": str(logs.next_offset),
            "X-Log-Total": str(logs.total),
            "X-Job-Finished": "true" if logs.finished else "false",
        },
    )


@router.get("/leases/{lease_id}/jobs/{job_id}/result", response_model=JobResultView, tags=["jobs"])
async def job_result(
    lease_id: LeaseId, job_id: JobIdParam, renter: RenterDep, jobs: JobsDep
) -> JobResultView:
    """The job's state, exit code and (once it ended) its artifacts."""
    return await jobs.result(renter, lease_id, job_id)


@router.get(
    "/leases/{lease_id}/jobs/{job_id}/artifacts/{name:path}",
    response_class=StreamingResponse,
    tags=["jobs"],
    responses=_ARTIFACT,  # type: ignore[arg-type]
)
async def job_artifact(
    lease_id: LeaseId,
    job_id: JobIdParam,
    name: Annotated[str, Path(min_length=1, max_length=255)],
    renter: RenterDep,
    jobs: JobsDep,
) -> StreamingResponse:
    """One artifact, streamed in chunks of at most 4 MiB from the worker. The stream is
    checked against the listed SHA-256 as it passes; on a mismatch the connection is cut
    before the last byte, so a client never receives a complete wrong file."""
    artifact = await jobs.artifact(renter, lease_id, job_id, name)
    filename = artifact.name.rsplit("/", 1)[-1]
    return StreamingResponse(
        artifact.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(artifact.size),
            "X-Artifact-SHA256": artifact.sha256.hex(),
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


__all__ = ["PREFIX", "router"]
