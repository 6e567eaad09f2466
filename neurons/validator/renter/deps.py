"""The renter API's FastAPI dependencies: the key's renter, the services, the path parameters.

Order of checks for every request that names a key: the header (401 missing or malformed), the
key's rate (429, counted before the database is asked, so a flood of wrong keys costs nothing),
the key itself (401 unknown, 403 revoked). What the dependencies need lives on ``app.state``
(:class:`RenterContext`), set once by :func:`~.app.create_renter_app`: nothing is built at
import time.

No ``from __future__ import annotations`` here: FastAPI reads these annotations at run time.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from byteleap.errors import Unauthenticated
from neurons.validator.renter.errors import KeyRevoked, TooManyRequests
from neurons.validator.renter.keys import MAX_KEY_CHARS, hash_key
from neurons.validator.renter.ratelimit import RenterTokenBuckets
from neurons.validator.renter.services import JobService, RenterLeaseService
from neurons.validator.store.lease_rows import RenterRow
from neurons.validator.store.leases import LeaseStore

LEASE_ID = r"^[A-Za-z0-9._:-]{1,128}$"
JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

bearer = HTTPBearer(auto_error=False, description="the API key from the operator")


@dataclass(frozen=True, slots=True)
class RenterContext:
    """Everything the routes' dependencies hand out, kept on ``app.state.renter``."""

    store: LeaseStore
    buckets: RenterTokenBuckets
    rate_limit_per_minute: int
    leases: RenterLeaseService
    jobs: JobService


def context(request: Request) -> RenterContext:
    found: RenterContext = request.app.state.renter
    return found


ContextDep = Annotated[RenterContext, Depends(context)]


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ctx: ContextDep,
) -> RenterRow:
    if credentials is None:
        raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
    key = credentials.credentials.strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise Unauthenticated("malformed API key")
    digest = hash_key(key)
    wait = ctx.buckets.take(digest)
    if wait > 0:
        raise TooManyRequests(
            f"rate limit of {ctx.rate_limit_per_minute} requests a minute reached",
            retry_after=RenterTokenBuckets.retry_after(wait),
        )
    renter = await ctx.store.renter_by_key_hash(digest)
    if renter is None:
        raise Unauthenticated("unknown API key")
    if renter.revoked:
        raise KeyRevoked("this API key was revoked")
    request.state.renter = renter.name
    return renter


def lease_service(ctx: ContextDep) -> RenterLeaseService:
    return ctx.leases


def job_service(ctx: ContextDep) -> JobService:
    return ctx.jobs


RenterDep = Annotated[RenterRow, Depends(authenticate)]
RenterLeasesDep = Annotated[RenterLeaseService, Depends(lease_service)]
JobsDep = Annotated[JobService, Depends(job_service)]
LeaseId = Annotated[str, Path(pattern=LEASE_ID, description="lease id")]
JobIdParam = Annotated[str, Path(pattern=JOB_ID, description="job id")]

__all__ = [
    "JOB_ID",
    "LEASE_ID",
    "JobIdParam",
    "JobsDep",
    "LeaseId",
    "RenterContext",
    "RenterDep",
    "RenterLeasesDep",
    "authenticate",
    "bearer",
]
