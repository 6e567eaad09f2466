"""What an epoch's round (:class:`~byteleap.sessions.epoch_round.EpochRound`) takes in and hands
out: events carry what happened, with the clocks (``at``: monotonic seconds, ``now``: the wall
clock); instructions say what the driver is to do next. Failures stay distinct events or
exceptions carried in them, so "peer busy", "link failed" and "peer wrong" reach the scorer as
themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from byteleap.protocol.miner_api.challenges import (
    ChallengeResponse,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.sessions.round_planner import PlannedChallenge
from byteleap.sessions.round_records import (
    ChallengeOpen,
    ChallengeVerdict,
    VerifyJob,
    VerifyReport,
)

# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EpochStored:
    """Every challenge is stored; each reveal is checked exactly with probability
    ``fraction``, the rest for their Merkle paths when ``merkle`` (``VerifyBudget.plan``)."""

    fraction: float = 1.0
    merkle: bool = True


@dataclass(frozen=True, slots=True)
class EpochNotStored:
    error: str


@dataclass(frozen=True, slots=True)
class ClockStarted:
    """The moment before the epoch's first dispatch: every deadline runs from here."""

    at: float


@dataclass(frozen=True, slots=True)
class MinerDispatched:
    miner_hotkey: str
    at: float


@dataclass(frozen=True, slots=True)
class AnswerArrived:
    """A challenge's commits, or the error its miner answered (or the link raised)."""

    challenge_id: str
    answer: ChallengeResponse | BaseException
    at: float
    now: datetime


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The miner's commit stream ended (or broke): what it did not answer never will be."""

    miner_hotkey: str
    now: datetime


@dataclass(frozen=True, slots=True)
class RevealArrived:
    challenge_id: str
    answer: OpeningsResponse | BaseException
    now: datetime


@dataclass(frozen=True, slots=True)
class Verified:
    """The verifier's report (or its crash) for each GPU of a :class:`Verify`."""

    challenge_id: str
    reports: Mapping[str, VerifyReport | BaseException]
    now: datetime


@dataclass(frozen=True, slots=True)
class ChallengeCrashed:
    """Handling the challenge raised something that is not the miner's fault: our bug."""

    challenge_id: str
    error: BaseException
    now: datetime


@dataclass(frozen=True, slots=True)
class ChallengeClosed:
    challenge_id: str


RoundEvent = (
    EpochStored
    | EpochNotStored
    | ClockStarted
    | MinerDispatched
    | AnswerArrived
    | StreamEnded
    | RevealArrived
    | Verified
    | ChallengeCrashed
    | ChallengeClosed
)

# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True, slots=True)
class StoreEpoch:
    opens: tuple[ChallengeOpen, ...]


@dataclass(frozen=True, slots=True)
class DispatchEpoch:
    """One miner's request (all of its workers' challenges), read for ``wait_s`` at most."""

    miner_hotkey: str
    endpoint: str
    request: EpochRequest
    wait_s: float


@dataclass(frozen=True, slots=True)
class RecordCommit:
    challenge_id: str
    committed_at: datetime
    roots: Mapping[str, tuple[bytes, ...]]


@dataclass(frozen=True, slots=True)
class RequestReveal:
    challenge_id: str
    request: OpeningsRequest
    wait_s: float


@dataclass(frozen=True, slots=True)
class Verify:
    challenge_id: str
    #: one per GPU, in ``gpu_uuids`` order
    jobs: tuple[VerifyJob, ...]
    gpu_uuids: tuple[str, ...]
    #: the GPUs whose entries are opened exactly (the others: Merkle paths only)
    exact: frozenset[str]


@dataclass(frozen=True, slots=True)
class CloseChallenge:
    """Store these verdicts together (one per GPU of the challenge, in its order)."""

    challenge_id: str
    planned: PlannedChallenge
    verdicts: tuple[ChallengeVerdict, ...]
    #: seconds from its miner's dispatch to the answer, when one arrived
    elapsed_s: float | None


RoundInstruction = (
    StoreEpoch | DispatchEpoch | RecordCommit | RequestReveal | Verify | CloseChallenge
)


__all__ = [
    "AnswerArrived",
    "ChallengeClosed",
    "ChallengeCrashed",
    "ClockStarted",
    "CloseChallenge",
    "DispatchEpoch",
    "EpochNotStored",
    "EpochStored",
    "MinerDispatched",
    "RecordCommit",
    "RequestReveal",
    "RevealArrived",
    "RoundEvent",
    "RoundInstruction",
    "StoreEpoch",
    "StreamEnded",
    "Verified",
    "Verify",
]
