"""The routes of the miner's validator API: each decodes, calls one service, answers a frame."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from byteleap.errors import MalformedMessage
from byteleap.protocol.miner_api.challenges import ChallengeRequest, EpochRequest, OpeningsRequest
from byteleap.protocol.miner_api.forward import ForwardRequest, LeaseStatusRequest
from byteleap.protocol.miner_api.receipts import ReceiptSubmitRequest
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


__all__ = ["router"]
