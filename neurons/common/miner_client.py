"""The validator's HTTP client of a miner's validator API (docs/protocol-http.md).

Every request is signed with the validator's hotkey (``btauth/1``, receiver-bound to the miner's
hotkey, a fresh nonce per attempt). Every failure is a typed ``ByteLeapError``, so the validator
scores it by class (SPEC 3):

* the miner's ``ApiError`` body -> the error class of its ``code`` (``timeout`` -> ``PeerTimeout``,
  ``unavailable`` -> ``PeerUnavailable``, ``link`` -> ``LinkError``, ...);
* connection refused / reset / closed, a connect timeout, a proxy's non-frame 502/503 ->
  ``LinkError`` (excused, never scored against the miner);
* the miner accepted the request but did not answer within ``timeout`` -> ``PeerTimeout``;
* an answer that is not a valid frame of the expected type -> ``MalformedMessage``; one larger
  than ``max_response_bytes`` -> ``MessageTooLarge``;
* a ``ChallengeResponse`` whose miner signature does not verify ->
  ``VerificationFailed(BAD_SIGNATURE)``; so does a countersigned receipt whose miner signature
  does not verify.

Everything for the worker of a lease (lease start and stop, job requests) can go through one
``forward(worker_pubkey, message)``: the worker-link message travels unchanged in a
``ForwardRequest`` and the worker's answer comes back; a refusal (unknown lease, lease ended,
no such job, ...) is a ``JobRefused`` or ``LeaseAck(accepted=False)`` answer, not an exception.
The older per-message methods (``lease_start``, ``job_*``) remain until every validator call
site uses ``forward`` (docs/design-changes.md).

``epoch`` sends every challenge of an epoch in one request and yields one :class:`EpochArrival`
per challenge as the miner's record stream delivers it, timed by the validator's clock; there a
failure is the arrival's ``result`` (by the same rules), never an exception.

Note: the codes a miner answers with are its own claims. A dishonest miner can answer
``unavailable`` or ``link`` instead of letting a challenge time out; the validator should watch
how often a miner is excused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
from bittensor import http_auth, resolve_signer, sp_core

from byteleap.errors import (
    AuthError,
    ByteLeapError,
    ChainError,
    Forbidden,
    FraudReason,
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
    VerificationFailed,
    WorkerFailure,
)
from byteleap.leases.receipts import Receipt, SignedReceipt, signing_payload
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.stream import STREAM_CONTENT_TYPE, RecordReader
from byteleap.protocol.validator_api import (
    FORWARD_ANSWERS,
    MAX_RECEIPTS_PAGE,
    ApiError,
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
    ForwardedAnswer,
    ForwardedMessage,
    ForwardRequest,
    ForwardResponse,
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
)
from byteleap.protocol.worker_link import (
    MAX_ARTIFACT_CHUNK,
    ArtifactInfo,
    JobAccepted,
    JobRefused,
    JobResult,
    JobStatus,
    LeaseAck,
    LeaseStart,
    LeaseStop,
)

#: media type of request and response bodies
CONTENT_TYPE = "application/x-byteleap-frame"
#: seconds a challenge request may take beyond its own deadline (the miner's slack plus the link)
CHALLENGE_GRACE_S = 5.0

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Message)
#: the job requests: each names its lease and its job
_JobRequest = (
    JobSubmitRequest
    | JobStatusRequest
    | JobCancelRequest
    | JobLogsRequest
    | JobResultRequest
    | JobArtifactRequest
)

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


def _error_without_body(status: int) -> ByteLeapError:
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


@dataclass(frozen=True, slots=True)
class EpochArrival:
    """One challenge of an epoch, as it came back (:meth:`MinerClient.epoch`).

    ``result`` is the checked, countersigned commit, or the typed error that stands for the
    challenge's failure (the miner's ``EpochFailure``, a bad signature, the stream's failure).
    ``at`` is the validator's ``clock()`` when the record was completely received (or when the
    failure was found); compare it with the clock read at dispatch.
    """

    challenge_id: str
    result: ChallengeResponse | ByteLeapError
    at: float


class MinerClient:
    """A signed client of one miner's validator API. Use as ``async with MinerClient(...)``.

    ``wallet_or_signer`` is anything ``bittensor.http_auth.sign`` accepts (a ``bt.Wallet``, a
    ``Keypair``); its hotkey is the validator's identity. ``base_url`` is the miner's endpoint
    (``Endpoint.url()``), optionally with a path prefix. ``timeout`` bounds every request except
    ``challenge``, which waits ``deadline_ms`` plus :data:`CHALLENGE_GRACE_S` when that is longer.
    """

    def __init__(
        self,
        wallet_or_signer: Any,
        miner_hotkey: str,
        base_url: str,
        *,
        timeout: float = 30.0,
        max_response_bytes: int = codec.VALIDATOR_API_MAX_BYTES,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._signer = resolve_signer(wallet_or_signer, role="hotkey")
        self.validator_hotkey: str = self._signer.ss58_address
        self.miner_hotkey = miner_hotkey
        self.base_url = httpx.URL(base_url.rstrip("/"))
        self.timeout = float(timeout)
        self.connect_timeout = min(float(connect_timeout), self.timeout)
        self.max_response_bytes = int(max_response_bytes)
        self._http = httpx.AsyncClient(transport=transport, follow_redirects=False)

    async def __aenter__(self) -> MinerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ endpoints

    async def health(self) -> HealthResponse:
        """``GET /health`` (public; still signed, which costs nothing and is ignored)."""
        return await self._call("GET", "/health", None, HealthResponse)

    async def inventory(self) -> InventoryResponse:
        return await self._call("GET", "/inventory", None, InventoryResponse)

    async def challenge(self, request: ChallengeRequest) -> ChallengeResponse:
        """Dispatch a challenge; the answer's miner signature is verified before it is returned."""
        timeout = max(self.timeout, request.deadline_ms / 1000.0 + CHALLENGE_GRACE_S)
        response = await self._call(
            "POST", "/challenge", request, ChallengeResponse, wait_s=timeout
        )
        self.check_challenge_response(request, response)
        return response

    def prepare_epoch(self, request: EpochRequest, *, wait_s: float) -> httpx.Request:
        """The ``POST /epoch`` request, encoded and signed, ready for :meth:`epoch`.

        An epoch's deadlines run from its first dispatch, so the validator builds and signs
        every miner's request first and only then starts the clock and sends them all; the
        signature's freshness window is far longer than that gap."""
        return self._build_request(
            "POST", "/epoch", request, wait_s=wait_s, accept=STREAM_CONTENT_TYPE
        )

    async def epoch(
        self,
        request: EpochRequest,
        *,
        wait_s: float,
        clock: Callable[[], float] = time.monotonic,
        prepared: httpx.Request | None = None,
    ) -> AsyncIterator[EpochArrival]:
        """Send every challenge of an epoch in one ``POST /epoch``; yield one
        :class:`EpochArrival` per challenge, in the order the miner's records arrive.

        The request is sent when iteration starts; the stream is read by a task of its own, so
        ``at`` is not delayed by the caller. Every challenge is yielded exactly once, and failures
        are results, never exceptions:

        * an ``EpochFailure`` record -> the error of its code (as for ``POST /challenge``);
        * a commit that fails :meth:`check_challenge_response` -> that error, for it alone;
        * a non-2xx answer -> its error, for every challenge;
        * a record for an unknown or already answered challenge, a malformed record, or a stream
          that ends early -> ``MalformedMessage``; a record over ``max_response_bytes`` ->
          ``MessageTooLarge``; a failed connection -> ``LinkError``; ``wait_s`` elapsed since the
          start -> ``PeerTimeout``: for every challenge not yet answered (one shared error).

        Closing the iterator early, or cancelling the caller, stops reading and closes the
        connection (the miner then cancels the outstanding challenges). ``prepared`` is the
        request from :meth:`prepare_epoch`, when the caller built it ahead of time.
        """
        asked = {challenge.challenge_id: challenge for challenge in request.challenges}
        arrivals: asyncio.Queue[EpochArrival] = asyncio.Queue()
        http_request = prepared or self.prepare_epoch(request, wait_s=wait_s)
        reader = asyncio.create_task(
            self._receive_epoch(request, http_request, wait_s, clock, arrivals.put_nowait),
            name=f"epoch {request.epoch_id} from {self.miner_hotkey}",
        )
        try:
            for _ in asked:
                arrival = await arrivals.get()
                if isinstance(arrival.result, ChallengeResponse):
                    try:
                        self.check_challenge_response(asked[arrival.challenge_id], arrival.result)
                    except ByteLeapError as exc:
                        arrival = replace(arrival, result=exc)
                yield arrival
        finally:
            reader.cancel()
            await asyncio.wait([reader])

    async def _receive_epoch(
        self,
        request: EpochRequest,
        http_request: httpx.Request,
        wait_s: float,
        clock: Callable[[], float],
        emit: Callable[[EpochArrival], None],
    ) -> None:
        """Read the record stream; ``emit`` exactly one arrival per challenge of ``request``."""
        unanswered = {challenge.challenge_id: challenge for challenge in request.challenges}

        def settle(challenge_id: str, result: ChallengeResponse | ByteLeapError, at: float) -> None:
            del unanswered[challenge_id]
            emit(EpochArrival(challenge_id, result, at))

        failure: ByteLeapError = LinkError("the epoch stream ended")
        try:
            async with asyncio.timeout(wait_s):
                await self._read_epoch(request, http_request, clock, unanswered, settle)
        except TimeoutError:
            failure = PeerTimeout(
                f"the miner did not answer {len(unanswered)} challenges within {wait_s:g} s"
            )
        except ByteLeapError as exc:
            failure = exc
        except Exception as exc:
            log.exception("reading epoch %s failed", request.epoch_id)
            failure = TransientError(f"reading the epoch stream failed: {type(exc).__name__}")
        at = clock()
        for challenge_id in list(unanswered):
            settle(challenge_id, failure, at)

    async def _read_epoch(
        self,
        request: EpochRequest,
        http_request: httpx.Request,
        clock: Callable[[], float],
        unanswered: dict[str, ChallengeRequest],
        settle: Callable[[str, ChallengeResponse | ByteLeapError, float], None],
    ) -> None:
        try:
            response = await self._http.send(http_request, stream=True)
            try:
                if not 200 <= response.status_code < 300:
                    raw = await self._read_body(response)
                    raise self._error_for(response.status_code, raw)
                records = RecordReader(self.max_response_bytes, len(request.challenges))
                async for chunk in _chunks(response):
                    at = clock()
                    for record in records.feed(chunk):
                        if record.challenge_id not in unanswered:
                            raise MalformedMessage(
                                "a record for an unknown or already answered challenge"
                            )
                        result: ChallengeResponse | ByteLeapError
                        if isinstance(record, EpochFailure):
                            error = ApiError(code=record.code, message=record.message)
                            result = error_from_api(error, None)
                        else:
                            result = record
                        settle(record.challenge_id, result, at)
                    if records.error is not None:
                        raise records.error
                records.finish()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None
        if unanswered:
            raise MalformedMessage(
                f"the miner's stream ended with {len(unanswered)} challenges unanswered"
            )

    async def reveal(self, request: OpeningsRequest) -> OpeningsResponse:
        response = await self._call("POST", "/reveal", request, OpeningsResponse)
        if response.challenge_id != request.challenge_id:
            raise MalformedMessage("the miner revealed a different challenge")
        return response

    async def lease_start(self, request: LeaseStartRequest) -> LeaseStartResponse:
        return await self._call("POST", "/lease/start", request, LeaseStartResponse)

    async def lease_stop(self, request: LeaseStopRequest) -> LeaseStopResponse:
        return await self._call("POST", "/lease/stop", request, LeaseStopResponse)

    async def lease_status(self, request: LeaseStatusRequest) -> LeaseStatusResponse:
        return await self._call("POST", "/lease/status", request, LeaseStatusResponse)

    # ------------------------------------------------------------------ forwarding

    async def forward(self, worker_pubkey: str, message: ForwardedMessage) -> ForwardedAnswer:
        """Relay ``message`` (a lease start or stop, a job request) to the worker of one of this
        validator's leases (``POST /forward``) and return the worker's answer.

        The answer is checked to be one that ``message`` may get (``FORWARD_ANSWERS``, or
        ``JobRefused`` for a job request) about the same lease, job and ``request_id``; a
        refusal is an answer, not an exception."""
        request = ForwardRequest(
            worker_pubkey=worker_pubkey, lease_id=message.lease_id, message=message
        )
        response = await self._call("POST", "/forward", request, ForwardResponse)
        if response.worker_pubkey != worker_pubkey or response.lease_id != message.lease_id:
            raise MalformedMessage("the miner answered for another worker or lease")
        _check_forwarded(message, response.message)
        return response.message

    # ------------------------------------------------------------------ jobs (old routes)

    async def job_submit(self, request: JobSubmitRequest) -> JobSubmitResponse:
        """Run a job on a lease this validator started (``response.accepted`` or ``refusal``)."""
        return await self._job_call("/lease/job/submit", request, JobSubmitResponse)

    async def job_status(self, request: JobStatusRequest) -> JobStatusResponse:
        return await self._job_call("/lease/job/status", request, JobStatusResponse)

    async def job_cancel(self, request: JobCancelRequest) -> JobCancelResponse:
        return await self._job_call("/lease/job/cancel", request, JobCancelResponse)

    async def job_logs(self, request: JobLogsRequest) -> JobLogsResponse:
        return await self._job_call("/lease/job/logs", request, JobLogsResponse)

    async def job_result(self, request: JobResultRequest) -> JobResultResponse:
        return await self._job_call("/lease/job/result", request, JobResultResponse)

    async def job_artifact(self, request: JobArtifactRequest) -> JobArtifactResponse:
        return await self._job_call("/lease/job/artifact", request, JobArtifactResponse)

    async def _job_call(self, path: str, request: _JobRequest, expected: type[_M]) -> _M:
        """``POST path`` and check the answer is about the job that was asked about."""
        response = await self._call("POST", path, request, expected)
        _check_job_answer(request.lease_id, request.job_id, response)
        return response

    async def fetch_artifact(
        self,
        lease_id: str,
        job_id: str,
        artifact: ArtifactInfo,
        *,
        chunk_bytes: int = MAX_ARTIFACT_CHUNK,
    ) -> bytes:
        """A whole artifact, chunk by chunk, checked against its listed size and SHA-256.

        Raises ``MalformedMessage`` when the bytes do not match the listing (or the job refuses).
        Hold the result in memory only for artifacts of a sensible size; fetch large ones with
        ``job_artifact`` into a file instead.
        """
        parts: list[bytes] = []
        offset = 0
        while offset < artifact.size or not parts:
            answer = await self.job_artifact(
                JobArtifactRequest(
                    lease_id=lease_id,
                    job_id=job_id,
                    name=artifact.name,
                    offset=offset,
                    limit=chunk_bytes,
                )
            )
            if answer.refusal is not None:
                raise MalformedMessage(
                    f"artifact {artifact.name}: {answer.refusal} {answer.reason}"
                )
            if answer.offset != offset or (not answer.data and offset < artifact.size):
                raise MalformedMessage(f"artifact {artifact.name}: no progress at byte {offset}")
            parts.append(answer.data)
            offset += len(answer.data)
            if answer.eof:
                break
        data = b"".join(parts)
        if len(data) != artifact.size or hashlib.sha256(data).digest() != artifact.sha256:
            raise MalformedMessage(f"artifact {artifact.name} does not match its SHA-256")
        return data

    # ------------------------------------------------------------------ receipts

    async def submit_receipt(self, receipt: Receipt) -> ReceiptSubmitResponse:
        """Sign ``receipt`` with this validator's hotkey, have the miner countersign and store
        it, and check the miner's signature before returning it."""
        if receipt.validator_hotkey != self.validator_hotkey:
            raise ValueError("the receipt names another validator hotkey than this client's")
        payload = signing_payload(receipt)
        request = ReceiptSubmitRequest(
            receipt=receipt, validator_signature=bytes(self._signer.sign(payload))
        )
        response = await self._call("POST", "/lease/receipt", request, ReceiptSubmitResponse)
        self.check_countersigned(receipt, response.signed)
        return response

    def check_countersigned(self, receipt: Receipt, signed: SignedReceipt) -> None:
        """Raise unless ``signed`` is ``receipt`` countersigned by this client's miner."""
        if signed.receipt != receipt:
            raise MalformedMessage("the miner countersigned another receipt than the one sent")
        if not verify_hotkey_signature(
            self.miner_hotkey, signing_payload(receipt), signed.miner_signature
        ):
            raise VerificationFailed(
                FraudReason.BAD_SIGNATURE, "the miner's receipt signature does not verify"
            )

    async def receipts(self, *, after: int = 0, limit: int = 100) -> ReceiptPage:
        """One page of the receipts the miner stored (any validator's), oldest first.

        Signatures are *not* checked here: check each with
        ``byteleap.leases.receipts.verify_signatures`` and the hotkeys against the metagraph.
        """
        if not (after >= 0 and 1 <= limit <= MAX_RECEIPTS_PAGE):
            raise ValueError(f"after must be >= 0 and limit in 1..{MAX_RECEIPTS_PAGE}")
        page = await self._call("GET", f"/receipts?after={after}&limit={limit}", None, ReceiptPage)
        if page.miner_hotkey != self.miner_hotkey:
            raise MalformedMessage("the receipt page names a different miner hotkey")
        if page.cursors and page.cursors[0] <= after:
            raise MalformedMessage("the receipt page starts at or before the cursor asked for")
        if len(page.receipts) > limit:
            raise MalformedMessage("the receipt page is longer than asked for")
        return page

    # ------------------------------------------------------------------ verification

    def check_challenge_response(
        self, request: ChallengeRequest, response: ChallengeResponse
    ) -> None:
        """Raise unless ``response`` answers ``request`` and carries the miner's signature."""
        if response.challenge_id != request.challenge_id:
            raise MalformedMessage("the miner answered a different challenge")
        if response.worker_pubkey != request.worker_pubkey:
            raise MalformedMessage("the miner answered for a different worker")
        if response.miner_hotkey != self.miner_hotkey:
            raise MalformedMessage("the response names a different miner hotkey")
        payload = response.payload(
            validator_hotkey=self.validator_hotkey, seed=request.seed, params=request.params
        )
        if not verify_hotkey_signature(self.miner_hotkey, payload, response.miner_signature):
            raise VerificationFailed(
                FraudReason.BAD_SIGNATURE, "miner_signature does not verify against the miner"
            )

    # ------------------------------------------------------------------ transport

    def _build_request(
        self,
        method: str,
        path: str,
        body_message: Message | None,
        *,
        wait_s: float | None = None,
        accept: str = CONTENT_TYPE,
    ) -> httpx.Request:
        """The request, signed with ``btauth/1`` (a fresh nonce) for this client's miner."""
        body = b"" if body_message is None else codec.encode(body_message)
        url = self.base_url.join(self.base_url.path.rstrip("/") + path)
        target = url.raw_path.decode("ascii")  # path plus ?query, exactly as sent
        headers = http_auth.sign(
            self._signer, method=method, path=target, body=body, receiver_ss58=self.miner_hotkey
        )
        if body_message is not None:
            headers["Content-Type"] = CONTENT_TYPE
        headers["Accept"] = accept
        headers["Accept-Encoding"] = "identity"  # the size cap applies to the bytes received
        limit = self.timeout if wait_s is None else wait_s
        return self._http.build_request(
            method,
            url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(limit, connect=self.connect_timeout),
        )

    async def _call(
        self,
        method: str,
        path: str,
        body_message: Message | None,
        expected: type[_M],
        *,
        wait_s: float | None = None,
    ) -> _M:
        request = self._build_request(method, path, body_message, wait_s=wait_s)
        status, raw = await self._send(request)
        if not 200 <= status < 300:
            raise self._error_for(status, raw)
        message = codec.decode(raw, codec.MINER_RESPONSE, max_bytes=self.max_response_bytes)
        if not isinstance(message, expected):
            raise MalformedMessage(
                f"expected {expected.model_fields['type'].default}, got {message.type}"
            )
        return message

    def _error_for(self, status: int, raw: bytes) -> ByteLeapError:
        """The error a non-2xx answer with body ``raw`` stands for."""
        try:
            error = codec.decode(raw, codec.MINER_RESPONSE, max_bytes=self.max_response_bytes)
        except ProtocolError:
            return _error_without_body(status)
        if not isinstance(error, ApiError):
            return _error_without_body(status)
        return error_from_api(error, status)

    async def _send(self, request: httpx.Request) -> tuple[int, bytes]:
        try:
            response = await self._http.send(request, stream=True)
            try:
                return response.status_code, await self._read_body(response)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from None

    async def _read_body(self, response: httpx.Response) -> bytes:
        """The whole body, refused with ``MessageTooLarge`` over ``max_response_bytes``."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise MessageTooLarge(int(declared), self.max_response_bytes)
        chunks: list[bytes] = []
        received = 0
        async for chunk in _chunks(response):
            received += len(chunk)
            if received > self.max_response_bytes:
                raise MessageTooLarge(received, self.max_response_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive (all at once from a transport that hands over a read
    body)."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


def _transport_error(exc: httpx.HTTPError) -> ByteLeapError:
    """The typed error of a failure of the validator's own connection to the miner."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return LinkError(f"cannot reach the miner: {type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return PeerTimeout(f"the miner did not answer in time ({type(exc).__name__})")
    # connect refused, reset, closed, protocol violations of the connection
    return LinkError(f"link to the miner failed: {type(exc).__name__}: {exc}")


