"""The renter API's request-size limit, as ASGI middleware (it runs before FastAPI parses)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse

from byteleap.errors import MessageTooLarge
from neurons.validator.renter.errors import body_of


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
        exc = MessageTooLarge(size, self.max_bytes)
        response = JSONResponse(body_of(exc), status_code=413, headers={"Connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> MutableMapping[str, Any]:
    return {"type": "http.disconnect"}


__all__ = ["BodyLimit"]
