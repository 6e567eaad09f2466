"""``ApiError``, the body of every non-2xx answer of the validator API, and its HTTP status."""

from __future__ import annotations

from typing import Literal

from byteleap.errors import (
    AuthError,
    ByteLeapError,
    Forbidden,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
    RateLimited,
    TransientError,
    Unauthenticated,
    WorkerFailure,
)
from byteleap.protocol.common import (
    Code,
    Message,
    Text,
)


class ApiError(Message):
    """Body of every non-2xx answer. ``code`` is the ``.code`` of a ``ByteLeapError`` class."""

    type: Literal["api_error"] = "api_error"
    code: Code
    message: Text


def http_status_for(exc: ByteLeapError) -> int:
    """The HTTP status an API error of this type is answered with."""
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, MessageTooLarge):
        return 413
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, AuthError):
        return 401
    if isinstance(exc, ProtocolError):
        return 400
    if isinstance(exc, PeerUnavailable):
        return 409
    if isinstance(exc, PeerTimeout):
        return 504
    if isinstance(exc, WorkerFailure):
        return 502
    if isinstance(exc, TransientError):
        return 503
    return 500


__all__ = [
    "ApiError",
    "http_status_for",
]
