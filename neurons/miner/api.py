"""The miner's HTTP API for validators (SPEC 1, 2, 4 and 6); see docs/protocol-http.md.

``create_app`` builds a FastAPI application with no module-level state. Every route except
``GET /health`` requires a ``btauth/1`` signature by a permitted validator (:mod:`.auth`). The
order of checks for an authenticated route is:

1. the btauth headers are present (401) — before the body is read;
2. the body size: ``Content-Length`` first, then the streamed body with a running cap (413);
3. signature, receiver, freshness, replay over the *raw* bytes and the raw request target (401);
4. permit / stake / allow-list (403);
5. the caller's token bucket (429);
6. the body, decoded with ``codec.VALIDATOR_REQUEST`` and type-checked (400).

Bodies are codec frames (:data:`CONTENT_TYPE`) both ways; every non-2xx answer is an ``ApiError``
frame with ``http_status_for(exc)`` as its status. Nothing unexpected escapes as a bare 500: a
bug is answered with ``ApiError(code="internal")`` and logged here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from byteleap.config.miner import MinerApiSection
from byteleap.errors import (
    ByteLeapError,
    Forbidden,
    MalformedMessage,
    MessageTooLarge,
    PeerUnavailable,
    RateLimited,
)
from byteleap.protocol import codec
from byteleap.protocol.common import MAX_TEXT, Message
from byteleap.protocol.validator_api import (
    ApiError,
    ChallengeRequest,
    ChallengeResponse,
    HealthResponse,
    InventoryResponse,
    LeaseStartRequest,
    LeaseStartResponse,
    LeaseState,
    LeaseStatusRequest,
    LeaseStatusResponse,
    LeaseStopRequest,
    LeaseStopResponse,
    OpeningsRequest,
    OpeningsResponse,
    evidence_payload,
    http_status_for,
)
from byteleap.protocol.worker_link import (
    ChallengeDispatch,
    LeaseStart,
    LeaseStop,
    RevealRequest,
)
from neurons.miner.auth import ValidatorGate
from neurons.miner.ports import WorkerDirectory

log = logging.getLogger(__name__)

#: media type of every request and response body: one ByteLeap codec frame
CONTENT_TYPE = "application/x-byteleap-frame"
#: seconds the miner waits for a commit beyond the challenge's own deadline (link latency)
CHALLENGE_SLACK_S = 0.5
#: ended leases are remembered this long for ``/lease/status``
LEASE_RETENTION_S = 7 * 24 * 3600.0
#: most leases remembered; the oldest ended ones are dropped first
MAX_LEASES = 100_000

_M = TypeVar("_M", bound=Message)


# --------------------------------------------------------------------------- rate limiting


class TokenBuckets:
    """One token bucket per key (caller hotkey or client IP): ``rate`` tokens/s, ``burst`` max."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], *, max_keys: int = 10_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False when it is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._evict(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def _evict(self, now: float) -> None:
        # buckets that have refilled completely carry no information
        full_after = self.burst / self.rate
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


# --------------------------------------------------------------------------- leases


@dataclass
class LeaseRecord:
    lease_id: str
    owner: str  # the validator hotkey that started it
    worker_pubkey: str
    gpu_uuids: list[str]
    ends_at: int
    state: LeaseState
    updated: float


