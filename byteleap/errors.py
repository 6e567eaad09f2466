"""Every error ByteLeap raises on purpose, in one tree.

The *type* of a failure decides its consequence (SPEC section 3), so callers branch on the class,
never on the message::

    ByteLeapError
    ├── ConfigError                 bad configuration; names the key and the file
    ├── ProtocolError               a peer sent something we refuse to process
    │   ├── MalformedMessage        undecodable, wrong type, failed validation
    │   ├── MessageTooLarge         over the link's size limit (checked before parsing)
    │   ├── UnsupportedVersion      protocol_version we do not speak
    │   ├── RateLimited             too many messages from one peer
    │   └── AuthError               identity could not be established or is not allowed
    │       ├── Unauthenticated     missing/bad signature, stale or replayed nonce  -> HTTP 401
    │       └── Forbidden           valid identity, but not allowed here          -> HTTP 403
    ├── FraudError                  the peer computed wrongly: scored as fraud
    │   └── VerificationFailed      exact verification rejected a reveal; carries a FraudReason
    ├── PeerTimeout                 the peer was late: scored as a missed challenge
    │   └── UnexplainedBusy         busy or leased without a lease the validator knows of:
    │                               scored as a missed challenge (SPEC 5.5)
    ├── WorkerFailure               the worker could not do the work (out of memory, device lost):
    │                               scored as a missed challenge, like a timeout
    ├── PeerUnavailable             busy or leased: excused only when a lease the validator knows
    │                               of explains it (otherwise UnexplainedBusy)
    └── TransientError              our side or the link failed: retried, excused
        ├── LinkError               connection refused/reset/closed
        ├── ChainError              the chain (or its stand-in) failed or refused
        └── StorageError            the database failed

``outcome_of(exc)`` maps any exception to the :class:`Outcome` the scorer records. Anything that is
not a ``ByteLeapError`` is *our* bug, so it is excused rather than blamed on a peer.

Messages never contain secrets or signatures: they may be sent back to unauthenticated peers.
"""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """How a finished challenge counts in scoring."""

    VERIFIED = "verified"
    FRAUD = "fraud"
    TIMEOUT = "timeout"
    EXCUSED = "excused"


class FraudReason(enum.StrEnum):
    """Why exact verification rejected a worker's evidence."""

    BAD_COMMIT_SHAPE = "bad_commit_shape"  # wrong number of roots, wrong lengths
    BAD_SIGNATURE = "bad_signature"  # commit not signed by the worker's key
    MISSING_OPENING = "missing_opening"  # a requested row was not revealed
    UNREQUESTED_OPENING = "unrequested_opening"  # revealed rows we did not ask for
    BAD_ROW_SHAPE = "bad_row_shape"  # row bytes are not n int32 values
    BAD_PROOF_LENGTH = "bad_proof_length"  # Merkle path is not exactly log2(m) long
    BAD_PROOF = "bad_proof"  # Merkle path does not lead to the committed root
    WRONG_ENTRY = "wrong_entry"  # a sampled entry differs from the exact product
    IMPOSSIBLE_THROUGHPUT = "impossible_throughput"  # faster than the claimed GPU can be


class ByteLeapError(Exception):
    """Root of every deliberate ByteLeap error."""

    #: stable machine-readable code, used in typed error replies
    code: str = "error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(ByteLeapError):
    """The configuration is invalid."""

    code = "config"

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        where = []
        if source:
            where.append(str(source))
        if key:
            where.append(f"key {key!r}")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.key = key
        self.source = source


# --------------------------------------------------------------------------- protocol


class ProtocolError(ByteLeapError):
    """A peer sent something we refuse to process."""

    code = "protocol"


class MalformedMessage(ProtocolError):
    """The message could not be decoded or failed validation."""

    code = "malformed"


class MessageTooLarge(ProtocolError):
    """The message exceeds the link's size limit."""

    code = "too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class UnsupportedVersion(ProtocolError):
    """The peer speaks a protocol version we do not."""

    code = "unsupported_version"

    def __init__(self, got: int, supported: int) -> None:
        super().__init__(f"protocol_version {got} is not supported (this side speaks {supported})")
        self.got = got
        self.supported = supported


