"""Every error of the renter API: one JSON body, one status per error type.

Every non-2xx answer is ``{"error": {"code": "<stable code>", "message": "<words>"}}``. The code
is the ``.code`` of the ``ByteLeapError`` that ended the request, so clients branch on it, never
on the message. docs/renting-gpus.md lists every code.

Errors of a miner (an answer that does not decode, a refused receipt, a signature that does not
verify) are the validator's upstream's fault, not the renter's: :func:`from_miner` turns them into
:class:`MinerError` (502) so they are never mistaken for a bad renter request (400).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from byteleap.errors import (
    ByteLeapError,
    Forbidden,
    FraudError,
    LinkError,
    MalformedMessage,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
    RateLimited,
    StorageError,
    TransientError,
    Unauthenticated,
    WorkerFailure,
)
from neurons.validator.leasing.errors import (
    DurationTooLong,
    JobRequestRefused,
    LeaseNotActive,
    LeaseStartFailed,
    NoCapacity,
    NotFound,
    SpendLimitExceeded,
)


class KeyRevoked(Forbidden):
    """The API key was revoked by the operator."""

    code = "key_revoked"


class InvalidRequest(MalformedMessage):
    """The request's parameters or body do not validate."""

    code = "invalid_request"


class MethodNotAllowed(ProtocolError):
    """The path exists, but not with this method."""

    code = "method_not_allowed"


class MinerError(ByteLeapError):
    """The miner answered something the validator cannot use."""

    code = "miner_error"


class Internal(ByteLeapError):
    """An unexpected error inside the validator (logged with its trace)."""

    code = "internal"


#: job refusals that mean "no such thing"
_MISSING = frozenset({"unknown_job", "unknown_artifact"})


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="stable machine-readable error code", examples=["not_found"])
    message: str = Field(description="what went wrong, in words")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


def status_for(exc: ByteLeapError) -> int:
    """The HTTP status ``exc`` is answered with."""
    table: list[tuple[type[ByteLeapError] | tuple[type[ByteLeapError], ...], int]] = [
        (Unauthenticated, 401),
        (NotFound, 404),
        ((KeyRevoked, SpendLimitExceeded), 403),
        (MessageTooLarge, 413),
        (RateLimited, 429),
        (MethodNotAllowed, 405),
        ((InvalidRequest, DurationTooLong), 422),
        ((NoCapacity, LeaseNotActive, LeaseStartFailed), 409),
        (Forbidden, 403),
        (ProtocolError, 400),
        ((MinerError, LinkError, WorkerFailure), 502),
        ((PeerUnavailable, StorageError, TransientError), 503),
        (PeerTimeout, 504),
    ]
    if isinstance(exc, JobRequestRefused):
        if exc.code in _MISSING:
            return 404
        return 422 if exc.code == "invalid_job" else 409
    for kinds, status in table:
        if isinstance(exc, kinds):
            return status
    return 500


def validation_message(errors: Any) -> str:
    """The first few validation errors of a request, in one line."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def body_of(exc: ByteLeapError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message}}


def from_miner(exc: ByteLeapError) -> ByteLeapError:
    """A miner call's failure as the renter sees it: protocol and verification failures of the
    miner's answer become :class:`MinerError`; timeouts, link and worker failures keep their
    types (504, 502, 503)."""
    if isinstance(exc, ProtocolError | FraudError):
        return MinerError(f"the miner's answer was refused: {exc.code}: {exc.message}")
    return exc


#: the error answers every route documents (the OpenAPI schema lists them)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "malformed request",
        401: "missing or unknown API key",
        403: "revoked key, or over the spending limit",
        404: "no such lease, job or artifact",
        405: "method not allowed",
        409: "the lease's state does not allow this, or no capacity",
        413: "request body too large",
        422: "invalid parameters or body",
        429: "rate limited (see Retry-After)",
        500: "internal error",
        502: "the miner failed or answered badly",
        503: "the worker or the database is unavailable",
        504: "the miner did not answer in time",
    }.items()
}


class TooManyRequests(RateLimited):
    """The key used up its request budget; ``retry_after`` is in whole seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


__all__ = [
    "ERROR_RESPONSES",
    "ErrorBody",
    "ErrorDetail",
    "Internal",
    "InvalidRequest",
    "KeyRevoked",
    "MethodNotAllowed",
    "MinerError",
    "TooManyRequests",
    "body_of",
    "from_miner",
    "status_for",
    "validation_message",
]
