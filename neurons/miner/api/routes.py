"""The routes of the miner's validator API: each decodes, calls one service, answers a frame."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from byteleap.errors import MalformedMessage
from byteleap.protocol.validator_api import (
    ChallengeRequest,
    EpochRequest,
    ForwardRequest,
    JobArtifactRequest,
    JobArtifactResponse,
    JobCancelRequest,
    JobCancelResponse,
    JobLogsRequest,
    JobLogsResponse,
    JobResultRequest,
    JobResultResponse,
    JobStatusRequest,
    JobStatusResponse,
    JobSubmitRequest,
    JobSubmitResponse,
    LeaseStartRequest,
    LeaseStartResponse,
    LeaseStatusRequest,
    LeaseStopRequest,
    LeaseStopResponse,
    OpeningsRequest,
    ReceiptSubmitRequest,
)
from byteleap.protocol.worker_link import (
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobLogs,
    JobLogsQuery,
    JobRefused,
    JobReply,
    JobResult,
    JobResultQuery,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
    LeaseStart,
    LeaseStop,
)
from neurons.miner.api.deps import (
    CallerDep,
    ChallengesDep,
    HealthLimited,
    InventoryDep,
    LeasesDep,
    ReceiptsDep,
    body,
)
from neurons.miner.api.http import GuardedRoute, RecordStream, frame

router = APIRouter(route_class=GuardedRoute)

Challenge = Annotated[ChallengeRequest, Depends(body(ChallengeRequest))]
Epoch = Annotated[EpochRequest, Depends(body(EpochRequest))]
Openings = Annotated[OpeningsRequest, Depends(body(OpeningsRequest))]
LeaseStartBody = Annotated[LeaseStartRequest, Depends(body(LeaseStartRequest))]
LeaseStopBody = Annotated[LeaseStopRequest, Depends(body(LeaseStopRequest))]
LeaseStatusBody = Annotated[LeaseStatusRequest, Depends(body(LeaseStatusRequest))]
ReceiptBody = Annotated[ReceiptSubmitRequest, Depends(body(ReceiptSubmitRequest))]
Envelope = Annotated[ForwardRequest, Depends(body(ForwardRequest))]


@router.get("/health", dependencies=[HealthLimited])
async def health(inventory: InventoryDep) -> Response:
    return frame(inventory.health())


@router.get("/inventory")
async def inventory(_: CallerDep, inventory: InventoryDep) -> Response:
    return frame(inventory.inventory())


@router.post("/challenge")
async def challenge(caller: CallerDep, req: Challenge, challenges: ChallengesDep) -> Response:
    return frame(await challenges.countersigned_commit(caller.hotkey, req))


@router.post("/epoch")
async def epoch(caller: CallerDep, req: Epoch, challenges: ChallengesDep) -> Response:
    return RecordStream(challenges.epoch_stream(caller.hotkey, req))


@router.post("/reveal")
async def reveal(_: CallerDep, req: Openings, challenges: ChallengesDep) -> Response:
    return frame(await challenges.reveal(req))


@router.post("/lease/start")
async def lease_start(caller: CallerDep, req: LeaseStartBody, leases: LeasesDep) -> Response:
    start = LeaseStart(lease_id=req.lease_id, gpu_uuids=req.gpu_uuids, ends_at=req.ends_at)
    ack = await leases.start(caller.hotkey, req.worker_pubkey, start)
    answer = LeaseStartResponse(lease_id=ack.lease_id, accepted=ack.accepted, reason=ack.reason)
    return frame(answer)


@router.post("/lease/stop")
async def lease_stop(caller: CallerDep, req: LeaseStopBody, leases: LeasesDep) -> Response:
    ack = await leases.stop(caller.hotkey, LeaseStop(lease_id=req.lease_id, reason=req.reason))
    return frame(LeaseStopResponse(lease_id=ack.lease_id, stopped=ack.accepted, reason=ack.reason))


@router.post("/forward")
async def forward(caller: CallerDep, req: Envelope, leases: LeasesDep) -> Response:
    return frame(await leases.forward(caller.hotkey, req))


@router.post("/lease/status")
async def lease_status(_: CallerDep, req: LeaseStatusBody, leases: LeasesDep) -> Response:
    return frame(leases.status(req.lease_id))


@router.post("/lease/receipt")
async def lease_receipt(caller: CallerDep, req: ReceiptBody, receipts: ReceiptsDep) -> Response:
    return frame(await receipts.submit(caller.hotkey, req))


@router.get("/receipts")
async def receipt_page(caller: CallerDep, request: Request, receipts: ReceiptsDep) -> Response:
    if caller.body:
        raise MalformedMessage("GET /receipts takes no body")
    return frame(await receipts.page(request.query_params))


# --------------------------------------------------------------------------- jobs

_RID = "r-validator"


def _job_answer(response: type[Any], req: Any, reply: JobReply, fields: dict[str, Any]) -> Response:
    ids = {"lease_id": req.lease_id, "job_id": req.job_id}
    if isinstance(reply, JobRefused):
        return frame(response(**ids, refusal=reply.reason, reason=reply.message))
    return frame(response(**ids, **fields))


def _expect(reply: JobReply, answer: type[Any]) -> Any:
    if not isinstance(reply, answer | JobRefused):  # pragma: no cover - the hub checks types
        raise MalformedMessage(f"unexpected answer {type(reply).__name__} from the worker")
    return reply


@router.post("/lease/job/submit")
async def job_submit(
    caller: CallerDep,
    req: Annotated[JobSubmitRequest, Depends(body(JobSubmitRequest))],
    leases: LeasesDep,
) -> Response:
    query = JobSubmit(request_id=_RID, lease_id=req.lease_id, job_id=req.job_id, spec=req.spec)
    reply = _expect(await leases.job(caller.hotkey, None, query), JobAccepted)
    return _job_answer(JobSubmitResponse, req, reply, {"job": getattr(reply, "job", None)})


@router.post("/lease/job/status")
async def job_status(
    caller: CallerDep,
    req: Annotated[JobStatusRequest, Depends(body(JobStatusRequest))],
    leases: LeasesDep,
) -> Response:
    query = JobStatusQuery(request_id=_RID, lease_id=req.lease_id, job_id=req.job_id)
    reply = _expect(await leases.job(caller.hotkey, None, query), JobStatus)
    return _job_answer(JobStatusResponse, req, reply, {"job": getattr(reply, "job", None)})


@router.post("/lease/job/cancel")
async def job_cancel(
    caller: CallerDep,
    req: Annotated[JobCancelRequest, Depends(body(JobCancelRequest))],
    leases: LeasesDep,
) -> Response:
    query = JobCancel(request_id=_RID, lease_id=req.lease_id, job_id=req.job_id)
    reply = _expect(await leases.job(caller.hotkey, None, query), JobStatus)
    return _job_answer(JobCancelResponse, req, reply, {"job": getattr(reply, "job", None)})


@router.post("/lease/job/logs")
async def job_logs(
    caller: CallerDep,
    req: Annotated[JobLogsRequest, Depends(body(JobLogsRequest))],
    leases: LeasesDep,
) -> Response:
    query = JobLogsQuery(
        request_id=_RID,
        lease_id=req.lease_id,
        job_id=req.job_id,
        stdout_offset=req.stdout_offset,
        stderr_offset=req.stderr_offset,
        limit=req.limit,
    )
    reply = _expect(await leases.job(caller.hotkey, None, query), JobLogs)
    return _job_answer(JobLogsResponse, req, reply, {"logs": getattr(reply, "logs", None)})


@router.post("/lease/job/result")
async def job_result(
    caller: CallerDep,
    req: Annotated[JobResultRequest, Depends(body(JobResultRequest))],
    leases: LeasesDep,
) -> Response:
    query = JobResultQuery(request_id=_RID, lease_id=req.lease_id, job_id=req.job_id)
    reply = _expect(await leases.job(caller.hotkey, None, query), JobResult)
    fields = {}
    if isinstance(reply, JobResult):
        fields = {
            "job": reply.job,
            "artifacts": reply.artifacts,
            "artifacts_omitted": reply.artifacts_omitted,
        }
    return _job_answer(JobResultResponse, req, reply, fields)


@router.post("/lease/job/artifact")
async def job_artifact(
    caller: CallerDep,
    req: Annotated[JobArtifactRequest, Depends(body(JobArtifactRequest))],
    leases: LeasesDep,
) -> Response:
    query = ArtifactQuery(
        request_id=_RID,
        lease_id=req.lease_id,
        job_id=req.job_id,
        name=req.name,
        offset=req.offset,
        limit=req.limit,
    )
    reply = _expect(await leases.job(caller.hotkey, None, query), ArtifactChunk)
    fields = {}
    if isinstance(reply, ArtifactChunk):
        if reply.artifact.name != req.name or reply.offset != req.offset:
            raise MalformedMessage("the worker answered with another part of the artifact")
        fields = {
            "artifact": reply.artifact,
            "offset": reply.offset,
            "data": reply.data,
            "eof": reply.eof,
        }
    return _job_answer(JobArtifactResponse, req, reply, fields)


__all__ = ["router"]
