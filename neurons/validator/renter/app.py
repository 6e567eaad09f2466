"""The renter REST API under ``/v1`` (FastAPI), served inside the validator process.

Routes are thin: they authenticate the key, call the :class:`LeaseManager` (leases) or the
lease's miner (jobs), and shape the answer. Everything a renter can do goes through a lease the
renter owns; another renter's lease is answered exactly like a missing one (404), so lease ids
leak nothing.

Order of checks for every request: body size (413, before anything is parsed), then the key
(401 missing or unknown, 429 over the key's rate, 403 revoked), then the parameters (422), then
the action. Every error is ``{"error": {"code", "message"}}`` (:mod:`.errors`).

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at run
time, and they name dependency aliases local to :func:`create_renter_app`.
"""

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from byteleap.errors import ByteLeapError, MalformedMessage, Unauthenticated
from byteleap.protocol.validator_api import (
    JobArtifactRequest,
    JobCancelRequest,
    JobLogsRequest,
    JobResultRequest,
    JobStatusRequest,
    JobSubmitRequest,
)
from byteleap.protocol.worker_link import (
    MAX_ARTIFACT_CHUNK,
    MAX_LOG_SLICE,
    ArtifactInfo,
    JobInfo,
    JobSpec,
)
from neurons.common.miner_client import MinerClient
from neurons.validator.leasing.errors import JobRefused, LeaseNotActive, NotFound
from neurons.validator.leasing.manager import LeaseManager
from neurons.validator.leasing.matching import LeaseRequest
from neurons.validator.renter.errors import (
    ERROR_RESPONSES,
    Internal,
    InvalidRequest,
    KeyRevoked,
    MethodNotAllowed,
    TooManyRequests,
    body_of,
    from_miner,
    status_for,
)
from neurons.validator.renter.keys import MAX_KEY_CHARS, hash_key
from neurons.validator.renter.models import (
    Artifact,
    Capacity,
    CapacityLine,
    JobCreate,
    JobResult,
    JobView,
    LeaseCreate,
    LeaseExtend,
    LeaseList,
    LeaseView,
)
from neurons.validator.renter.ratelimit import TokenBuckets
from neurons.validator.store.leases import LeaseRow, LeaseStore, RenterRow, booked_amount

log = structlog.get_logger("byteleap.validator.renter")

PREFIX = "/v1"
LEASE_ID = r"^[A-Za-z0-9._:-]{1,128}$"
JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


@dataclass(frozen=True, slots=True)
class RenterApiSettings:
    """What the API reads from the ``api`` section."""

    max_body_bytes: int = 1 << 20
    rate_limit_per_minute: int = 120
    rate_limit_burst: int = 30


