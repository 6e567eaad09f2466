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

Everything for the worker of a lease (lease start and stop, job requests) goes through one
``forward(worker_pubkey, message)``: the worker-link message travels unchanged in a
``ForwardRequest`` and the worker's answer comes back; a refusal (unknown lease, lease ended,
no such job, ...) is a ``JobRefused`` or ``LeaseAck(accepted=False)`` answer, not an exception.

``epoch`` sends every challenge of an epoch in one request and yields one :class:`EpochArrival`
per challenge as the miner's record stream delivers it, timed by the validator's clock; there a
failure is the arrival's ``result`` (by the same rules), never an exception.

Note: the codes a miner answers with are its own claims. A dishonest miner can answer
``unavailable`` or ``link`` instead of letting a challenge time out; the validator should watch
how often a miner is excused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, TypeVar

import httpx
from bittensor import http_auth, resolve_signer, sp_core

from byteleap.errors import (
    ByteLeapError,
    FraudReason,
    MalformedMessage,
    VerificationFailed,
)
from byteleap.leases.receipts import Receipt, SignedReceipt, signing_payload
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.miner_api.forward import (
    FORWARD_ANSWERS,
    ForwardedAnswer,
    ForwardedMessage,
    ForwardRequest,
    ForwardResponse,
    LeaseStatusRequest,
    LeaseStatusResponse,
)
from byteleap.protocol.miner_api.inventory import HealthResponse, InventoryResponse
from byteleap.protocol.miner_api.receipts import (
    MAX_RECEIPTS_PAGE,
    ReceiptPage,
    ReceiptSubmitRequest,
    ReceiptSubmitResponse,
)
from byteleap.protocol.stream import STREAM_CONTENT_TYPE
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobRefused,
    JobResult,
    JobStatus,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from neurons.common.epoch_stream import EpochArrival, read_body, receive_epoch
from neurons.common.miner_errors import error_for, transport_error

#: media type of request and response bodies
CONTENT_TYPE = "application/x-byteleap-frame"
#: seconds a challenge request may take beyond its own deadline (the miner's slack plus the link)
CHALLENGE_GRACE_S = 5.0

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=Message)


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
            receive_epoch(
                self._http,
                self.max_response_bytes,
                request,
                http_request,
                wait_s,
                clock,
                arrivals.put_nowait,
            ),
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

    async def reveal(self, request: OpeningsRequest) -> OpeningsResponse:
        response = await self._call("POST", "/reveal", request, OpeningsResponse)
        if response.challenge_id != request.challenge_id:
            raise MalformedMessage("the miner revealed a different challenge")
        return response

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
        return error_for(status, raw, self.max_response_bytes)

    async def _send(self, request: httpx.Request) -> tuple[int, bytes]:
        try:
            response = await self._http.send(request, stream=True)
            try:
                return response.status_code, await read_body(response, self.max_response_bytes)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise transport_error(exc) from None


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
    if (
        isinstance(message, ArtifactQuery)
        and isinstance(answer, ArtifactChunk)
        and (answer.artifact.name != message.name or answer.offset != message.offset)
    ):
        raise MalformedMessage("the miner answered with another part of the artifact")


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
    "verify_hotkey_signature",
]
