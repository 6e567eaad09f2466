"""HTTP plumbing of the miner's validator API: frames in and out, bounded bodies, one guard.

Every answer is a codec frame (:data:`CONTENT_TYPE`); every non-2xx answer is an ``ApiError``
frame with ``http_status_for(exc)`` as its status. :class:`GuardedRoute` is the one place that
turns a ``ByteLeapError`` (raised by a route, a service or a dependency) into its answer, and a
bug into ``ApiError(code="internal")`` that is logged here, so nothing escapes as a bare 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute

from byteleap.errors import ByteLeapError, MalformedMessage, MessageTooLarge
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.miner_api.errors import ApiError, http_status_for
from byteleap.protocol.stream import STREAM_CONTENT_TYPE

log = logging.getLogger("neurons.miner.api")

#: media type of every request and response body: one ByteLeap codec frame
CONTENT_TYPE = "application/x-byteleap-frame"


def frame(message: Message, status: int = 200) -> Response:
    """``message`` as one codec frame."""
    return Response(content=codec.encode(message), status_code=status, media_type=CONTENT_TYPE)


def error_response(exc: ByteLeapError) -> Response:
    return frame(codec.api_error_for(exc), http_status_for(exc))


def internal_error() -> Response:
    return frame(ApiError(code="internal", message="internal error"), 500)


def request_target(request: Request) -> str:
    """The request target exactly as received (raw path plus ``?query``): what was signed."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    query = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with ``MessageTooLarge`` as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise MalformedMessage("Content-Length is not an integer") from None
        if size > limit:
            raise MessageTooLarge(size, limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise MessageTooLarge(received, limit)
        chunks.append(chunk)
    return b"".join(chunks)


class GuardedRoute(APIRoute):
    """A route whose failures, its dependencies' included, are answered as ``ApiError`` frames."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except ByteLeapError as exc:
                log.info(
                    "%s %s -> %s: %s",
                    request.method,
                    request.url.path,
                    exc.code,
                    exc.message[:200],
                )
                return error_response(exc)
            except Exception:
                log.exception("validator API bug on %s %s", request.method, request.url.path)
                return internal_error()

        return guarded


class RecordStream(StreamingResponse):
    """A record stream whose generator is always closed when the response ends, also when the
    validator disconnects mid-stream (the generator then cancels the outstanding challenges)."""

    def __init__(self, records: AsyncGenerator[bytes, None]) -> None:
        super().__init__(records, media_type=STREAM_CONTENT_TYPE)
        self._records = records

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._records.aclose()


__all__ = [
    "CONTENT_TYPE",
    "GuardedRoute",
    "RecordStream",
    "error_response",
    "frame",
    "internal_error",
    "read_body",
    "request_target",
]