def _check_job_answer(lease_id: str, job_id: str, answer: Message) -> None:
    if (getattr(answer, "lease_id", None), getattr(answer, "job_id", None)) != (lease_id, job_id):
        raise MalformedMessage("the miner answered about another job")


def _check_forwarded(message: ForwardedMessage, answer: ForwardedAnswer) -> None:
    """Raise unless ``answer`` is one the worker may give to ``message``, about the same thing."""
    allowed: tuple[type[Message], ...] = (FORWARD_ANSWERS[type(message)],)
    if isinstance(message, LeaseStart | LeaseStop):
        if not isinstance(answer, LeaseAck) or answer.lease_id != message.lease_id:
            raise MalformedMessage(f"the miner answered {answer.type} to {message.type}")
        return
    allowed += (JobRefused,)
    if not isinstance(answer, allowed) or isinstance(answer, LeaseAck):
        raise MalformedMessage(f"the miner answered {answer.type} to {message.type}")
    if isinstance(answer, JobAccepted | JobStatus | JobResult):
        job_id = answer.job.job_id
    else:
        job_id = answer.job_id
    if (answer.request_id, answer.lease_id, job_id) != (
        message.request_id,
        message.lease_id,
        message.job_id,
    ):
        raise MalformedMessage("the miner answered about another job")


def verify_hotkey_signature(ss58_address: str, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the sr25519 signature of ``message`` by ``ss58_address``."""
    try:
        return bool(sp_core.verify(message, signature, ss58_address, sp_core.CRYPTO_SR25519))
    except ValueError:
        return False


__all__ = [
    "CHALLENGE_GRACE_S",
    "CONTENT_TYPE",
    "EpochArrival",
    "MinerClient",
    "error_from_api",
    "verify_hotkey_signature",
]