# --------------------------------------------------------------------------- body size


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app sees them.

    A declared ``Content-Length`` over the limit is refused at once; a body without one (chunked)
    is read up to the limit and refused as soon as it goes over. Bodies within the limit are
    buffered (they are small: ``api.max_body_bytes``) and handed to the app unchanged.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(
        self, send: Callable[[MutableMapping[str, Any]], Awaitable[None]], size: int
    ) -> None:
        from byteleap.errors import MessageTooLarge

        exc = MessageTooLarge(size, self.max_bytes)
        response = JSONResponse(body_of(exc), status_code=413, headers={"Connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> MutableMapping[str, Any]:
    return {"type": "http.disconnect"}


# --------------------------------------------------------------------------- views


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


def _refused(refusal: str | None, reason: str) -> None:
    if refusal is not None:
        raise JobRefused(refusal, reason or refusal.replace("_", " "))


def _error_response(exc: ByteLeapError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body_of(exc), status_code=status, headers=headers)


def _validation_message(errors: Any) -> str:
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# --------------------------------------------------------------------------- the app


def create_renter_app(
    *,
    store: LeaseStore,
    manager: LeaseManager,
    settings: RenterApiSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The renter API. ``clock`` (monotonic seconds) drives the rate limits."""
    settings = settings or RenterApiSettings()
    buckets = TokenBuckets(settings.rate_limit_per_minute, settings.rate_limit_burst, clock)
    bearer = HTTPBearer(auto_error=False, description="the API key from the operator")

    async def authenticate(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> RenterRow:
        if credentials is None:
            raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
        key = credentials.credentials.strip()
        if not key or len(key) > MAX_KEY_CHARS:
            raise Unauthenticated("malformed API key")
        digest = hash_key(key)
        wait = buckets.take(digest)
        if wait > 0:
            retry = TokenBuckets.retry_after(wait)
            raise TooManyRequests(
                f"rate limit of {settings.rate_limit_per_minute} requests a minute reached",
                retry_after=retry,
            )
        renter = await store.renter_by_key_hash(digest)
        if renter is None:
            raise Unauthenticated("unknown API key")
        if renter.revoked:
            raise KeyRevoked("this API key was revoked")
        request.state.renter = renter.name
        return renter

    RenterDep = Annotated[RenterRow, Depends(authenticate)]
    LeaseId = Annotated[str, Path(pattern=LEASE_ID, description="lease id")]
    JobIdParam = Annotated[str, Path(pattern=JOB_ID, description="job id")]

    async def owned(renter: RenterRow, lease_id: str) -> LeaseRow:
        return await manager.lease_of(renter, lease_id)

    async def miner_call(lease: LeaseRow, call: Callable[[MinerClient], Awaitable[Any]]) -> Any:
        try:
            async with manager.client(lease) as client:
                return await call(client)
        except JobRefused:
            raise
        except ByteLeapError as exc:
            raise from_miner(exc) from None

    router = APIRouter(prefix=PREFIX, responses=ERROR_RESPONSES)

    # ------------------------------------------------------------------ capacity

    @router.get("/capacity", response_model=Capacity, tags=["capacity"])
    async def get_capacity(renter: RenterDep) -> Capacity:
        """GPUs that can be leased now, grouped by model and memory."""
        lines = await manager.capacity()
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

    # ------------------------------------------------------------------ leases

    @router.post("/leases", response_model=LeaseView, status_code=201, tags=["leases"])
    async def create_lease(body: LeaseCreate, renter: RenterDep) -> LeaseView:
        """Lease ``count`` GPUs of one worker for ``duration_hours``."""
        request = LeaseRequest(
            count=body.count,
            duration_hours=body.duration_hours,
            max_price_per_gpu_hour=body.max_price_per_gpu_hour,
            model=body.model,
            min_vram_mib=body.min_vram_mib,
        )
        try:
            lease = await manager.create(renter, request)
        except NotFound:
            raise
        except ByteLeapError as exc:
            raise from_miner(exc) from None
        log.info("renter_lease_created", renter=renter.name, lease=lease.id)
        return lease_view(lease)

    @router.get("/leases", response_model=LeaseList, tags=["leases"])
    async def list_leases(renter: RenterDep) -> LeaseList:
        """The renter's leases, newest first."""
        return LeaseList(leases=[lease_view(x) for x in await store.renter_leases(renter.id)])

    @router.get("/leases/{lease_id}", response_model=LeaseView, tags=["leases"])
    async def get_lease(lease_id: LeaseId, renter: RenterDep) -> LeaseView:
        return lease_view(await owned(renter, lease_id))

    @router.post("/leases/{lease_id}/extend", response_model=LeaseView, tags=["leases"])
    async def extend_lease(lease_id: LeaseId, body: LeaseExtend, renter: RenterDep) -> LeaseView:
        """Move the lease's end by ``hours`` (up to leases.max_duration_hours in all)."""
        return lease_view(await manager.extend(renter, lease_id, body.hours))

    @router.delete("/leases/{lease_id}", response_model=LeaseView, tags=["leases"])
    async def terminate_lease(lease_id: LeaseId, renter: RenterDep) -> LeaseView:
        """End the lease now; its running jobs are cancelled. Ending an ended lease is a no-op."""
        return lease_view(await manager.terminate(renter, lease_id))

    # ------------------------------------------------------------------ jobs

    @router.post("/leases/{lease_id}/jobs", response_model=JobView, status_code=201, tags=["jobs"])
    async def submit_job(lease_id: LeaseId, body: JobCreate, renter: RenterDep) -> JobView:
        """Run a container (or, on development workers, a process) on the lease's GPUs."""
        lease = await owned(renter, lease_id)
        if lease.status != "active":
            raise LeaseNotActive(f"lease {lease_id} is {lease.status}: it takes no new jobs")
        try:
            spec = JobSpec(
                image=body.image, command=body.command, env=body.env, timeout_s=body.timeout_s
            )
        except ValidationError as exc:
            raise InvalidRequest(_validation_message(exc.errors())) from None
        job_id = "job-" + secrets.token_hex(8)

        async def call(client: MinerClient) -> JobView:
            answer = await client.job_submit(
                JobSubmitRequest(lease_id=lease.id, job_id=job_id, spec=spec)
            )
            _refused(answer.refusal, answer.reason)
            assert answer.job is not None
            return job_view(lease.id, answer.job)

        view: JobView = await miner_call(lease, call)
        log.info("renter_job_submitted", renter=renter.name, lease=lease.id, job=job_id)
        return view

    @router.get("/leases/{lease_id}/jobs/{job_id}", response_model=JobView, tags=["jobs"])
    async def job_status(lease_id: LeaseId, job_id: JobIdParam, renter: RenterDep) -> JobView:
        lease = await owned(renter, lease_id)

        async def call(client: MinerClient) -> JobView:
            answer = await client.job_status(JobStatusRequest(lease_id=lease.id, job_id=job_id))
            _refused(answer.refusal, answer.reason)
            assert answer.job is not None
            return job_view(lease.id, answer.job)

        view: JobView = await miner_call(lease, call)
        return view

    @router.delete("/leases/{lease_id}/jobs/{job_id}", response_model=JobView, tags=["jobs"])
    async def cancel_job(lease_id: LeaseId, job_id: JobIdParam, renter: RenterDep) -> JobView:
        """Stop the job (SIGTERM, then SIGKILL); a finished job is returned as it is."""
        lease = await owned(renter, lease_id)

        async def call(client: MinerClient) -> JobView:
            answer = await client.job_cancel(JobCancelRequest(lease_id=lease.id, job_id=job_id))
            _refused(answer.refusal, answer.reason)
            assert answer.job is not None
            return job_view(lease.id, answer.job)

        view: JobView = await miner_call(lease, call)
        return view

    @router.get(
        "/leases/{lease_id}/jobs/{job_id}/logs",
        response_class=Response,
        tags=["jobs"],
        responses={
            200: {
                "description": "the bytes of the stream from ``offset``; X-Next-Offset, "
                "X-Log-Total and X-Job-Finished say where to go on",
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def job_logs(
        lease_id: LeaseId,
        job_id: JobIdParam,
        renter: RenterDep,
        stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_LOG_SLICE)] = 64 * 1024,
    ) -> Response:
        """A slice of the job's stdout or stderr; follow a running job by asking again from
        ``X-Next-Offset``."""
        lease = await owned(renter, lease_id)
        request = JobLogsRequest(
            lease_id=lease.id,
            job_id=job_id,
            stdout_offset=offset if stream == "stdout" else 0,
            stderr_offset=offset if stream == "stderr" else 0,
            limit=limit,
        )

        async def call(client: MinerClient) -> Response:
            answer = await client.job_logs(request)
            _refused(answer.refusal, answer.reason)
            assert answer.logs is not None
            logs = answer.logs
            if stream == "stdout":
                data, start, total = logs.stdout, logs.stdout_offset, logs.stdout_total
            else:
                data, start, total = logs.stderr, logs.stderr_offset, logs.stderr_total
            return Response(
                content=data,
                media_type="application/octet-stream",
                headers={
                    "X-Next-Offset": str(start + len(data)),
                    "X-Log-Total": str(total),
                    "X-Job-Finished": "true" if logs.finished else "false",
                },
            )

        response: Response = await miner_call(lease, call)
        return response

    async def result_of(lease: LeaseRow, job_id: str) -> tuple[JobInfo, list[ArtifactInfo], int]:
        async def call(client: MinerClient) -> tuple[JobInfo, list[ArtifactInfo], int]:
            answer = await client.job_result(JobResultRequest(lease_id=lease.id, job_id=job_id))
            _refused(answer.refusal, answer.reason)
            assert answer.job is not None
            return answer.job, list(answer.artifacts), answer.artifacts_omitted

        result: tuple[JobInfo, list[ArtifactInfo], int] = await miner_call(lease, call)
        return result

    @router.get("/leases/{lease_id}/jobs/{job_id}/result", response_model=JobResult, tags=["jobs"])
    async def job_result(lease_id: LeaseId, job_id: JobIdParam, renter: RenterDep) -> JobResult:
        """The job's state, exit code and (once it ended) its artifacts."""
        lease = await owned(renter, lease_id)
        job, artifacts, omitted = await result_of(lease, job_id)
        return JobResult(
            job=job_view(lease.id, job),
            artifacts=[
                Artifact(name=a.name, size=a.size, sha256=a.sha256.hex()) for a in artifacts
            ],
            artifacts_omitted=omitted,
        )

    @router.get(
        "/leases/{lease_id}/jobs/{job_id}/artifacts/{name:path}",
        response_class=StreamingResponse,
        tags=["jobs"],
        responses={
            200: {
                "description": "the artifact's bytes; X-Artifact-SHA256 is their SHA-256 (hex)",
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def job_artifact(
        lease_id: LeaseId,
        job_id: JobIdParam,
        name: Annotated[str, Path(min_length=1, max_length=255)],
        renter: RenterDep,
    ) -> StreamingResponse:
        """One artifact, streamed in chunks of at most 4 MiB from the worker. The stream is
        checked against the listed SHA-256 as it passes; on a mismatch the connection is cut
        before the last byte, so a client never receives a complete wrong file."""
        lease = await owned(renter, lease_id)
        _, artifacts, _ = await result_of(lease, job_id)
        artifact = next((a for a in artifacts if a.name == name), None)
        if artifact is None:
            raise JobRefused("unknown_artifact", f"job {job_id} has no artifact {name!r}")

        async def chunk(client: MinerClient, offset: int) -> bytes:
            answer = await client.job_artifact(
                JobArtifactRequest(
                    lease_id=lease.id,
                    job_id=job_id,
                    name=artifact.name,
                    offset=offset,
                    limit=MAX_ARTIFACT_CHUNK,
                )
            )
            _refused(answer.refusal, answer.reason)
            if answer.offset != offset or (not answer.data and offset < artifact.size):
                raise MalformedMessage(f"artifact {artifact.name}: no progress at byte {offset}")
            return answer.data

        first: bytes = await miner_call(lease, lambda client: chunk(client, 0))

        async def stream() -> AsyncIterator[bytes]:
            digest = hashlib.sha256(first)
            sent = len(first)
            if sent >= artifact.size:
                if sent != artifact.size or digest.digest() != artifact.sha256:
                    raise MalformedMessage(f"artifact {artifact.name} does not match its SHA-256")
                yield first
                return
            yield first
            async with manager.client(lease) as client:
                while sent < artifact.size:
                    data = await chunk(client, sent)
                    sent += len(data)
                    digest.update(data)
                    if sent > artifact.size or (
                        sent == artifact.size and digest.digest() != artifact.sha256
                    ):
                        raise MalformedMessage(
                            f"artifact {artifact.name} does not match its SHA-256"
                        )
                    yield data

        filename = artifact.name.rsplit("/", 1)[-1]
        return StreamingResponse(
            stream(),
            media_type="application/octet-stream",
            headers={
                "Content-Length": str(artifact.size),
                "X-Artifact-SHA256": artifact.sha256.hex(),
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    # ------------------------------------------------------------------ the app

    app = FastAPI(
        title="ByteLeap renter API",
        version="1",
        description="Lease GPUs from the ByteLeap network through this validator "
        "(docs/renting-gpus.md).",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.include_router(router)

    @app.exception_handler(ByteLeapError)
    async def on_error(request: Request, exc: ByteLeapError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning(
                "renter_request_failed", path=request.url.path, code=exc.code, error=exc.message
            )
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(InvalidRequest(_validation_message(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: ByteLeapError
        if exc.status_code == 404:
            error = NotFound("no such path")
        elif exc.status_code == 405:
            error = MethodNotAllowed("method not allowed on this path")
        elif exc.status_code == 400:
            error = MalformedMessage(str(exc.detail))
        else:
            error = Internal(str(exc.detail))
        response = _error_response(error)
        if exc.status_code not in (404, 405, 400):
            response.status_code = exc.status_code
        return response

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("renter_request_crashed", path=request.url.path)
        return _error_response(Internal("internal error"))

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


__all__ = ["PREFIX", "BodyLimit", "RenterApiSettings", "create_renter_app"]