class LeaseTable:
    """The leases this miner routed, for ``/lease/status`` and to refuse challenges on them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._leases: dict[str, LeaseRecord] = {}

    def get(self, lease_id: str) -> LeaseRecord | None:
        record = self._leases.get(lease_id)
        if record is not None and record.state == "active" and self._clock() >= record.ends_at:
            record.state = "ended"
            record.updated = self._clock()
        return record

    def put(self, record: LeaseRecord) -> None:
        self._prune()
        self._leases[record.lease_id] = record

    def discard(self, lease_id: str) -> None:
        self._leases.pop(lease_id, None)

    def leased(self, worker_pubkey: str) -> bool:
        """Whether a lease that has not ended holds (some GPUs of) this worker."""
        return any(
            record.worker_pubkey == worker_pubkey
            and self.get(record.lease_id) is not None
            and record.state in ("starting", "active")
            for record in list(self._leases.values())
        )

    def _prune(self) -> None:
        now = self._clock()
        for lease_id in list(self._leases):
            current = self.get(lease_id)
            if (
                current is not None
                and current.state == "ended"
                and now - current.updated > LEASE_RETENTION_S
            ):
                del self._leases[lease_id]
        if len(self._leases) >= MAX_LEASES:
            ended = sorted(
                (r for r in self._leases.values() if r.state == "ended"), key=lambda r: r.updated
            )
            for record in ended[: len(self._leases) - MAX_LEASES + 1]:
                del self._leases[record.lease_id]
            if len(self._leases) >= MAX_LEASES:
                raise PeerUnavailable("the miner's lease table is full")


# --------------------------------------------------------------------------- helpers


def frame_response(message: Message, status: int = 200) -> Response:
    return Response(content=codec.encode(message), status_code=status, media_type=CONTENT_TYPE)


def error_response(exc: ByteLeapError) -> Response:
    return frame_response(codec.api_error_for(exc), http_status_for(exc))


def _internal_error() -> Response:
    return frame_response(ApiError(code="internal", message="internal error"), 500)


def _request_target(request: Request) -> str:
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


def _worker_key(hex_key: str) -> bytes:
    return bytes.fromhex(hex_key)


# --------------------------------------------------------------------------- the app


def create_app(
    *,
    miner_hotkey: str,
    signer: Callable[[bytes], bytes],
    gate: ValidatorGate,
    workers: WorkerDirectory,
    config: MinerApiSection,
    clock: Callable[[], float] = time.time,
    version: str = "0",
    rate_per_second: float = 20.0,
    rate_burst: int = 60,
    health_rate_per_second: float = 5.0,
    health_burst: int = 20,
) -> FastAPI:
    """The validator API of one miner.

    ``signer`` signs bytes with the miner's hotkey (``wallet.hotkey.sign``). ``config`` is the
    ``api`` section (:class:`byteleap.config.miner.MinerApiSection`); only ``max_body_bytes`` and
    ``request_timeout_s`` are read. ``clock`` is unix time (lease ends, uptime, rate buckets).
    ``rate_*`` is the per-validator token bucket of the authenticated routes; ``health_*`` the
    per-client-IP bucket of the public ``/health``.
    """
    max_body = int(config.max_body_bytes)
    request_timeout = float(config.request_timeout_s)
    started = clock()
    buckets = TokenBuckets(rate_per_second, rate_burst, clock)
    health_buckets = TokenBuckets(health_rate_per_second, health_burst, clock)
    leases = LeaseTable(clock)

    app = FastAPI(
        title="ByteLeap miner validator API",
        version=version,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail)[:MAX_TEXT] or code
        return frame_response(ApiError(code=code, message=message), exc.status_code)

    async def guarded(request: Request, handler: Callable[[], Awaitable[Message]]) -> Response:
        try:
            return frame_response(await handler())
        except ByteLeapError as exc:
            log.info(
                "%s %s -> %s: %s", request.method, request.url.path, exc.code, exc.message[:200]
            )
            return error_response(exc)
        except Exception:
            log.exception("validator API bug on %s %s", request.method, request.url.path)
            return _internal_error()

    async def authenticated(request: Request) -> tuple[str, bytes]:
        gate.precheck(request.headers)
        body = await read_body(request, max_body)
        caller = gate.check(request.headers, body, request.method, _request_target(request))
        if not buckets.take(caller):
            raise RateLimited(f"rate limit of {rate_per_second:g} requests/s exceeded")
        return caller, body

    def decode(body: bytes, expected: type[_M]) -> _M:
        message = codec.decode(body, codec.VALIDATOR_REQUEST, max_bytes=max_body)
        if not isinstance(message, expected):
            wanted = expected.model_fields["type"].default
            raise MalformedMessage(f"expected a {wanted} body, got {message.type}")
        return message

    # ------------------------------------------------------------------ routes

    @app.get("/health")
    async def health(request: Request) -> Response:
        async def run() -> Message:
            client = request.client.host if request.client else "unknown"
            if not health_buckets.take(f"ip:{client}"):
                raise RateLimited("health rate limit exceeded")
            connected = workers.connected()
            return HealthResponse(
                status="ok" if connected > 0 else "degraded",
                miner_hotkey=miner_hotkey,
                version=version,
                workers_connected=min(connected, 4096),
                uptime_s=max(0.0, clock() - started),
            )

        return await guarded(request, run)

    @app.get("/inventory")
    async def inventory(request: Request) -> Response:
        async def run() -> Message:
            await authenticated(request)
            return InventoryResponse(miner_hotkey=miner_hotkey, workers=workers.summaries())

        return await guarded(request, run)

    @app.post("/challenge")
    async def challenge(request: Request) -> Response:
        async def run() -> Message:
            caller, body = await authenticated(request)
            req = decode(body, ChallengeRequest)
            if leases.leased(req.worker_pubkey):
                raise PeerUnavailable(leased=True)
            dispatch = ChallengeDispatch(
                challenge_id=req.challenge_id,
                seed=req.seed,
                params=req.params,
                gpu_uuids=req.gpu_uuids,
                deadline_ms=req.deadline_ms,
            )
            commit = await workers.challenge(
                req.worker_pubkey_bytes,
                dispatch,
                timeout=req.deadline_ms / 1000.0 + CHALLENGE_SLACK_S,
            )
            if commit.challenge_id != req.challenge_id:
                raise MalformedMessage("the worker committed to a different challenge")
            payload = evidence_payload(
                challenge_id=req.challenge_id,
                validator_hotkey=caller,
                miner_hotkey=miner_hotkey,
                worker_pubkey=req.worker_pubkey_bytes,
                seed=req.seed,
                params=req.params,
                gpus=commit.gpus,
            )
            return ChallengeResponse(
                challenge_id=req.challenge_id,
                miner_hotkey=miner_hotkey,
                worker_pubkey=req.worker_pubkey,
                gpus=commit.gpus,
                miner_signature=bytes(signer(payload)),
            )

        return await guarded(request, run)

    @app.post("/reveal")
    async def reveal(request: Request) -> Response:
        async def run() -> Message:
            _, body = await authenticated(request)
            req = decode(body, OpeningsRequest)
            answer = await workers.reveal(
                _worker_key(req.worker_pubkey),
                RevealRequest(challenge_id=req.challenge_id, openings=req.openings),
                timeout=request_timeout,
            )
            if answer.challenge_id != req.challenge_id:
                raise MalformedMessage("the worker revealed a different challenge")
            return OpeningsResponse(challenge_id=req.challenge_id, openings=answer.openings)

        return await guarded(request, run)

    @app.post("/lease/start")
    async def lease_start(request: Request) -> Response:
        async def run() -> Message:
            caller, body = await authenticated(request)
            req = decode(body, LeaseStartRequest)
            existing = leases.get(req.lease_id)
            if existing is not None and existing.state != "ended":
                same = (
                    existing.owner == caller
                    and existing.worker_pubkey == req.worker_pubkey
                    and existing.gpu_uuids == list(req.gpu_uuids)
                )
                if not same:
                    raise Forbidden(f"lease {req.lease_id} already exists")
                if existing.state == "active":  # an idempotent retry
                    return LeaseStartResponse(lease_id=req.lease_id, accepted=True)
            if req.ends_at <= clock():
                return LeaseStartResponse(
                    lease_id=req.lease_id, accepted=False, reason="ends_at is in the past"
                )
            record = LeaseRecord(
                lease_id=req.lease_id,
                owner=caller,
                worker_pubkey=req.worker_pubkey,
                gpu_uuids=list(req.gpu_uuids),
                ends_at=req.ends_at,
                state="starting",
                updated=clock(),
            )
            leases.put(record)
            try:
                ack = await workers.lease_start(
                    _worker_key(req.worker_pubkey),
                    LeaseStart(lease_id=req.lease_id, gpu_uuids=req.gpu_uuids, ends_at=req.ends_at),
                    timeout=request_timeout,
                )
            except BaseException:
                leases.discard(req.lease_id)
                raise
            if ack.accepted:
                record.state = "active"
                record.updated = clock()
            else:
                leases.discard(req.lease_id)
            return LeaseStartResponse(
                lease_id=req.lease_id, accepted=ack.accepted, reason=ack.reason
            )

        return await guarded(request, run)

    @app.post("/lease/stop")
    async def lease_stop(request: Request) -> Response:
        async def run() -> Message:
            caller, body = await authenticated(request)
            req = decode(body, LeaseStopRequest)
            record = leases.get(req.lease_id)
            if record is None:
                return LeaseStopResponse(
                    lease_id=req.lease_id, stopped=False, reason="unknown lease"
                )
            if record.owner != caller:
                raise Forbidden(f"lease {req.lease_id} belongs to another validator")
            if record.state == "ended":
                return LeaseStopResponse(
                    lease_id=req.lease_id, stopped=True, reason="already ended"
                )
            ack = await workers.lease_stop(
                _worker_key(record.worker_pubkey),
                LeaseStop(lease_id=req.lease_id, reason=req.reason),
                timeout=request_timeout,
            )
            if ack.accepted:
                record.state = "ended"
                record.updated = clock()
            return LeaseStopResponse(lease_id=req.lease_id, stopped=ack.accepted, reason=ack.reason)

        return await guarded(request, run)

    @app.post("/lease/status")
    async def lease_status(request: Request) -> Response:
        async def run() -> Message:
            _, body = await authenticated(request)
            req = decode(body, LeaseStatusRequest)
            record = leases.get(req.lease_id)
            if record is None:
                return LeaseStatusResponse(lease_id=req.lease_id, state="unknown")
            return LeaseStatusResponse(
                lease_id=req.lease_id,
                state=record.state,
                worker_pubkey=record.worker_pubkey,
                gpu_uuids=record.gpu_uuids,
                ends_at=record.ends_at,
            )

        return await guarded(request, run)

    app.state.leases = leases
    app.state.rate_buckets = buckets
    return app


__all__ = ["CHALLENGE_SLACK_S", "CONTENT_TYPE", "LeaseTable", "TokenBuckets", "create_app"]
