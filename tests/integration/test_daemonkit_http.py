"""``daemonkit.http.EmbeddedServer``: serves on port 0, stops (bounded), and names the config key
of a port it cannot bind."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest

from byteleap.errors import ConfigError
from daemonkit.http import EmbeddedServer


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: ``/hang`` never answers, anything else says hello."""
    assert scope["type"] == "http"
    if scope["path"] == "/hang":
        await asyncio.sleep(3600)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def test_serves_on_port_0_and_stops() -> None:
    server = EmbeddedServer(app, "127.0.0.1", 0, name="test API")
    await server.start()
    assert server.started and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{server.url}/")
    assert reply.status_code == 200 and reply.text == "hello"
    port = server.port
    await server.stop()
    assert not server.started
    assert refused(port)
    await server.stop()  # stopping twice is harmless


async def test_as_a_context_manager() -> None:
    async with EmbeddedServer(app, "127.0.0.1", 0) as server, httpx.AsyncClient() as client:
        assert (await client.get(server.url)).text == "hello"
        port = server.port
    assert refused(port)


async def test_a_port_in_use_is_a_config_error_naming_the_key() -> None:
    async with EmbeddedServer(app, "127.0.0.1", 0) as first:
        taken = first.port
        second = EmbeddedServer(app, "127.0.0.1", taken, name="renter API", key="api.port")
        with pytest.raises(ConfigError) as caught:
            await second.start()
        assert not second.started
    assert caught.value.key == "api.port"
    assert f"cannot serve the renter API on 127.0.0.1:{taken}" in caught.value.message


async def test_stop_cuts_a_request_that_outlives_the_grace() -> None:
    server = EmbeddedServer(app, "127.0.0.1", 0, graceful_s=1)
    await server.start()
    async with httpx.AsyncClient() as client:
        hanging = asyncio.create_task(client.get(f"{server.url}/hang", timeout=30))
        await asyncio.sleep(0.2)  # the request is in the app
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 5
        try:
            reply = await hanging
        except httpx.HTTPError:
            pass  # the connection was closed under it
        else:
            assert reply.status_code == 500  # uvicorn answers a cancelled request with 500
