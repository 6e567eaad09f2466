"""The worker link's challenge messages: dispatch, commit, reveal (SPEC 4).

Bulk bytes (roots, rows, proofs) are ``bytes`` fields, which the codec carries as binary blobs.
Evidence fields are only *bounded* here, not checked against the challenge parameters: a commit
with the wrong number of roots or a row of the wrong length is still decoded, so that the
verifier can score it as fraud (``FraudReason.BAD_COMMIT_SHAPE`` …) instead of the link
discarding it as a malformed message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from byteleap.challenge.params import ChallengeParams
from byteleap.crypto import WorkerKey, frame, verify_ed25519
from byteleap.errors import FraudReason, VerificationFailed
from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    MAX_PROOF_BYTES,
    MAX_ROOTS_BYTES,
    MAX_ROW_BYTES,
    MAX_ROWS_PER_STAGE,
    Bytes32,
    DeadlineMs,
    GpuUuid,
    Identifier,
    Message,
    NonNegFloat,
    Row,
    Signature,
    Stage,
    WireModel,
    distinct,
)

#: domain tag of the worker's signature over a GPU's roots
COMMIT_TAG = b"byteleap/commit/v1"
#: size of one Merkle root
ROOT_BYTES = 32

_GpuList = Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]
_StageTimings = Annotated[list[NonNegFloat], Field(max_length=MAX_ROOTS_BYTES // 32)]


def _join_roots(roots: bytes | Sequence[bytes]) -> bytes:
    if isinstance(roots, bytes | bytearray | memoryview):
        return bytes(roots)
    return b"".join(bytes(root) for root in roots)


def commit_payload(challenge_id: str, gpu_uuid: str, roots: bytes | Sequence[bytes]) -> bytes:
    """The bytes a worker signs for one GPU's commitment (SPEC 4.3).

    ``frame(b"byteleap/commit/v1", challenge_id, gpu_uuid, root_0 ‖ … ‖ root_{R-1})``. The roots
    may be given concatenated or as a list; both spell the same payload.
    """
    return frame(COMMIT_TAG, challenge_id, gpu_uuid, _join_roots(roots))


# --------------------------------------------------------------------------- challenge


class ChallengeDispatch(Message):
    """miner -> worker: run the challenge on these GPUs and commit before the deadline."""

    type: Literal["challenge"] = "challenge"
    challenge_id: Identifier
    seed: Bytes32
    params: ChallengeParams
    gpu_uuids: _GpuList
    #: milliseconds the worker has, from receiving this, until its commit must be sent
    deadline_ms: DeadlineMs

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct(self.gpu_uuids):
            raise ValueError("gpu_uuids must be distinct")
        return self


class GpuCommit(WireModel):
    """One GPU's commitment: its roots, its timings and the worker's signature over both."""

    gpu_uuid: GpuUuid
    #: ``root_0 ‖ … ‖ root_{R-1}``, 32 bytes each (checked against ``R`` by the verifier)
    roots: Annotated[bytes, Field(max_length=MAX_ROOTS_BYTES)]
    #: the worker's own per-stage timings in milliseconds: informative only, never trusted
    stage_ms: _StageTimings = Field(default_factory=list)
    #: ed25519 signature of ``commit_payload(challenge_id, gpu_uuid, roots)`` by the worker key
    signature: Signature

    @classmethod
    def create(
        cls,
        key: WorkerKey,
        challenge_id: str,
        gpu_uuid: str,
        roots: bytes | Sequence[bytes],
        stage_ms: Sequence[float] = (),
    ) -> GpuCommit:
        """Build and sign a commitment with the worker's key."""
        joined = _join_roots(roots)
        return cls(
            gpu_uuid=gpu_uuid,
            roots=joined,
            stage_ms=list(stage_ms),
            signature=key.sign(commit_payload(challenge_id, gpu_uuid, joined)),
        )

    def root_list(self) -> list[bytes]:
        """The roots one by one.

        Raises ``VerificationFailed(BAD_COMMIT_SHAPE)`` when ``roots`` is not a whole number of
        32-byte roots: that is signed evidence of a broken worker, not a link failure.
        """
        if len(self.roots) % ROOT_BYTES:
            raise VerificationFailed(
                FraudReason.BAD_COMMIT_SHAPE,
                f"roots are {len(self.roots)} bytes, not a multiple of {ROOT_BYTES}",
            )
        return [self.roots[i : i + ROOT_BYTES] for i in range(0, len(self.roots), ROOT_BYTES)]

    def payload(self, challenge_id: str) -> bytes:
        """The bytes ``signature`` must sign."""
        return commit_payload(challenge_id, self.gpu_uuid, self.roots)

    def verify(self, worker_pubkey: bytes, challenge_id: str) -> bool:
        """True when ``signature`` is the worker's signature of this commitment."""
        return verify_ed25519(worker_pubkey, self.payload(challenge_id), self.signature)


