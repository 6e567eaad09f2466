"""The typed error a miner's failed answer stands for (docs/protocol-http.md, SPEC 3).

:mod:`neurons.common.miner_client` and its epoch stream reader raise these; see the client's
docstring for which failure is which error.
"""

from __future__ import annotations

import httpx

from byteleap.errors import (
    AuthError,
    ByteLeapError,
    ChainError,
    Forbidden,
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
    UnsupportedVersion,
    WorkerFailure,
)
from byteleap.protocol import codec
from byteleap.protocol.miner_api.errors import ApiError

#: ``ApiError.code`` -> the error it stands for (codes whose constructor takes a message)
_SIMPLE_CODES: dict[str, type[ByteLeapError]] = {
    "protocol": ProtocolError,
    "malformed": MalformedMessage,
    "rate_limited": RateLimited,
    "auth": AuthError,
    "unauthenticated": Unauthenticated,
    "forbidden": Forbidden,
    "timeout": PeerTimeout,
    "worker_failure": WorkerFailure,
    "transient": TransientError,
    "link": LinkError,
    "chain": ChainError,
    "storage": StorageError,
}


def error_from_api(error: ApiError, status: int | None) -> ByteLeapError:
    """The typed error a miner's ``ApiError`` body stands for.

    ``status`` is the HTTP status it came with, or ``None`` for the code and message of an
    ``EpochFailure`` record (which has none: the stream's status is 200).
    """
    code, message = error.code, f"miner: {error.message}"
    if code in _SIMPLE_CODES:
        return _SIMPLE_CODES[code](message)
    if code == "unavailable":
        return PeerUnavailable(message, leased="leased" in error.message.lower())
    if code == "too_large":
        exc: ByteLeapError = MessageTooLarge(0, 0)
        exc.args = (message,)
        return exc
    if code == "unsupported_version":
        exc = UnsupportedVersion(0, 0)
        exc.args = (message,)
        return exc
    if code == "internal" or (status is not None and status >= 500):
        where = "" if status is None else f" ({status})"
        return TransientError(f"miner internal error{where}: {error.message}")
    # unknown codes, and codes a miner has no business sending (fraud verdicts are ours)
    where = "sent" if status is None else f"answered {status} with"
    return MalformedMessage(f"miner {where} unexpected error code {code!r}")


def error_without_body(status: int) -> ByteLeapError:
    """A non-2xx answer that is not an ``ApiError`` frame (a proxy, a crash page, ...)."""
    if status == 504:
        return PeerTimeout(f"HTTP {status} without an ApiError body")
    if status in (502, 503):
        return LinkError(f"HTTP {status} without an ApiError body")
    if status == 401:
        return Unauthenticated(f"HTTP {status} without an ApiError body")
    if status == 403:
        return Forbidden(f"HTTP {status} without an ApiError body")
    if status >= 500:
        return TransientError(f"HTTP {status} without an ApiError body")
    return MalformedMessage(f"HTTP {status} without an ApiError body")


def error_for(status: int, raw: bytes, max_bytes: int) -> ByteLeapError:
    """The error a non-2xx answer with body ``raw`` stands for."""
    try:
        error = codec.decode(raw, codec.MINER_RESPONSE, max_bytes=max_bytes)
    except ProtocolError:
        return error_without_body(status)
    if not isinstance(error, ApiError):
        return error_without_body(status)
    return error_from_api(error, status)


def transport_error(exc: httpx.HTTPError) -> ByteLeapError:
    """The typed error of a failure of the validator's own connection to the miner."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return LinkError(f"cannot reach the miner: {type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return PeerTimeout(f"the miner did not answer in time ({type(exc).__name__})")
    # connect refused, reset, closed, protocol violations of the connection
    return LinkError(f"link to the miner failed: {type(exc).__name__}: {exc}")


__all__ = ["error_for", "error_from_api", "error_without_body", "transport_error"]
