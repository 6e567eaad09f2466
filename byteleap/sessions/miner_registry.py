"""The miner's book of connected workers, as a synchronous state machine with no I/O.

The websocket hub (``neurons.miner.hub``) moves bytes; every decision about a worker's session is
made here, from plain arguments, with the clocks passed in, so it is tested with plain objects:

* who may register (one live session per worker key, at most ``max_workers`` sessions);
* what state a worker is in, from its heartbeats and from the replies it sends::

      joined ──heartbeat(idle)──▶ healthy ◀──heartbeat──▶ busy / leased
         │                           │                         │
         └──────── silent for heartbeat_timeout_s, or the connection closed ──▶ lost (removed)

* whether a message is within the session's rate (a token bucket) and when repeated abuse ends
  the session (a second, slowly refilling bucket of "strikes");
* which pending request a reply answers (``RequestKey`` → the caller's future-like token).

Methods return :class:`RegistryInstruction` lists (close this session, fail that request) for the
hub to carry out; refusals raise the typed error the hub sends back to the peer (``Forbidden``) or
hands to its caller (``PeerUnavailable``).

Why a *stale* session may be replaced while a *live* one may not: a worker whose network
dropped reconnects long before TCP tells the miner its old connection is dead. Its new, freshly
authenticated connection must win, or the worker would be locked out until the heartbeat timeout.
But two processes holding the same key and both heartbeating are a misconfiguration (or a stolen
key); the second one is refused so they do not evict each other forever. "Stale" means silent for
``stale_after`` seconds, less than the heartbeat timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from byteleap.errors import ByteLeapError, Forbidden, LinkError, PeerUnavailable
from byteleap.protocol.inventory import Inventory
from byteleap.protocol.miner_api.inventory import GpuSummary, WorkerSummary
from byteleap.protocol.worker_link.challenges import ChallengeCommit, Reveal
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    JobAccepted,
    JobLogs,
    JobRefused,
    JobReply,
    JobResult,
    JobStatus,
)
from byteleap.protocol.worker_link.leases import LeaseAck
from byteleap.protocol.worker_link.session import ErrorReply, Heartbeat, Unavailable

T = TypeVar("T")

#: websocket close codes the hub uses (4000-4999 are free for applications)
CLOSE_REPLACED = 4001
CLOSE_HEARTBEAT_TIMEOUT = 4002
CLOSE_POLICY = 1008  # RFC 6455 "policy violation": rate abuse, refused registration
CLOSE_GOING_AWAY = 1001

#: a reply from a worker answers one of these
RequestKind = str  # "challenge" | "reveal" | "lease" | "job" (keyed by the request id)
RequestKey = tuple[RequestKind, str]


class SessionState(enum.StrEnum):
    JOINED = "joined"  # registered, no heartbeat yet
    HEALTHY = "healthy"  # heartbeating and idle
    BUSY = "busy"  # computing a challenge
    LEASED = "leased"  # running a renter's jobs: never challenged
    LOST = "lost"  # timed out or disconnected; removed from the book

    @property
    def wire(self) -> str:
        """The ``WorkerState`` a validator sees."""
        return {SessionState.BUSY: "busy", SessionState.LEASED: "leased"}.get(self, "idle")


_FROM_WIRE = {
    "idle": SessionState.HEALTHY,
    "busy": SessionState.BUSY,
    "leased": SessionState.LEASED,
}


class Verdict(enum.Enum):
    """What the hub does with a message, by the session's rate limit."""

    ACCEPT = "accept"
    REFUSE = "refuse"  # answer RateLimited, do not process
    CLOSE = "close"  # repeated abuse: close the connection


# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class CloseSession:
    session_id: str
    code: int
    reason: str


@dataclass(frozen=True)
class FailRequest(Generic[T]):
    """Wake the waiter ``token`` with ``error``: its worker is gone."""

    token: T
    error: ByteLeapError


RegistryInstruction = CloseSession | FailRequest[Any]


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """A reply matched to the request it answers."""

    key: RequestKey
    token: T


# --------------------------------------------------------------------------- token bucket


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked; starts full."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate, capacity, capacity, now)

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


# --------------------------------------------------------------------------- sessions


@dataclass
class Session(Generic[T]):
    session_id: str
    pubkey: bytes
    agent_version: str
    inventory: Inventory
    joined_at: float
    #: monotonic time of the last message of any kind (liveness)
    last_seen: float
    #: wall (unix) time of the last heartbeat, or of registration before the first one
    last_heartbeat_wall: float
    bucket: TokenBucket
    strikes: TokenBucket
    state: SessionState = SessionState.JOINED
    heartbeats: int = 0
    pending: dict[RequestKey, T] = field(default_factory=dict)

    @property
    def pubkey_hex(self) -> str:
        return self.pubkey.hex()

    def challenge_pending(self) -> bool:
        return any(kind == "challenge" for kind, _ in self.pending)