class ChallengeCommit(Message):
    """worker -> miner: one commitment per challenged GPU."""

    type: Literal["commit"] = "commit"
    challenge_id: Identifier
    gpus: Annotated[list[GpuCommit], Field(min_length=1, max_length=MAX_GPUS)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([gpu.gpu_uuid for gpu in self.gpus]):
            raise ValueError("one commitment per GPU: gpu_uuid values must be distinct")
        return self

    def gpu(self, uuid: str) -> GpuCommit | None:
        return next((gpu for gpu in self.gpus if gpu.gpu_uuid == uuid), None)


class OpeningRequest(WireModel):
    """Open these rows of this GPU's stage."""

    gpu_uuid: GpuUuid
    stage: Stage
    rows: Annotated[list[Row], Field(min_length=1, max_length=MAX_ROWS_PER_STAGE)]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct(self.rows):
            raise ValueError("rows must be distinct")
        return self


class RevealRequest(Message):
    """miner -> worker (on the validator's behalf): reveal these rows with their Merkle paths."""

    type: Literal["reveal_request"] = "reveal_request"
    challenge_id: Identifier
    openings: Annotated[list[OpeningRequest], Field(min_length=1, max_length=MAX_OPENING_REQUESTS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_opening_requests(self.openings)
        return self


def check_opening_requests(openings: Sequence[OpeningRequest]) -> None:
    if not distinct([(o.gpu_uuid, o.stage) for o in openings]):
        raise ValueError("each (gpu_uuid, stage) may be requested once")
    total = sum(len(o.rows) for o in openings)
    if total > MAX_OPENINGS:
        raise ValueError(f"{total} rows requested, at most {MAX_OPENINGS} allowed")


class RowOpening(WireModel):
    """One revealed row and its Merkle path."""

    gpu_uuid: GpuUuid
    stage: Stage
    row: Row
    #: the row as ``n`` little-endian int32 values (length checked by the verifier)
    values: Annotated[bytes, Field(max_length=MAX_ROW_BYTES)]
    #: sibling hashes from the leaf up, ``depth * 32`` bytes (length checked by the verifier)
    proof: Annotated[bytes, Field(max_length=MAX_PROOF_BYTES)]

    def proof_list(self) -> list[bytes]:
        """The sibling hashes one by one, leaf level first.

        Raises ``VerificationFailed(BAD_PROOF_LENGTH)`` when ``proof`` is not a whole number of
        32-byte hashes. (Whether there are exactly ``depth`` of them is the verifier's check.)
        """
        if len(self.proof) % ROOT_BYTES:
            raise VerificationFailed(
                FraudReason.BAD_PROOF_LENGTH,
                f"proof is {len(self.proof)} bytes, not a multiple of {ROOT_BYTES}",
                stage=self.stage,
                row=self.row,
            )
        return [self.proof[i : i + ROOT_BYTES] for i in range(0, len(self.proof), ROOT_BYTES)]


class Reveal(Message):
    """worker -> miner: the requested rows."""

    type: Literal["reveal"] = "reveal"
    challenge_id: Identifier
    openings: Annotated[list[RowOpening], Field(max_length=MAX_OPENINGS)]

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_row_openings(self.openings)
        return self


def check_row_openings(openings: Sequence[RowOpening]) -> None:
    if not distinct([(o.gpu_uuid, o.stage, o.row) for o in openings]):
        raise ValueError("each (gpu_uuid, stage, row) may be revealed once")


__all__ = [
    "COMMIT_TAG",
    "ROOT_BYTES",
    "ChallengeCommit",
    "ChallengeDispatch",
    "GpuCommit",
    "OpeningRequest",
    "Reveal",
    "RevealRequest",
    "RowOpening",
    "check_opening_requests",
    "check_row_openings",
    "commit_payload",
]