class RateLimited(ProtocolError):
    """Too many messages from one peer."""

    code = "rate_limited"


class AuthError(ProtocolError):
    """The peer's identity could not be established or is not allowed."""

    code = "auth"


class Unauthenticated(AuthError):
    """Missing or invalid signature, stale or replayed request."""

    code = "unauthenticated"


class Forbidden(AuthError):
    """The identity is valid but not allowed here."""

    code = "forbidden"


# --------------------------------------------------------------------------- scoring-relevant


class FraudError(ByteLeapError):
    """The peer computed wrongly. Scored as fraud."""

    code = "fraud"


class VerificationFailed(FraudError):
    """Exact verification rejected the evidence."""

    code = "verification_failed"

    def __init__(
        self,
        reason: FraudReason,
        detail: str = "",
        *,
        stage: int | None = None,
        row: int | None = None,
        column: int | None = None,
    ) -> None:
        where = ", ".join(
            f"{name} {value}"
            for name, value in (("stage", stage), ("row", row), ("column", column))
            if value is not None
        )
        text = reason.value + (f" at {where}" if where else "") + (f": {detail}" if detail else "")
        super().__init__(text)
        self.reason = reason
        self.stage = stage
        self.row = row
        self.column = column


class PeerTimeout(ByteLeapError):
    """The peer answered after its deadline. Scored as a missed challenge."""

    code = "timeout"


class UnexplainedBusy(PeerTimeout):
    """The worker said busy or leased, and no lease this validator knows of (its own, or one
    from receipts) explains it. A miner could otherwise pick the moment of every test by saying
    busy whenever it is not ready, so this is scored as a missed challenge (SPEC 5.5)."""

    code = "unexplained_busy"


class WorkerFailure(ByteLeapError):
    """The worker could not do the work (out of memory, device lost). Scored as a missed
    challenge: it is not fraud, but it is the worker's problem, not ours."""

    code = "worker_failure"


class PeerUnavailable(ByteLeapError):
    """The peer is busy or leased. Excused: never scored against it."""

    code = "unavailable"

    def __init__(self, message: str = "", *, leased: bool = False) -> None:
        super().__init__(message or ("worker is leased" if leased else "worker is busy"))
        self.leased = leased


class TransientError(ByteLeapError):
    """Our side or the link failed. Retried, and excused if it persists."""

    code = "transient"


class LinkError(TransientError):
    """A connection was refused, reset or closed."""

    code = "link"


class ChainError(TransientError):
    """The chain (or its local stand-in) failed or refused a request."""

    code = "chain"


class StorageError(TransientError):
    """The database failed."""

    code = "storage"


def outcome_of(exc: BaseException | None) -> Outcome:
    """The scoring outcome of a challenge that ended with ``exc`` (``None`` means verified)."""
    if exc is None:
        return Outcome.VERIFIED
    if isinstance(exc, FraudError):
        return Outcome.FRAUD
    if isinstance(exc, PeerTimeout | WorkerFailure):
        return Outcome.TIMEOUT
    # A malformed reply from an authenticated worker is its fault, not ours: treat it as fraud
    # only when it is evidence; everything else on the protocol level is excused.
    return Outcome.EXCUSED


__all__ = [
    "AuthError",
    "ByteLeapError",
    "ChainError",
    "ConfigError",
    "Forbidden",
    "FraudError",
    "FraudReason",
    "LinkError",
    "MalformedMessage",
    "MessageTooLarge",
    "Outcome",
    "PeerTimeout",
    "PeerUnavailable",
    "ProtocolError",
    "RateLimited",
    "StorageError",
    "TransientError",
    "Unauthenticated",
    "UnexplainedBusy",
    "UnsupportedVersion",
    "VerificationFailed",
    "WorkerFailure",
    "outcome_of",
]
