"""FastAPI dependencies of the miner's validator API, as ``Annotated`` aliases.

:data:`CallerDep` is the authenticated caller, checked in this order, each step before the next
one costs more: the btauth headers are present (401) before the body is read; the body's size,
``Content-Length`` first, then the streamed body with a running cap (413); signature, receiver,
freshness and replay over the raw bytes and the raw request target (401); permit, stake or
allow-list (403); the caller's token bucket (429). :func:`body` then decodes the body as the
route's request type (400).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from byteleap.errors import MalformedMessage, RateLimited
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from neurons.miner.api.challenges import ChallengeService
from neurons.miner.api.http import read_body, request_target
from neurons.miner.api.inventory import InventoryService
from neurons.miner.api.leases import LeaseService
from neurons.miner.api.ratelimit import TokenBuckets
from neurons.miner.api.receipts import ReceiptService
from neurons.miner.auth import ValidatorGate

_M = TypeVar("_M", bound=Message)


@dataclass
class MinerApi:
    """Everything the routes use, built once by ``create_app`` and kept on ``app.state.api``."""

    gate: ValidatorGate
    buckets: TokenBuckets
    health_buckets: TokenBuckets
    max_body: int
    inventory: InventoryService
    challenges: ChallengeService
    leases: LeaseService
    receipts: ReceiptService


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated, authorized, rate-checked caller and the raw body it signed."""

    hotkey: str
    body: bytes


async def miner_api(request: Request) -> MinerApi:
    api: MinerApi = request.app.state.api
    return api


ApiDep = Annotated[MinerApi, Depends(miner_api)]


async def authenticated(request: Request, api: ApiDep) -> Caller:
    api.gate.precheck(request.headers)
    body = await read_body(request, api.max_body)
    hotkey = api.gate.check(request.headers, body, request.method, request_target(request))
    if not api.buckets.take(hotkey):
        raise RateLimited(f"rate limit of {api.buckets.rate:g} requests/s exceeded")
    return Caller(hotkey, body)


CallerDep = Annotated[Caller, Depends(authenticated)]


def body(expected: type[_M]) -> Callable[[Caller, MinerApi], Awaitable[_M]]:
    """A dependency: the caller's body decoded as ``expected`` (``MalformedMessage`` if not)."""

    async def decoded(caller: CallerDep, api: ApiDep) -> _M:
        message = codec.decode(caller.body, codec.VALIDATOR_REQUEST, max_bytes=api.max_body)
        if not isinstance(message, expected):
            wanted = expected.model_fields["type"].default
            raise MalformedMessage(f"expected a {wanted} body, got {message.type}")
        return message

    return decoded


async def health_limited(request: Request, api: ApiDep) -> None:
    """The public ``/health`` has a bucket per client IP instead of a caller."""
    client = request.client.host if request.client else "unknown"
    if not api.health_buckets.take(f"ip:{client}"):
        raise RateLimited("health rate limit exceeded")


async def inventory_service(api: ApiDep) -> InventoryService:
    return api.inventory


async def challenge_service(api: ApiDep) -> ChallengeService:
    return api.challenges


async def lease_service(api: ApiDep) -> LeaseService:
    return api.leases


async def receipt_service(api: ApiDep) -> ReceiptService:
    return api.receipts


HealthLimited = Depends(health_limited)
InventoryDep = Annotated[InventoryService, Depends(inventory_service)]
ChallengesDep = Annotated[ChallengeService, Depends(challenge_service)]
LeasesDep = Annotated[LeaseService, Depends(lease_service)]
ReceiptsDep = Annotated[ReceiptService, Depends(receipt_service)]

__all__ = [
    "ApiDep",
    "Caller",
    "CallerDep",
    "ChallengesDep",
    "HealthLimited",
    "InventoryDep",
    "LeasesDep",
    "MinerApi",
    "ReceiptsDep",
    "body",
]
