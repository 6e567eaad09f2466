"""The worker link's session: handshake, liveness and failure replies (SPEC 2).

Flow of one connection (the worker dials out, so it works behind NAT)::

    miner  -> worker   Hello(nonce, miner_hotkey, heartbeat_interval_s)
    worker -> miner    Register(worker_pubkey, signature over the nonce, inventory, ...)
    miner  -> worker   Welcome(session_id)          (or ErrorReply, then close)
    worker -> miner    Heartbeat(seq, state, inventory?)    every heartbeat_interval_s
    miner  -> worker   HeartbeatAck(seq)
    miner  -> worker   ChallengeDispatch     -> ChallengeCommit | Unavailable | ErrorReply
    miner  -> worker   RevealRequest         -> Reveal | ErrorReply
    miner  -> worker   LeaseStart, LeaseStop -> LeaseAck
    miner  -> worker   JobSubmit             -> JobAccepted | JobRefused     (leased workers only)
    miner  -> worker   JobCancel, JobStatusQuery -> JobStatus | JobRefused
    miner  -> worker   JobLogsQuery          -> JobLogs | JobRefused
    miner  -> worker   JobResultQuery        -> JobResult | JobRefused
    miner  -> worker   ArtifactQuery         -> ArtifactChunk | JobRefused

Job messages carry a ``request_id`` chosen by the miner and echoed in the answer, so several
requests about the same job (a status poll while logs are followed) can be in flight at once.

The other messages are in :mod:`.challenges`, :mod:`.leases` and :mod:`.jobs`; the package
(:mod:`byteleap.protocol.worker_link`) holds the unions the codec decodes with.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from byteleap.errors import PeerUnavailable
from byteleap.protocol.common import (
    Bytes32,
    Code,
    Hotkey,
    Identifier,
    Message,
    PublicKey,
    Seq,
    ShortName,
    Signature,
    Text,
    Token,
)
from byteleap.protocol.inventory import Inventory

#: what a worker is doing: idle workers take challenges, busy ones are computing one, leased
#: ones are running a renter's jobs and are never challenged (SPEC 4.4)
WorkerState = Literal["idle", "busy", "leased"]

_JoinToken = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[\x21-\x7e]+$")]


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


__all__ = [
    "Busy",
    "ErrorReply",
    "Heartbeat",
    "HeartbeatAck",
    "Hello",
    "Register",
    "Unavailable",
    "Welcome",
    "WorkerState",
]
