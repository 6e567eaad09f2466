"""Reading a miner's ``POST /epoch`` record stream (:meth:`MinerClient.epoch`).

One :class:`EpochArrival` per challenge, timed by the validator's clock as each record is
completely received; every failure is the arrival's ``result``, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from byteleap.errors import (
    ByteLeapError,
    LinkError,
    MalformedMessage,
    MessageTooLarge,
    PeerTimeout,
    TransientError,
)
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
)
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.stream import RecordReader
from neurons.common.miner_errors import error_for, error_from_api, transport_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EpochArrival:
    """One challenge of an epoch, as it came back (``MinerClient.epoch``).

    ``result`` is the checked, countersigned commit, or the typed error that stands for the
    challenge's failure (the miner's ``EpochFailure``, a bad signature, the stream's failure).
    ``at`` is the validator's ``clock()`` when the record was completely received (or when the
    failure was found); compare it with the clock read at dispatch.
    """

    challenge_id: str
    result: ChallengeResponse | ByteLeapError
    at: float


async def chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive (all at once from a transport that hands over a read
    body)."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


async def read_body(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body, refused with ``MessageTooLarge`` over ``max_bytes``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise MessageTooLarge(int(declared), max_bytes)
    parts: list[bytes] = []
    received = 0
    async for chunk in chunks(response):
        received += len(chunk)
        if received > max_bytes:
            raise MessageTooLarge(received, max_bytes)
        parts.append(chunk)
    return b"".join(parts)


async def receive_epoch(
    http: httpx.AsyncClient,
    max_bytes: int,
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
            await _read_epoch(http, max_bytes, request, http_request, clock, unanswered, settle)
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
    http: httpx.AsyncClient,
    max_bytes: int,
    request: EpochRequest,
    http_request: httpx.Request,
    clock: Callable[[], float],
    unanswered: dict[str, ChallengeRequest],
    settle: Callable[[str, ChallengeResponse | ByteLeapError, float], None],
) -> None:
    try:
        response = await http.send(http_request, stream=True)
        try:
            if not 200 <= response.status_code < 300:
                raw = await read_body(response, max_bytes)
                raise error_for(response.status_code, raw, max_bytes)
            records = RecordReader(max_bytes, len(request.challenges))
            async for chunk in chunks(response):
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
        raise transport_error(exc) from None
    if unanswered:
        raise MalformedMessage(
            f"the miner's stream ended with {len(unanswered)} challenges unanswered"
        )


__all__ = ["EpochArrival", "chunks", "read_body", "receive_epoch"]
