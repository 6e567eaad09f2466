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

Leases (``/lease/*``) are kept in a :class:`~neurons.miner.leases.LeaseTable`, written through
to the miner's SQLite store when one is given; job requests (``/lease/job/*``) are routed to the
worker holding the lease, for the validator that started it only; ``/lease/receipt``
countersigns usage receipts and ``/receipts`` pages through them (docs/leases-and-receipts.md).

Bodies are codec frames (:data:`CONTENT_TYPE`) both ways; every non-2xx answer is an ``ApiError``
frame with ``http_status_for(exc)`` as its status. Nothing unexpected escapes as a bare 500: a
bug is answered with ``ApiError(code="internal")`` and logged here.

``POST /epoch`` takes every challenge of an epoch at once and answers 200 with a record stream
(``byteleap.protocol.stream``): one record per challenge, written as soon as that challenge is
done, first finished first sent. A challenge runs through the same code as ``POST /challenge``
(:func:`create_app`'s ``countersigned_commit``); its failure becomes its ``EpochFailure`` record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from byteleap.config.miner import MinerApiSection
from byteleap.errors import (
    ByteLeapError,
    Forbidden,
    MalformedMessage,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    RateLimited,
)
from byteleap.leases.receipts import DEFAULT_SKEW_S, Verifier, check_receipt, signing_payload
from byteleap.protocol import codec
from byteleap.protocol.common import MAX_TEXT, Message
from byteleap.protocol.stream import (
    STREAM_CONTENT_TYPE,
    EpochRecord,
    encode_record,
    epoch_failure_for,
)
from byteleap.protocol.validator_api import (
    MAX_RECEIPTS_PAGE,
    ApiError,
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
    HealthResponse,
    InventoryResponse,
    JobArtifactRequest,
    JobArtifactResponse,
    JobCancelRequest,
    JobCancelResponse,
    JobLogsRequest,
    JobLogsResponse,
    JobResultRequest,
    JobResultResponse,
    JobStatusRequest,
    JobStatusResponse,
    JobSubmitRequest,
    JobSubmitResponse,
    LeaseStartRequest,
    LeaseStartResponse,
    LeaseStatusRequest,
    LeaseStatusResponse,
    LeaseStopRequest,
    LeaseStopResponse,
    OpeningsRequest,
    OpeningsResponse,
    ReceiptPage,
    ReceiptSubmitRequest,
    ReceiptSubmitResponse,
    evidence_payload,
    http_status_for,
)
from byteleap.protocol.worker_link import (
    ArtifactChunk,
    ArtifactQuery,
    ChallengeDispatch,
    JobAccepted,
    JobCancel,
    JobLogs,
    JobLogsQuery,
    JobRefusal,
    JobRefused,
    JobReply,
    JobRequest,
    JobResult,
    JobResultQuery,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
    LeaseStart,
    LeaseStop,
    RevealRequest,
)
from neurons.common.miner_client import verify_hotkey_signature
from neurons.miner.auth import ValidatorGate
from neurons.miner.leases import LEASE_RETENTION_S, LeaseRecord, LeaseTable
from neurons.miner.ports import WorkerDirectory
from neurons.miner.store import MinerStore

log = logging.getLogger(__name__)

#: media type of every request and response body: one ByteLeap codec frame
CONTENT_TYPE = "application/x-byteleap-frame"
#: seconds the miner waits for a commit beyond the challenge's own deadline (link latency)
CHALLENGE_SLACK_S = 0.5
#: receipts are kept this long by default (at least the validators' 7-day lease window)
RECEIPT_RETENTION_S = 30 * 24 * 3600.0
#: how often old leases and receipts are pruned from the store, at most
PRUNE_EVERY_S = 3600.0
#: receipts per ``GET /receipts`` page when the caller does not say
DEFAULT_RECEIPTS_PAGE = 100

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


def challenge_timeout(req: ChallengeRequest) -> float:
    """How long the miner waits for a challenge's commit: its deadline plus the link's slack."""
    return req.deadline_ms / 1000.0 + CHALLENGE_SLACK_S


class _RecordStream(StreamingResponse):
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
    store: MinerStore | None = None,
    netuid: int | None = None,
    verify_signature: Verifier = verify_hotkey_signature,
    receipt_skew_s: int = DEFAULT_SKEW_S,
    receipt_retention_s: float = RECEIPT_RETENTION_S,
) -> FastAPI:
    """The validator API of one miner.

    ``signer`` signs bytes with the miner's hotkey (``wallet.hotkey.sign``). ``config`` is the
    ``api`` section (:class:`byteleap.config.miner.MinerApiSection`); only ``max_body_bytes`` and
    ``request_timeout_s`` are read. ``clock`` is unix time (lease ends, uptime, rate buckets).
    ``rate_*`` is the per-validator token bucket of the authenticated routes; ``health_*`` the
    per-client-IP bucket of the public ``/health``.

    ``store`` keeps leases and countersigned receipts on disk; its leases are loaded now. Without
    one, both live in memory only (an in-memory store is made for the receipts). ``netuid``, when
    given, is the only subnet whose receipts are countersigned. ``verify_signature`` checks a
    validator's sr25519 signature on a receipt; ``receipt_skew_s`` is the clock difference
    tolerated in receipt periods; receipts are kept ``receipt_retention_s``.
    """
    max_body = int(config.max_body_bytes)
    request_timeout = float(config.request_timeout_s)
    started = clock()
    buckets = TokenBuckets(rate_per_second, rate_burst, clock)
    health_buckets = TokenBuckets(health_rate_per_second, health_burst, clock)
    durable = store is not None
    leases = LeaseTable(clock, store.load_leases() if store is not None else ())
    stores: dict[str, MinerStore] = {} if store is None else {"main": store}
    last_prune = [clock()]

    def receipt_store() -> MinerStore:
        if "main" not in stores:
            stores["main"] = MinerStore(None)
        return stores["main"]

    async def persist(record: LeaseRecord) -> None:
        if durable:
            await receipt_store().save_lease(record)

    async def prune_now() -> None:
        now = clock()
        if now - last_prune[0] < PRUNE_EVERY_S:
            return
        last_prune[0] = now
        await receipt_store().prune(
            leases_before=now - LEASE_RETENTION_S, receipts_before=now - receipt_retention_s
        )

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

    async def guarded(
        request: Request, handler: Callable[[], Awaitable[Message | Response]]
    ) -> Response:
        try:
            answer = await handler()
            return answer if isinstance(answer, Response) else frame_response(answer)
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

    async def countersigned_commit(caller: str, req: ChallengeRequest) -> ChallengeResponse:
        """One challenge, for ``POST /challenge`` and for each challenge of ``POST /epoch``:
        refuse a leased worker, dispatch, and countersign the worker's commit for ``caller``."""
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
            req.worker_pubkey_bytes, dispatch, timeout=challenge_timeout(req)
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

    @app.post("/challenge")
    async def challenge(request: Request) -> Response:
        async def run() -> Message:
            caller, body = await authenticated(request)
            return await countersigned_commit(caller, decode(body, ChallengeRequest))

        return await guarded(request, run)

    async def epoch_record(caller: str, req: ChallengeRequest) -> EpochRecord:
        """The record of one challenge of an epoch: its countersigned commit or its failure."""
        try:
            async with asyncio.timeout(challenge_timeout(req)):
                return await countersigned_commit(caller, req)
        except TimeoutError:
            return epoch_failure_for(
                req.challenge_id,
                PeerTimeout(f"no commit within {challenge_timeout(req):g} s"),
            )
        except ByteLeapError as exc:
            log.info("epoch challenge %s -> %s: %s", req.challenge_id, exc.code, exc.message[:200])
            return epoch_failure_for(req.challenge_id, exc)
        except Exception:
            log.exception("validator API bug on epoch challenge %s", req.challenge_id)
            return EpochFailure(
                challenge_id=req.challenge_id, code="internal", message="internal error"
            )

    async def epoch_stream(caller: str, req: EpochRequest) -> AsyncGenerator[bytes, None]:
        """Dispatch every challenge at once; yield each record as soon as it is ready."""
        tasks = [asyncio.create_task(epoch_record(caller, one)) for one in req.challenges]
        sent = failed = 0
        try:
            for next_done in asyncio.as_completed(tasks):
                record = await next_done
                sent += 1
                failed += 1 if isinstance(record, EpochFailure) else 0
                yield encode_record(record)
        finally:
            for task in tasks:
                task.cancel()  # a no-op once all are done; else the validator left mid-stream
            log.info(
                "epoch %s of %s: %d of %d records sent (%d failures)%s",
                req.epoch_id,
                caller,
                sent,
                len(tasks),
                failed,
                "" if sent == len(tasks) else ", the validator left",
            )

    @app.post("/epoch")
    async def epoch(request: Request) -> Response:
        async def run() -> Response:
            caller, body = await authenticated(request)
            req = decode(body, EpochRequest)
            return _RecordStream(epoch_stream(caller, req))

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
                record.started_at = record.updated = clock()
                await persist(record)
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
            # The owner ended the lease. The worker either stopped it or does not hold it (it
            # restarted, say): either way no job runs under it any more, so the miner ends it
            # too, rather than refusing challenges to that worker until ends_at.
            record.state = "ended"
            record.stopped_at = record.updated = clock()
            await persist(record)
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

    # ------------------------------------------------------------------ jobs

    def job_lease(
        caller: str, lease_id: str, *, submit: bool
    ) -> tuple[JobRefusal, str] | LeaseRecord:
        """The lease a job request may use, or the refusal; raises ``Forbidden`` for a lease
        another validator started."""
        record = leases.get(lease_id)
        if record is None:
            return "unknown_lease", f"this miner routed no lease {lease_id}"
        if record.owner != caller:
            raise Forbidden(f"lease {lease_id} belongs to another validator")
        if submit and record.state != "active":
            return "lease_ended", f"lease {lease_id} is {record.state}: it takes no new jobs"
        return record

    async def job_call(
        caller: str,
        lease_id: str,
        job_id: str,
        build: Callable[[str], JobRequest],
        *,
        submit: bool = False,
    ) -> JobReply | tuple[JobRefusal, str]:
        """Route one job request to the lease's worker; the worker's answer or a refusal."""
        found = job_lease(caller, lease_id, submit=submit)
        if isinstance(found, tuple):
            return found
        request_id = "r-" + os.urandom(8).hex()
        reply = await workers.job(
            _worker_key(found.worker_pubkey), build(request_id), timeout=request_timeout
        )
        if isinstance(reply, JobRefused):
            return reply.reason, reply.message
        return reply

    def unexpected(reply: object) -> MalformedMessage:  # pragma: no cover - the hub checks types
        return MalformedMessage(f"unexpected answer {type(reply).__name__} from the worker")

    def job_route(
        path: str,
        request_type: type[Any],
        query: Callable[[str, Any], JobRequest],
        answer_type: type[JobReply],
        response_type: Callable[..., Message],
        fields: Callable[[Any, Any], dict[str, Any]],
        *,
        submit: bool = False,
    ) -> None:
        """``POST path``: decode ``request_type``, route ``query`` to the lease's worker, and
        answer ``response_type`` with the worker's refusal or with ``fields(req, answer)``."""

        async def endpoint(request: Request) -> Response:
            async def run() -> Message:
                caller, body = await authenticated(request)
                req = decode(body, request_type)
                answer = await job_call(
                    caller, req.lease_id, req.job_id, lambda rid: query(rid, req), submit=submit
                )
                ids = {"lease_id": req.lease_id, "job_id": req.job_id}
                if isinstance(answer, tuple):
                    return response_type(**ids, refusal=answer[0], reason=answer[1])
                if not isinstance(answer, answer_type):
                    raise unexpected(answer)
                return response_type(**ids, **fields(req, answer))

            return await guarded(request, run)

        app.post(path, name=path.rsplit("/", 1)[-1])(endpoint)

    def artifact_fields(req: JobArtifactRequest, answer: ArtifactChunk) -> dict[str, Any]:
        if answer.artifact.name != req.name or answer.offset != req.offset:
            raise MalformedMessage("the worker answered with another part of the artifact")
        return {
            "artifact": answer.artifact,
            "offset": answer.offset,
            "data": answer.data,
            "eof": answer.eof,
        }

    job_route(
        "/lease/job/submit",
        JobSubmitRequest,
        lambda rid, req: JobSubmit(
            request_id=rid, lease_id=req.lease_id, job_id=req.job_id, spec=req.spec
        ),
        JobAccepted,
        JobSubmitResponse,
        lambda _req, answer: {"job": answer.job},
        submit=True,
    )
    job_route(
        "/lease/job/status",
        JobStatusRequest,
        lambda rid, req: JobStatusQuery(request_id=rid, lease_id=req.lease_id, job_id=req.job_id),
        JobStatus,
        JobStatusResponse,
        lambda _req, answer: {"job": answer.job},
    )
    job_route(
        "/lease/job/cancel",
        JobCancelRequest,
        lambda rid, req: JobCancel(request_id=rid, lease_id=req.lease_id, job_id=req.job_id),
        JobStatus,
        JobCancelResponse,
        lambda _req, answer: {"job": answer.job},
    )
    job_route(
        "/lease/job/logs",
        JobLogsRequest,
        lambda rid, req: JobLogsQuery(
            request_id=rid,
            lease_id=req.lease_id,
            job_id=req.job_id,
            stdout_offset=req.stdout_offset,
            stderr_offset=req.stderr_offset,
            limit=req.limit,
        ),
        JobLogs,
        JobLogsResponse,
        lambda _req, answer: {"logs": answer.logs},
    )
    job_route(
        "/lease/job/result",
        JobResultRequest,
        lambda rid, req: JobResultQuery(request_id=rid, lease_id=req.lease_id, job_id=req.job_id),
        JobResult,
        JobResultResponse,
        lambda _req, answer: {
            "job": answer.job,
            "artifacts": answer.artifacts,
            "artifacts_omitted": answer.artifacts_omitted,
        },
    )
    job_route(
        "/lease/job/artifact",
        JobArtifactRequest,
        lambda rid, req: ArtifactQuery(
            request_id=rid,
            lease_id=req.lease_id,
            job_id=req.job_id,
            name=req.name,
            offset=req.offset,
            limit=req.limit,
        ),
        ArtifactChunk,
        JobArtifactResponse,
        artifact_fields,
    )

    # ------------------------------------------------------------------ receipts

    @app.post("/lease/receipt")
    async def lease_receipt(request: Request) -> Response:
        async def run() -> Message:
            caller, body = await authenticated(request)
            req = decode(body, ReceiptSubmitRequest)
            receipt = req.receipt
            if receipt.validator_hotkey != caller:
                raise Forbidden(
                    f"the receipt names validator {receipt.validator_hotkey}, "
                    f"but {caller} signed the request"
                )
            if receipt.miner_hotkey != miner_hotkey:
                raise Forbidden(f"the receipt is for miner {receipt.miner_hotkey}, not this one")
            if netuid is not None and receipt.netuid != netuid:
                raise Forbidden(f"the receipt is for netuid {receipt.netuid}, not {netuid}")
            now = clock()
            check_receipt(receipt, now=int(now), skew_s=receipt_skew_s)
            payload = signing_payload(receipt)
            if not verify_signature(caller, payload, req.validator_signature):
                raise MalformedMessage("validator_signature is not the caller's signature of it")
            record = leases.get(receipt.lease_id)
            if record is None or record.state == "starting":
                raise Forbidden(f"this miner routed no lease {receipt.lease_id}")
            if record.owner != caller:
                raise Forbidden(f"lease {receipt.lease_id} belongs to another validator")
            if record.worker_pubkey != receipt.worker_pubkey:
                raise Forbidden("the receipt names another worker than the lease")
            if sorted(record.gpu_uuids) != receipt.gpu_uuids:
                raise Forbidden("the receipt names other GPUs than the lease")
            if receipt.period_start < record.started_at - receipt_skew_s:
                raise Forbidden("the receipt's period starts before the lease started")
            if receipt.period_end > record.billable_until + receipt_skew_s:
                raise Forbidden("the receipt's period ends after the lease ended")
            signature = bytes(signer(payload))
            signed, cursor, created = await receipt_store().add_receipt(
                receipt, req.validator_signature, signature, now=now
            )
            log.info(
                "receipt %s seq %d (%s) of lease %s for %s",
                "countersigned" if created else "already stored",
                receipt.seq,
                receipt.kind,
                receipt.lease_id,
                caller,
            )
            await prune_now()
            return ReceiptSubmitResponse(signed=signed, cursor=cursor)

        return await guarded(request, run)

    @app.get("/receipts")
    async def receipts(request: Request) -> Response:
        async def run() -> Message:
            _, body = await authenticated(request)
            if body:
                raise MalformedMessage("GET /receipts takes no body")
            after, limit = _page_query(request)
            page, more = await receipt_store().receipts_after(after, limit)
            return ReceiptPage(
                miner_hotkey=miner_hotkey,
                receipts=[signed for _, signed in page],
                cursors=[cursor for cursor, _ in page],
                next_cursor=page[-1][0] if page else after,
                more=more,
            )

        return await guarded(request, run)

    app.state.leases = leases
    app.state.rate_buckets = buckets
    app.state.receipt_store = receipt_store
    return app


def _page_query(request: Request) -> tuple[int, int]:
    """``after`` and ``limit`` of ``GET /receipts``; ``MalformedMessage`` for anything else."""
    params = request.query_params
    unknown = sorted(set(params) - {"after", "limit"})
    if unknown:
        raise MalformedMessage(f"unknown query parameter {unknown[0][:32]!r}")
    values: dict[str, int] = {}
    for name, default, low, high in (
        ("after", 0, 0, 2**63 - 1),
        ("limit", DEFAULT_RECEIPTS_PAGE, 1, MAX_RECEIPTS_PAGE),
    ):
        given = params.getlist(name)
        if len(given) > 1:
            raise MalformedMessage(f"query parameter {name} is given twice")
        text = given[0] if given else str(default)
        if not (text.isascii() and text.isdigit() and len(text) <= 19):
            raise MalformedMessage(f"{name} must be a whole number")
        values[name] = int(text)
        if not low <= values[name] <= high:
            raise MalformedMessage(f"{name} must be between {low} and {high}")
    return values["after"], values["limit"]


__all__ = [
    "CHALLENGE_SLACK_S",
    "CONTENT_TYPE",
    "DEFAULT_RECEIPTS_PAGE",
    "RECEIPT_RETENTION_S",
    "STREAM_CONTENT_TYPE",
    "LeaseRecord",
    "LeaseTable",
    "TokenBuckets",
    "create_app",
]
