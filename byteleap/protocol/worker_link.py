"""Messages on the worker <-> miner websocket (SPEC 2 and 4).

Flow of one connection (the worker dials out, so it works behind NAT)::

    miner  -> worker   Hello(nonce, miner_hotkey, heartbeat_interval_s)
    worker -> miner    Register(worker_pubkey, signature over the nonce, inventory, ...)
    miner  -> worker   Welcome(session_id)          (or ErrorReply, then close)
    worker -> miner    Heartbeat(seq, state, inventory?)    every heartbeat_interval_s
    miner  -> worker   HeartbeatAck(seq)
    miner  -> worker   ChallengeDispatch     -> ChallengeCommit | Unavailable | ErrorReply
    miner  -> worker   RevealRequest         -> Reveal | ErrorReply
    miner  -> worker   LeaseStart, LeaseStop -> LeaseAck

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
from byteleap.errors import FraudReason, PeerUnavailable, VerificationFailed
from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_OPENING_REQUESTS,
    MAX_OPENINGS,
    MAX_PROOF_BYTES,
    MAX_ROOTS_BYTES,
    MAX_ROW_BYTES,
    MAX_ROWS_PER_STAGE,
    Bytes32,
    Code,
    DeadlineMs,
    GpuUuid,
    Hotkey,
    Identifier,
    Message,
    NonNegFloat,
    PublicKey,
    Row,
    Seq,
    ShortName,
    Signature,
    Stage,
    Text,
    Token,
    UnixSeconds,
    WireModel,
    distinct,
)
from byteleap.protocol.inventory import Inventory

#: domain tag of the worker's signature over a GPU's roots
COMMIT_TAG = b"byteleap/commit/v1"
#: size of one Merkle root
ROOT_BYTES = 32

#: what a worker is doing: idle workers take challenges, busy ones are computing one, leased
#: ones are running a renter's jobs and are never challenged (SPEC 4.4)
WorkerState = Literal["idle", "busy", "leased"]

_GpuList = Annotated[list[GpuUuid], Field(min_length=1, max_length=MAX_GPUS)]
_StageTimings = Annotated[list[NonNegFloat], Field(max_length=MAX_ROOTS_BYTES // 32)]
_JoinToken = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]


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


# --------------------------------------------------------------------------- handshake


class Hello(Message):
    """miner -> worker, first message: prove your key by signing this nonce."""

    type: Literal["hello"] = "hello"
    #: fresh random bytes from the miner's CSPRNG, one per connection
    nonce: Bytes32
    #: the miner's hotkey (ss58); the worker signs it too, so the answer is bound to this miner
    miner_hotkey: Hotkey
    #: how often the worker must send a Heartbeat
    heartbeat_interval_s: Annotated[float, Field(ge=0.05, le=3600.0)]


class Register(Message):
    """worker -> miner: who I am, proven by an ed25519 signature of ``handshake_payload``."""

    type: Literal["register"] = "register"
    worker_pubkey: PublicKey
    #: ed25519 signature of ``handshake.handshake_payload(nonce, miner_hotkey, worker_pubkey)``
    signature: Signature
    agent_version: ShortName
    #: a one-time token that lets the miner pin a key it does not know yet
    join_token: _JoinToken | None = None
    inventory: Inventory


class Welcome(Message):
    """miner -> worker: registration accepted."""

    type: Literal["welcome"] = "welcome"
    session_id: Identifier


# --------------------------------------------------------------------------- liveness


class Heartbeat(Message):
    """worker -> miner, every ``heartbeat_interval_s``; may carry a fresh inventory."""

    type: Literal["heartbeat"] = "heartbeat"
    seq: Seq
    state: WorkerState
    inventory: Inventory | None = None


class HeartbeatAck(Message):
    """miner -> worker: heartbeat ``seq`` received."""

    type: Literal["heartbeat_ack"] = "heartbeat_ack"
    seq: Seq


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


# --------------------------------------------------------------------------- leases


class LeaseStart(Message):
    """miner -> worker: these GPUs are leased until ``ends_at``; stop taking challenges."""

    type: Literal["lease_start"] = "lease_start"
    lease_id: Identifier
    gpu_uuids: _GpuList
    ends_at: UnixSeconds

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct(self.gpu_uuids):
            raise ValueError("gpu_uuids must be distinct")
        return self


class LeaseStop(Message):
    """miner -> worker: the lease ended (expiry, renter termination, …)."""

    type: Literal["lease_stop"] = "lease_stop"
    lease_id: Identifier
    reason: Text


class LeaseAck(Message):
    """worker -> miner: answer to LeaseStart or LeaseStop."""

    type: Literal["lease_ack"] = "lease_ack"
    lease_id: Identifier
    accepted: bool
    reason: Text = ""


# --------------------------------------------------------------------------- failures


class ErrorReply(Message):
    """Either direction: the message we got could not be processed.

    ``code`` is the ``.code`` of the ``ByteLeapError`` subclass that describes the failure, so the
    receiver can tell "you sent garbage" from "we are unavailable" (see ``codec.error_reply_for``).
    """

    type: Literal["error"] = "error"
    code: Code
    message: Text
    #: the id (challenge_id, lease_id, seq, …) or ``type`` of the message this answers, if known
    in_reply_to: Token | None = None


class Unavailable(Message):
    """worker -> miner: this challenge cannot run now (busy with another one, or leased).

    An answer, not a failure: the challenge is excused and never scored against the worker.
    """

    type: Literal["unavailable"] = "unavailable"
    challenge_id: Identifier
    leased: bool

    def to_error(self) -> PeerUnavailable:
        return PeerUnavailable(leased=self.leased)


#: the same reply, under the name "busy"
Busy = Unavailable


MinerToWorker = Annotated[
    Hello
    | Welcome
    | HeartbeatAck
    | ChallengeDispatch
    | RevealRequest
    | LeaseStart
    | LeaseStop
    | ErrorReply,
    Field(discriminator="type"),
]
"""Everything a worker may receive."""

WorkerToMiner = Annotated[
    Register | Heartbeat | ChallengeCommit | Reveal | LeaseAck | Unavailable | ErrorReply,
    Field(discriminator="type"),
]
"""Everything a miner may receive from a worker."""

WorkerLinkMessage = Annotated[
    Hello
    | Register
    | Welcome
    | Heartbeat
    | HeartbeatAck
    | ChallengeDispatch
    | ChallengeCommit
    | RevealRequest
    | Reveal
    | LeaseStart
    | LeaseStop
    | LeaseAck
    | ErrorReply
    | Unavailable,
    Field(discriminator="type"),
]
"""Every message of the worker link, either direction."""


__all__ = [
    "COMMIT_TAG",
    "ROOT_BYTES",
    "Busy",
    "ChallengeCommit",
    "ChallengeDispatch",
    "ErrorReply",
    "GpuCommit",
    "Heartbeat",
    "HeartbeatAck",
    "Hello",
    "LeaseAck",
    "LeaseStart",
    "LeaseStop",
    "MinerToWorker",
    "OpeningRequest",
    "Register",
    "Reveal",
    "RevealRequest",
    "RowOpening",
    "Unavailable",
    "Welcome",
    "WorkerLinkMessage",
    "WorkerState",
    "WorkerToMiner",
    "commit_payload",
]