@dataclass(frozen=True)
class RegistryLimits:
    max_workers: int = 256
    messages_per_second: float = 50.0
    message_burst: int = 100
    #: a session silent this long is lost
    heartbeat_timeout_s: float = 30.0
    #: a session silent this long may be replaced by a new connection with the same key
    stale_after_s: float = 20.0
    #: refused (rate-limited or malformed) messages tolerated in a burst before closing
    max_strikes: int = 20
    #: strikes forgiven per second
    strikes_per_second: float = 1.0


class WorkerRegistry(Generic[T]):
    """Every registered worker session, keyed by session id and by worker key."""

    def __init__(self, limits: RegistryLimits | None = None) -> None:
        self.limits = limits or RegistryLimits()
        self._sessions: dict[str, Session[T]] = {}
        self._by_key: dict[bytes, str] = {}

    # ------------------------------------------------------------------ lookups

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def connected(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session[T] | None:
        return self._sessions.get(session_id)

    def session_of(self, pubkey: bytes) -> Session[T] | None:
        session_id = self._by_key.get(bytes(pubkey))
        return self._sessions.get(session_id) if session_id is not None else None

    def sessions(self) -> list[Session[T]]:
        return list(self._sessions.values())

    # ------------------------------------------------------------------ registration

    def register(
        self,
        session_id: str,
        pubkey: bytes,
        *,
        agent_version: str,
        inventory: Inventory,
        now: float,
        wall: float,
    ) -> list[RegistryInstruction]:
        """Admit an authenticated, authorized worker; the hub checked signature and key.

        Raises ``Forbidden`` when the same key has a live session or the book is full. A stale
        session of the same key is replaced: it is closed and its pending requests fail.
        """
        pubkey = bytes(pubkey)
        if session_id in self._sessions:
            raise ValueError(f"session id {session_id} is already in use")
        out: list[RegistryInstruction] = []
        old = self.session_of(pubkey)
        if old is not None:
            if now - old.last_seen < self.limits.stale_after_s:
                raise Forbidden("this worker key already has a live connection to the miner")
            out += self._remove(old, LinkError("the worker reconnected on a new connection"))
            out.append(CloseSession(old.session_id, CLOSE_REPLACED, "replaced by a new connection"))
        if len(self._sessions) >= self.limits.max_workers:
            raise Forbidden(f"the miner accepts at most {self.limits.max_workers} workers")
        limits = self.limits
        self._sessions[session_id] = Session(
            session_id=session_id,
            pubkey=pubkey,
            agent_version=agent_version,
            inventory=inventory,
            joined_at=now,
            last_seen=now,
            last_heartbeat_wall=wall,
            bucket=TokenBucket.full(limits.messages_per_second, limits.message_burst, now),
            strikes=TokenBucket.full(limits.strikes_per_second, limits.max_strikes, now),
        )
        self._by_key[pubkey] = session_id
        return out

    # ------------------------------------------------------------------ traffic

    def admit(self, session_id: str, now: float) -> Verdict:
        """Count one message from the session against its rate; call before decoding it."""
        session = self._sessions.get(session_id)
        if session is None:
            return Verdict.CLOSE
        session.last_seen = max(session.last_seen, now)
        if session.bucket.take(now):
            return Verdict.ACCEPT
        return self.strike(session_id, now)

    def strike(self, session_id: str, now: float) -> Verdict:
        """Record a refused message (over the rate, or malformed): REFUSE, or CLOSE at the limit."""
        session = self._sessions.get(session_id)
        if session is None:
            return Verdict.CLOSE
        return Verdict.REFUSE if session.strikes.take(now) else Verdict.CLOSE

    def heartbeat(self, session_id: str, beat: Heartbeat, *, now: float, wall: float) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            return
        session.last_seen = max(session.last_seen, now)
        session.last_heartbeat_wall = wall
        session.heartbeats += 1
        session.state = _FROM_WIRE[beat.state]
        if beat.inventory is not None:
            session.inventory = beat.inventory

    # ------------------------------------------------------------------ requests

    def begin(self, pubkey: bytes, key: RequestKey, token: T) -> str:
        """Record a request about to be sent to the worker; returns its session id.

        Raises ``PeerUnavailable`` when the worker is not connected, when a challenge finds it
        busy or leased (or with a challenge already in flight: one at a time per worker), or when
        the same request is already pending.
        """
        session = self.session_of(pubkey)
        if session is None or session.state is SessionState.LOST:
            raise PeerUnavailable("not connected")
        kind, ident = key
        if kind == "challenge":
            if session.state is SessionState.LEASED:
                raise PeerUnavailable(leased=True)
            if session.state is SessionState.BUSY or session.challenge_pending():
                raise PeerUnavailable(leased=False)
        if key in session.pending:
            raise PeerUnavailable(f"a {kind} request for {ident} is already in flight")
        session.pending[key] = token
        return session.session_id

    def cancel(self, session_id: str, key: RequestKey) -> None:
        """Forget a request (answered, timed out or abandoned by its caller)."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.pending.pop(key, None)

    def reply(
        self,
        session_id: str,
        message: ChallengeCommit | Unavailable | Reveal | LeaseAck | JobReply | ErrorReply,
    ) -> Resolved[T] | None:
        """Match a reply to its pending request and update the worker's state from it.

        Returns ``None`` for a reply nobody waits for (late, duplicate, or unsolicited).
        """
        session = self._sessions.get(session_id)
        if session is None:
            return None
        key = self._key_of(session, message)
        if key is None or key not in session.pending:
            return None
        token = session.pending.pop(key)
        match message:
            case ChallengeCommit() | ErrorReply() if key[0] == "challenge":
                # the run is over; a heartbeat says otherwise if the worker is leased
                if session.state is SessionState.BUSY:
                    session.state = SessionState.HEALTHY
            case Unavailable(leased=True):
                session.state = SessionState.LEASED
        return Resolved(key, token)

    def lease_changed(self, session_id: str, *, leased: bool) -> None:
        """A lease start or stop was acknowledged (accepted) by the worker."""
        session = self._sessions.get(session_id)
        if session is not None and session.state is not SessionState.LOST:
            session.state = SessionState.LEASED if leased else SessionState.HEALTHY

    @staticmethod
    def _key_of(session: Session[T], message: object) -> RequestKey | None:
        match message:
            case ChallengeCommit(challenge_id=cid) | Unavailable(challenge_id=cid):
                return ("challenge", cid)
            case Reveal(challenge_id=cid):
                return ("reveal", cid)
            case LeaseAck(lease_id=lid):
                return ("lease", lid)
            case (
                JobAccepted(request_id=rid)
                | JobRefused(request_id=rid)
                | JobStatus(request_id=rid)
                | JobLogs(request_id=rid)
                | JobResult(request_id=rid)
                | ArtifactChunk(request_id=rid)
            ):
                return ("job", rid)
            case ErrorReply(in_reply_to=ref) if ref is not None:
                for kind in ("challenge", "reveal", "lease", "job"):
                    if (kind, ref) in session.pending:
                        return (kind, ref)
        return None

    # ------------------------------------------------------------------ endings

    def disconnected(self, session_id: str) -> list[RegistryInstruction]:
        """The session's connection closed: remove it and fail what waits on it."""
        session = self._sessions.get(session_id)
        if session is None:
            return []
        return self._remove(session, LinkError("the worker's connection closed"))

    def sweep(self, now: float) -> list[RegistryInstruction]:
        """Sessions silent for ``heartbeat_timeout_s`` are lost: removed, closed, failed."""
        out: list[RegistryInstruction] = []
        limit = self.limits.heartbeat_timeout_s
        for session in list(self._sessions.values()):
            if now - session.last_seen >= limit:
                out += self._remove(session, LinkError("the worker stopped sending heartbeats"))
                out.append(
                    CloseSession(session.session_id, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
                )
        return out

    def close_all(self, reason: str = "the miner is shutting down") -> list[RegistryInstruction]:
        out: list[RegistryInstruction] = []
        for session in list(self._sessions.values()):
            out += self._remove(session, LinkError(reason))
            out.append(CloseSession(session.session_id, CLOSE_GOING_AWAY, reason))
        return out

    def _remove(self, session: Session[T], error: ByteLeapError) -> list[RegistryInstruction]:
        session.state = SessionState.LOST
        self._sessions.pop(session.session_id, None)
        if self._by_key.get(session.pubkey) == session.session_id:
            del self._by_key[session.pubkey]
        failed = [FailRequest(token, error) for token in session.pending.values()]
        session.pending.clear()
        return list(failed)

    # ------------------------------------------------------------------ reporting

    def summaries(self, now: float) -> list[WorkerSummary]:
        """What validators see: sessions that have heartbeated and are not yet overdue.

        A session that registered but has not sent its first heartbeat is left out: its state is
        not known yet (a reconnecting worker may still be leased or busy), and listing it as idle
        would credit availability it has not shown.
        """
        out = []
        for session in self._sessions.values():
            if session.heartbeats == 0:
                continue
            if now - session.last_seen >= self.limits.heartbeat_timeout_s:
                continue
            out.append(summary_of(session))
        return out


def summary_of(session: Session[Any]) -> WorkerSummary:
    inventory = session.inventory
    return WorkerSummary(
        worker_pubkey=session.pubkey_hex,
        state=session.state.wire,  # type: ignore[arg-type]  # idle | busy | leased
        gpus=[
            GpuSummary(
                uuid=gpu.uuid,
                name=gpu.name,
                memory_total_mib=gpu.memory_total_mib,
                compute_capability=gpu.compute_capability,
            )
            for gpu in inventory.gpus
        ],
        last_heartbeat=max(0.0, session.last_heartbeat_wall),
        agent_version=session.agent_version,
        backends=list(inventory.backends),
    )


__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_HEARTBEAT_TIMEOUT",
    "CLOSE_POLICY",
    "CLOSE_REPLACED",
    "CloseSession",
    "FailRequest",
    "RegistryInstruction",
    "RegistryLimits",
    "RequestKey",
    "Resolved",
    "Session",
    "SessionState",
    "TokenBucket",
    "Verdict",
    "WorkerRegistry",
    "summary_of",
]
