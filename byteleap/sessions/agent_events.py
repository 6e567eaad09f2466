"""What goes into the worker's :class:`~byteleap.sessions.worker_agent.WorkerAgent` (events:
the link, the clock, the compute's results) and what it hands back (instructions for the
runtime)."""

from __future__ import annotations

from dataclasses import dataclass, field

from byteleap.errors import ByteLeapError
from byteleap.protocol.common import Message
from byteleap.protocol.inventory import Inventory
from byteleap.protocol.worker_link.challenges import (
    ChallengeDispatch,
    GpuCommit,
    RevealRequest,
    RowOpening,
)
from byteleap.protocol.worker_link.jobs import JobRequest

# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Connected:
    now: float


@dataclass(frozen=True)
class Disconnected:
    now: float
    reason: str = ""


@dataclass(frozen=True)
class Received:
    """Raw bytes or text from the miner (decoding happens here, so it is tested here)."""

    data: bytes | str
    now: float


@dataclass(frozen=True)
class AgentTick:
    now: float


@dataclass(frozen=True)
class InventoryChanged:
    inventory: Inventory


@dataclass(frozen=True)
class ChallengeFinished:
    """The compute for a challenge ended: ``commits`` on success, ``error`` otherwise."""

    challenge_id: str
    commits: tuple[GpuCommit, ...] = ()
    error: ByteLeapError | None = None
    abandoned: bool = False


@dataclass(frozen=True)
class RowsOpened:
    challenge_id: str
    openings: tuple[RowOpening, ...] = ()
    error: ByteLeapError | None = None


AgentEvent = (
    Connected
    | Disconnected
    | Received
    | AgentTick
    | InventoryChanged
    | ChallengeFinished
    | RowsOpened
)


# --------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Send:
    message: Message


@dataclass(frozen=True)
class RunChallenge:
    dispatch: ChallengeDispatch


@dataclass(frozen=True)
class OpenRows:
    request: RevealRequest


@dataclass(frozen=True)
class StopChallenge:
    """Abandon the running challenge (a lease started, or we are shutting down)."""

    challenge_id: str


@dataclass(frozen=True)
class HandleJob:
    """Give a job request to the job manager and send its answer. ``gpu_uuids`` are the lease's
    GPUs (for a submit; empty otherwise)."""

    request: JobRequest
    gpu_uuids: tuple[str, ...] = ()


@dataclass(frozen=True)
class CancelJobs:
    """Cancel the unfinished jobs of ``lease_id`` (of every lease when ``None``)."""

    lease_id: str | None


@dataclass(frozen=True)
class PurgeJobs:
    """Discard the finished jobs (and their files) of every lease except ``keep_lease``."""

    keep_lease: str


@dataclass(frozen=True)
class CloseLink:
    reason: str


@dataclass(frozen=True)
class LogEvent:
    """Something an operator should see; ``level`` is a logging level name."""

    level: str
    event: str
    fields: dict[str, object] = field(default_factory=dict)


AgentInstruction = (
    Send
    | RunChallenge
    | OpenRows
    | StopChallenge
    | HandleJob
    | CancelJobs
    | PurgeJobs
    | CloseLink
    | LogEvent
)


__all__ = [
    "AgentEvent",
    "AgentInstruction",
    "AgentTick",
    "CancelJobs",
    "ChallengeFinished",
    "CloseLink",
    "Connected",
    "Disconnected",
    "HandleJob",
    "InventoryChanged",
    "LogEvent",
    "OpenRows",
    "PurgeJobs",
    "Received",
    "RowsOpened",
    "RunChallenge",
    "Send",
    "StopChallenge",
]
