"""The renter REST API under ``/v1`` (FastAPI), served inside the validator process.

:func:`create_renter_app` wires it: the services (:mod:`.services`) and the rate limiter go on
``app.state`` for the dependencies (:mod:`.deps`), the routes (:mod:`.routes`) are included,
every error is answered as ``{"error": {"code", "message"}}`` (:mod:`.errors`) and bodies over
``api.max_body_bytes`` are refused before anything is parsed (:mod:`.body_limit`).

Order of checks for every request: body size (413), then the key (401 missing or unknown, 429
over the key's rate, 403 revoked), then the parameters (422), then the action.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from byteleap.errors import ByteLeapError, MalformedMessage
from neurons.validator.leasing.errors import NotFound
from neurons.validator.leasing.manager import LeaseManager
from neurons.validator.renter.body_limit import BodyLimit
from neurons.validator.renter.deps import RenterContext
from neurons.validator.renter.errors import (
    Internal,
    InvalidRequest,
    MethodNotAllowed,
    TooManyRequests,
    body_of,
    status_for,
    validation_message,
)
from neurons.validator.renter.ratelimit import RenterTokenBuckets
from neurons.validator.renter.routes import PREFIX, router
from neurons.validator.renter.services import JobService, RenterLeaseService
from neurons.validator.store.leases import LeaseStore

log = structlog.get_logger("byteleap.validator.renter")


@dataclass(frozen=True, slots=True)
class RenterApiSettings:
    """What the API reads from the ``api`` section."""

    max_body_bytes: int = 1 << 20
    rate_limit_per_minute: int = 120
    rate_limit_burst: int = 30


def error_response(exc: ByteLeapError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequests):
        headers["Retry-After"] = str(exc.retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body_of(exc), status_code=status, headers=headers)


async def on_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ByteLeapError)
    if status_for(exc) >= 500:
        log.warning(
            "renter_request_failed", path=request.url.path, code=exc.code, error=exc.message
        )
    return error_response(exc)


async def on_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(InvalidRequest(validation_message(exc.errors())))


async def on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error: ByteLeapError
    if exc.status_code == 404:
        error = NotFound("no such path")
    elif exc.status_code == 405:
        error = MethodNotAllowed("method not allowed on this path")
    elif exc.status_code == 400:
        error = MalformedMessage(str(exc.detail))
    else:
        error = Internal(str(exc.detail))
    response = error_response(error)
    if exc.status_code not in (404, 405, 400):
        response.status_code = exc.status_code
    return response


async def on_crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("renter_request_crashed", path=request.url.path)
    return error_response(Internal("internal error"))


def create_renter_app(
    *,
    store: LeaseStore,
    manager: LeaseManager,
    settings: RenterApiSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The renter API. ``clock`` (monotonic seconds) drives the rate limits."""
    settings = settings or RenterApiSettings()
    leases = RenterLeaseService(store=store, manager=manager)
    app = FastAPI(
        title="ByteLeap renter API",
        version="1",
        description="Lease GPUs from the ByteLeap network through this validator "
        "(docs/renting-gpus.md).",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.state.renter = RenterContext(
        store=store,
        buckets=RenterTokenBuckets(
            settings.rate_limit_per_minute, settings.rate_limit_burst, clock
        ),
        rate_limit_per_minute=settings.rate_limit_per_minute,
        leases=leases,
        jobs=JobService(leases=leases, gateway=manager.gateway),
    )
    app.include_router(router)
    app.add_exception_handler(ByteLeapError, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_crash)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


__all__ = ["PREFIX", "BodyLimit", "RenterApiSettings", "create_renter_app"]
