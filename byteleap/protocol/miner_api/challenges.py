"""Challenge bodies of the validator -> miner HTTP API: challenge, epoch, reveal (SPEC 4).

Every request is authenticated by ``btauth/1`` at the HTTP layer; these models are only the bodies.
Bodies travel as codec frames (``application/x-byteleap-frame``) because commitments and revealed
rows are binary. The challenge sub-models (``GpuCommit``, ``OpeningRequest``, ``RowOpening``) are
the worker link's own, so the miner relays the worker's evidence without re-packing it.

The miner signs the evidence it returns (``ChallengeResponse``) with its hotkey over
:func:`evidence_payload`; that binds the worker's signed roots to the miner, the validator that
asked, and the exact challenge, so a proven fraud can be shown to anyone.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from byteleap.challenge.params import ChallengeParams
from byteleap.crypto import frame, u32le
from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    MAX_WORKERS,
    Bytes32,
    Code,
    DeadlineMs,
    GpuUuid,
    Hotkey,
    Identifier,
    Message,
    PublicKeyHex,
    Signature,
    Text,
    check_distinct_gpus,
    distinct,
)
from byteleap.protocol.worker_link.challenges import (
    GpuCommit,
    OpeningRequest,
    RowOpening,
    check_opening_requests,
    check_row_openings,
)

#: domain tag of the miner's hotkey signature over a challenge's evidence
EVIDENCE_TAG = b"byteleap/evidence/v1"

_GpuList = Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]


def _params_bytes(params: ChallengeParams) -> bytes:
    return struct.pack("<5Q", params.m, params.n, params.k, params.v, params.stages)


def evidence_payload(
    *,
    challenge_id: str,
    validator_hotkey: str,
    miner_hotkey: str,
    worker_pubkey: bytes,
    seed: bytes,
    params: ChallengeParams,
    gpus: Sequence[GpuCommit],
) -> bytes:
    """The bytes the miner signs with its hotkey for a ``ChallengeResponse``.

    ``frame(tag, challenge_id, validator_hotkey, miner_hotkey, worker_pubkey, seed,
    u64le(m, n, k, v, R), u32le(len(gpus)))`` followed, per GPU in order, by
    ``frame(gpu_uuid, roots, worker_signature)``. The worker's informative timings are not signed.
    """
    out = bytearray(
        frame(
            EVIDENCE_TAG,
            challenge_id,
            validator_hotkey,
            miner_hotkey,
            worker_pubkey,
            seed,
            _params_bytes(params),
            u32le(len(gpus)),
        )
    )
    for gpu in gpus:
        out += frame(gpu.gpu_uuid, gpu.roots, gpu.signature)
    return bytes(out)


# --------------------------------------------------------------------------- challenge


class ChallengeRequest(Message):
    """``POST /challenge``: dispatch a challenge to one worker's GPUs and return its commit."""

    type: Literal["challenge_request"] = "challenge_request"
    challenge_id: Identifier
    worker_pubkey: PublicKeyHex
    gpu_uuids: _GpuList
    seed: Bytes32
    params: ChallengeParams
    deadline_ms: DeadlineMs

    @model_validator(mode="after")
    def _unique(self) -> Self:
        check_distinct_gpus(self.gpu_uuids)
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return bytes.fromhex(self.worker_pubkey)


class ChallengeResponse(Message):
    """The worker's commitments, relayed and countersigned by the miner's hotkey."""

    type: Literal["challenge_response"] = "challenge_response"
    challenge_id: Identifier
    miner_hotkey: Hotkey
    worker_pubkey: PublicKeyHex
    gpus: Annotated[list[GpuCommit], Field(min_length=1, max_length=MAX_GPUS)]
    #: the miner hotkey's signature of ``evidence_payload(...)`` for this challenge
    miner_signature: Signature

    @model_validator(mode="after")
    def _unique(self) -> Self:
        check_distinct_gpus([gpu.gpu_uuid for gpu in self.gpus])
        return self

    @property
    def worker_pubkey_bytes(self) -> bytes:
        return bytes.fromhex(self.worker_pubkey)

    def payload(self, *, validator_hotkey: str, seed: bytes, params: ChallengeParams) -> bytes:
        """``evidence_payload`` for this response; the validator supplies what it asked for."""
        return evidence_payload(
            challenge_id=self.challenge_id,
            validator_hotkey=validator_hotkey,
            miner_hotkey=self.miner_hotkey,
            worker_pubkey=self.worker_pubkey_bytes,
            seed=seed,
            params=params,
            gpus=self.gpus,
        )


class EpochRequest(Message):
    """``POST /epoch``: every challenge of one epoch for this miner, one per worker, in one request.

    The miner dispatches them all at once and streams one record per challenge back (a
    ``ChallengeResponse`` or an :class:`EpochFailure`, see ``byteleap.protocol.stream``) as each
    finishes, so the validator times every commit on its own clock (SPEC 4.5).
    """

    type: Literal["epoch_request"] = "epoch_request"
    epoch_id: Identifier
    challenges: Annotated[list[ChallengeRequest], Field(min_length=1, max_length=MAX_WORKERS)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([challenge.challenge_id for challenge in self.challenges]):
            raise ValueError("challenge_id values must be distinct")
        if not distinct([challenge.worker_pubkey for challenge in self.challenges]):
            raise ValueError("worker_pubkey values must be distinct")
        return self


class EpochFailure(Message):
    """One record of an epoch stream: the miner got no commit for this challenge.

    ``code`` and ``message`` are those of the ``ApiError`` the same failure gets on
    ``POST /challenge`` (``unavailable``, ``timeout``, ``worker_failure``, ``malformed``, ...).
    """

    type: Literal["epoch_failure"] = "epoch_failure"
    challenge_id: Identifier
    code: Code
    message: Text


class OpeningsRequest(Message):
    """``POST /reveal``: open these rows of a committed challenge."""

    type: Literal["openings_request"] = "openings_request"
    challenge_id: Identifier
    worker_pubkey: PublicKeyHex
    openings: Annotated[list[OpeningRequest], Field(min_length=1, max_length=MAX_OPENING_REQUESTS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_opening_requests(self.openings)
        return self


class OpeningsResponse(Message):
    """The revealed rows with their Merkle paths, as the worker sent them."""

    type: Literal["openings_response"] = "openings_response"
    challenge_id: Identifier
    openings: Annotated[list[RowOpening], Field(max_length=MAX_OPENINGS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_row_openings(self.openings)
        return self


__all__ = [
    "EVIDENCE_TAG",
    "ChallengeRequest",
    "ChallengeResponse",
    "EpochFailure",
    "EpochRequest",
    "OpeningsRequest",
    "OpeningsResponse",
    "evidence_payload",
]
