"""The miner's websocket server for its workers; implements ``ports.WorkerDirectory``.

Workers dial out to the miner (so they work behind NAT). This module only moves bytes: every
decision about a session (who may register, which state it is in, which reply answers which
request, when a session is lost or abusive) is
:class:`~byteleap.sessions.miner_registry.WorkerRegistry`'s, and whether a key may join at all
is :class:`~neurons.miner.authorized.AuthorizedKeys`'s.

One connection::

    Hello(nonce, miner_hotkey, heartbeat_interval_s)      ─▶   (nonce: 32 bytes from os.urandom)
    ◀─ Register  within handshake_timeout_s               ─▶   verify_register + authorization
    Welcome(session_id)  or  ErrorReply + close(1008)     ─▶
    ◀─ Heartbeat ─▶ HeartbeatAck; replies are routed to waiting requests by challenge/lease id
                                and, for jobs, by the request id the miner chose

Anything a worker sends is size-capped by the websocket layer (``max_size``, close code 1009),
rate-limited per session, and decoded by ``codec.decode``: a bad message gets a typed
``ErrorReply`` and costs a strike; too many strikes close that one connection. Nothing a peer
sends can raise out of its handler, so other workers are never affected.

Failures reach the caller typed, so the validator scores them correctly (see ``ports``):
``PeerUnavailable`` (busy, leased, not connected), ``PeerTimeout``, ``WorkerFailure``,
``MalformedMessage`` (the worker's error reply, with its message) and ``LinkError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from byteleap.config.miner import WorkerServerSection
from byteleap.errors import (
    ConfigError,
    MalformedMessage,
    ProtocolError,
    RateLimited,
    Unauthenticated,
)
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.handshake import verify_register
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    Reveal,
)
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    JobAccepted,
    JobLogs,
    JobRefused,
    JobResult,
    JobStatus,
)
from byteleap.protocol.worker_link.leases import LeaseAck
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Register,
    Unavailable,
    Welcome,
)
from byteleap.sessions.miner_registry import (
    CLOSE_POLICY,
    CloseSession,
    FailRequest,
    RegistryInstruction,
    RegistryLimits,
    Verdict,
    WorkerRegistry,
)
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.hub_directory import HubDirectory, Pending
from neurons.miner.hub_metrics import HubMetrics

log = structlog.get_logger("byteleap.miner.hub")

#: heartbeats are asked for this many times per heartbeat timeout
HEARTBEATS_PER_TIMEOUT = 3
#: a session silent for this many heartbeat intervals may be replaced by a reconnect
STALE_AFTER_INTERVALS = 2
#: seconds ``stop()`` waits for connections to close before giving up on them
STOP_GRACE_S = 10.0


def heartbeat_interval(section: WorkerServerSection) -> float:
    """The interval the hub asks workers to heartbeat at: a third of the timeout."""
    return min(3600.0, max(0.05, section.heartbeat_timeout_s / HEARTBEATS_PER_TIMEOUT))


def registry_limits(section: WorkerServerSection) -> RegistryLimits:
    interval = heartbeat_interval(section)
    return RegistryLimits(
        max_workers=section.max_workers,
        messages_per_second=section.messages_per_second,
        message_burst=section.message_burst,
        heartbeat_timeout_s=section.heartbeat_timeout_s,
        stale_after_s=min(section.heartbeat_timeout_s, STALE_AFTER_INTERVALS * interval),
    )


class WorkerHub(HubDirectory):
    """Websocket server for workers and the miner's ``WorkerDirectory``."""

    def __init__(
        self,
        config: WorkerServerSection,
        authorized: AuthorizedKeys,
        miner_hotkey: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        metrics: HubMetrics | None = None,
    ) -> None:
        self.config = config
        self.authorized = authorized
        self.miner_hotkey = miner_hotkey
        self.clock = clock
        self.wall = wall
        self.metrics = metrics or HubMetrics()
        self.registry: WorkerRegistry[Pending] = WorkerRegistry(registry_limits(config))
        self.heartbeat_interval_s = heartbeat_interval(config)
        self.max_handshakes = max(16, min(1024, config.max_workers))
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._conns: dict[str, ServerConnection] = {}
        self._handshaking = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The port actually bound (the OS picks one when the config says 0)."""
        if self._server is None:
            raise RuntimeError("the worker hub is not running")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """The URL workers dial (with the configured host, which may be a wildcard address)."""
        scheme = "wss" if self.config.tls_cert_file is not None else "ws"
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}{self.config.path}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert, key = self.config.tls_cert_file, self.config.tls_key_file
        if cert is None or key is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the TLS certificate/key: {exc}", key="workers.tls_cert_file"
            ) from None
        return context

    async def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = await serve(
                self._handle,
                self.config.host,
                self.config.port,
                process_request=self._check_path,
                max_size=self.config.max_message_bytes,
                ssl=self._ssl_context(),
                compression=None,
                server_header=None,
            )
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise ConfigError(
                f"cannot listen on {where}: {exc.strerror or exc}", key="workers.port"
            ) from None
        self._sweeper = asyncio.create_task(self._sweep_forever())
        log.info("worker_hub_listening", url=self.url)

    async def stop(self) -> None:
        """Stop accepting, fail waiting requests with ``LinkError``, close connections (1001)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        # fail the waiters first; the server closes every connection with 1001 (going away)
        self._carry_out(
            [i for i in self.registry.close_all() if isinstance(i, FailRequest)],
        )
        server.close(close_connections=True)
        try:
            await asyncio.wait_for(server.wait_closed(), STOP_GRACE_S)
        except TimeoutError:
            log.warning("worker_hub_stop_timeout", grace_s=STOP_GRACE_S)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_GRACE_S)
        self.metrics.connected.set(0)
        log.info("worker_hub_stopped")

    async def __aenter__(self) -> WorkerHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != self.config.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        return None

    async def _sweep_forever(self) -> None:
        period = min(1.0, max(0.02, self.config.heartbeat_timeout_s / 10))
        while True:
            await asyncio.sleep(period)
            for instruction in self.registry.sweep(self.clock()):
                if isinstance(instruction, CloseSession):
                    self.metrics.lost.labels(reason="timeout").inc()
                    log.warning("worker_lost", session=instruction.session_id, reason="timeout")
                self._carry_out([instruction])

    # ------------------------------------------------------------------ instructions

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _carry_out(self, instructions: list[RegistryInstruction]) -> None:
        for instruction in instructions:
            match instruction:
                case CloseSession(session_id=sid, code=code, reason=reason):
                    ws = self._conns.pop(sid, None)
                    if ws is not None:
                        self._spawn(ws.close(code, reason))
                case FailRequest(token=future, error=error):
                    if not future.done():
                        future.set_exception(error)
        self.metrics.connected.set(self.registry.connected())

    # ------------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        if self._handshaking >= self.max_handshakes:
            await ws.close(CLOSE_POLICY, "too many connections are authenticating")
            return
        self._handshaking += 1
        try:
            session_id = await self._handshake(ws)
        finally:
            self._handshaking -= 1
        if session_id is None:
            return
        try:
            await self._serve(ws, session_id)
        except ConnectionClosed:
            pass
        finally:
            if self._conns.get(session_id) is ws:
                del self._conns[session_id]
            self._carry_out(self.registry.disconnected(session_id))
            log.info("worker_disconnected", session=session_id)

    async def _refuse(self, ws: ServerConnection, exc: ProtocolError, result: str) -> None:
        self.metrics.registrations.labels(result=result).inc()
        log.warning("worker_refused", code=exc.code, reason=exc.message, peer=_peer(ws))
        with contextlib.suppress(ConnectionClosed):
            await ws.send(codec.encode(codec.error_reply_for(exc, in_reply_to="register")))
        with contextlib.suppress(ConnectionClosed):
            await ws.close(CLOSE_POLICY, exc.code)

    async def _handshake(self, ws: ServerConnection) -> str | None:
        """Authenticate and register the peer; its session id, or None when refused."""
        hello = Hello(
            nonce=os.urandom(32),
            miner_hotkey=self.miner_hotkey,
            heartbeat_interval_s=self.heartbeat_interval_s,
        )
        try:
            await ws.send(codec.encode(hello))
            async with asyncio.timeout(self.config.handshake_timeout_s):
                data = await ws.recv()
        except TimeoutError:
            timeout = self.config.handshake_timeout_s
            await self._refuse(ws, Unauthenticated(f"no register within {timeout:g} s"), "timeout")
            return None
        except ConnectionClosed:
            return None
        try:
            register = codec.decode(data, codec.WORKER_TO_MINER, max_bytes=self._max_bytes)
            if not isinstance(register, Register):
                raise Unauthenticated(f"expected register, got {register.type}")
            if not verify_register(hello, register):
                raise Unauthenticated("the handshake signature does not verify")
            how = self.authorized.admit(register.worker_pubkey, register.join_token)
            session_id = "s-" + os.urandom(12).hex()
            instructions = self.registry.register(
                session_id,
                register.worker_pubkey,
                agent_version=register.agent_version,
                inventory=register.inventory,
                now=self.clock(),
                wall=self.wall(),
            )
        except ProtocolError as exc:
            await self._refuse(ws, exc, exc.code)
            return None
        self._conns[session_id] = ws
        if instructions:
            self.metrics.lost.labels(reason="replaced").inc()
        self._carry_out(instructions)
        self.metrics.registrations.labels(result="welcome").inc()
        log.info(
            "worker_registered",
            session=session_id,
            worker=register.worker_pubkey.hex(),
            via=how,
            gpus=len(register.inventory.gpus),
            peer=_peer(ws),
        )
        await ws.send(codec.encode(Welcome(session_id=session_id)))
        return session_id

    @property
    def _max_bytes(self) -> int:
        return self.config.max_message_bytes

    async def _serve(self, ws: ServerConnection, session_id: str) -> None:
        # Once a session is ended (replaced, lost, abusive) its close is under way; the loop
        # keeps reading, and discards, so that the peer's close frame is read even when unread
        # messages queue before it (websockets stops reading a socket whose queue is full).
        async for data in ws:
            if session_id not in self.registry:
                continue
            now = self.clock()
            verdict = self.registry.admit(session_id, now)
            if verdict is Verdict.ACCEPT:
                try:
                    message = codec.decode(data, codec.WORKER_TO_MINER, max_bytes=self._max_bytes)
                except ProtocolError as exc:
                    self.metrics.refused_messages.labels(reason=exc.code).inc()
                    if self.registry.strike(session_id, now) is Verdict.CLOSE:
                        self._close_abusive(ws, session_id)
                    else:
                        await ws.send(codec.encode(codec.error_reply_for(exc)))
                    continue
                await self._on_message(ws, session_id, message, now)
            elif verdict is Verdict.REFUSE:
                self.metrics.refused_messages.labels(reason=RateLimited.code).inc()
                limit = RateLimited(f"over {self.config.messages_per_second:g} messages per second")
                await ws.send(codec.encode(codec.error_reply_for(limit)))
            else:
                self._close_abusive(ws, session_id)

    def _close_abusive(self, ws: ServerConnection, session_id: str) -> None:
        self.metrics.lost.labels(reason="abuse").inc()
        log.warning("worker_closed_for_abuse", session=session_id, peer=_peer(ws))
        self._carry_out(self.registry.disconnected(session_id))
        self._conns.pop(session_id, None)
        self._spawn(ws.close(CLOSE_POLICY, "too many refused messages"))

    async def _on_message(
        self, ws: ServerConnection, session_id: str, message: Message, now: float
    ) -> None:
        match message:
            case Heartbeat(seq=seq):
                self.registry.heartbeat(session_id, message, now=now, wall=self.wall())
                await ws.send(codec.encode(HeartbeatAck(seq=seq)))
            case Register():
                error = MalformedMessage("already registered on this connection")
                await ws.send(codec.encode(codec.error_reply_for(error, in_reply_to="register")))
            case (
                ChallengeCommit()
                | Unavailable()
                | Reveal()
                | LeaseAck()
                | JobAccepted()
                | JobRefused()
                | JobStatus()
                | JobLogs()
                | JobResult()
                | ArtifactChunk()
                | ErrorReply()
            ):
                resolved = self.registry.reply(session_id, message)
                if resolved is None:
                    # late (after its timeout), duplicate or unsolicited; never answer an error
                    # with an error, or two confused peers would ping-pong forever
                    log.info("worker_reply_unmatched", session=session_id, type=message.type)
                elif not resolved.token.done():
                    resolved.token.set_result(message)
            case _:  # pragma: no cover - WORKER_TO_MINER admits nothing else
                pass


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


__all__ = ["HEARTBEATS_PER_TIMEOUT", "WorkerHub", "heartbeat_interval", "registry_limits"]
