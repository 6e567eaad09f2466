"""The miner's side of the worker link, played by a test: a websocket server on 127.0.0.1:0 that
hands each connection to the test, which scripts the conversation message by message.

    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.server = server
        ws, register = await fake.accept()
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection

from byteleap.protocol import codec
from byteleap.protocol.handshake import verify_register
from byteleap.protocol.worker_link.session import Heartbeat, HeartbeatAck, Hello, Register, Welcome
from tests.support.worker import MINER_HOTKEY


@dataclass
class FakeMiner:
    """The miner's side of the protocol, scripted by the test through queues."""

    connections: asyncio.Queue[ServerConnection] = field(default_factory=asyncio.Queue)
    hellos: list[Hello] = field(default_factory=list)
    server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/worker"

    async def accept(self, *, welcome: bool = True) -> tuple[ServerConnection, Register]:
        ws = await asyncio.wait_for(self.connections.get(), 10)
        hello = Hello(nonce=os.urandom(32), miner_hotkey=MINER_HOTKEY, heartbeat_interval_s=0.2)
        self.hellos.append(hello)
        await ws.send(codec.encode(hello))
        register = await recv(ws, Register)
        assert verify_register(hello, register)
        if welcome:
            await ws.send(codec.encode(Welcome(session_id=f"s{len(self.hellos)}")))
        return ws, register


async def recv(ws: ServerConnection, kind: type, timeout: float = 30.0) -> Any:
    """The next message of type ``kind``, acknowledging heartbeats on the way."""
    deadline = time.monotonic() + timeout
    while True:
        data = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        message = codec.decode(data, codec.WORKER_TO_MINER, max_bytes=1 << 26)
        if isinstance(message, kind):
            return message
        if isinstance(message, Heartbeat):
            await ws.send(codec.encode(HeartbeatAck(seq=message.seq)))
