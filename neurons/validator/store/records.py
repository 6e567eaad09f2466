"""What the validator stores and reads back: plain records and the store's interface.

The rounds (``neurons/validator``) talk to storage only through :class:`ValidatorStore`; the
SQLAlchemy implementation (:class:`neurons.validator.store.SqlStore`) serves PostgreSQL and SQLite
with the same code. Every datetime is timezone-aware UTC. Worker identities are the worker's
ed25519 public key as 64 lower-case hex characters; miners are ss58 hotkeys; GPUs are NVML UUIDs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from byteleap.chain import NeuronView
from byteleap.challenge.params import ChallengeParams
from byteleap.errors import Outcome
from byteleap.protocol.worker_link.session import WorkerState
from byteleap.scoring import (
    AvailabilityCount,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    LeaseUsage,
    ScoringParams,
)
from byteleap.sessions.round_records import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    WorkerRow,
)

#: a challenge row's life: dispatched -> committed -> closed (with an Outcome)
ChallengeStatus = Literal["dispatched", "committed", "closed"]
WeightStatus = Literal["set", "dry_run", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class MinerRow:
    """A neuron of the subnet as last synced from the metagraph."""

    uid: int
    hotkey: str
    coldkey: str
    stake: float
    validator_permit: bool
    #: ``http://ip:port`` from the neuron's axon; None when it serves nothing
    endpoint: str | None
    #: False once the hotkey left the metagraph (deregistered); its history stays
    registered: bool
    last_synced: datetime
    #: when an inventory poll of this miner last succeeded / last failed (None: never)
    last_poll_ok: datetime | None = None
    last_poll_error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """One worker, as an inventory poll reported it."""

    worker_pubkey: str
    state: WorkerState
    gpus: tuple[GpuSnapshot, ...]
    #: the worker answered heartbeats recently enough for the miner to list it
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class ChallengeRow:
    """A stored challenge of one GPU."""

    challenge_id: str
    miner_hotkey: str
    worker_pubkey: str
    gpu_uuid: str
    gpu_model: str
    params: ChallengeParams
    seed: bytes
    dispatched_at: datetime
    deadline_at: datetime
    status: ChallengeStatus
    committed_at: datetime | None = None
    roots: tuple[bytes, ...] | None = None
    closed_at: datetime | None = None
    outcome: Outcome | None = None
    failure: str | None = None
    detail: str | None = None
    throughput_flops: float | None = None
    elapsed_s: float | None = None
    verify_s: float | None = None


@dataclass(frozen=True, slots=True)
class VerifiedSample:
    """One GPU's verified challenge: a sample for calibrating a model's expected throughput."""

    miner_hotkey: str
    #: the model the GPU claimed when it was challenged
    gpu_model: str
    gpu_uuid: str
    #: validator-measured FLOP/s
    throughput_flops: float
    #: when the challenge was dispatched (None from stores that do not say)
    dispatched_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MinerTally:
    """Challenge outcomes of one miner since a point in time (for devnet and the CLI)."""

    miner_hotkey: str
    by_outcome: dict[str, int]
    #: failure type -> count, over fraud and timeout
    by_failure: dict[str, int]


@dataclass(frozen=True, slots=True)
class ScoringInputs:
    """Everything :func:`byteleap.scoring.compute_weights` needs, read at ``now``."""

    now: datetime
    params: ScoringParams
    #: registered miners' hotkeys (exactly these are scored)
    miners: tuple[str, ...]
    uids: Mapping[str, int]
    challenges: tuple[ChallengeObservation, ...]
    gpu_claims: tuple[GpuClaim, ...]
    availability_counts: tuple[AvailabilityCount, ...]
    lease_intervals: tuple[LeaseInterval, ...] = ()
    lease_usage: tuple[LeaseUsage, ...] = ()
    #: (miner_hotkey, gpu_uuid) -> the distinct UTC hours (truncated, ascending) in which that
    #: GPU had a verified challenge, over max(lease window, availability horizon + 24 h)
    verified_hours: Mapping[tuple[str, str], tuple[datetime, ...]] = field(default_factory=dict)
    #: (miner_hotkey, worker_id) -> the same per worker: the hours behind the availability rule
    #: (a bucket counts only when its worker was verified within 24 h or was leased; SPEC 5.5)
    worker_verified_hours: Mapping[tuple[str, str], tuple[datetime, ...]] = field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class WeightSubmission:
    """One weight vector the validator set (or would have set, or failed to set)."""

    submitted_at: datetime
    status: WeightStatus
    uids: tuple[int, ...]
    weights: tuple[float, ...]
    #: ``WeightResult.to_dict()`` and whatever else explains the vector
    inputs: Mapping[str, Any] = field(default_factory=dict)
    block: int | None = None
    version_key: int | None = None
    reason: str | None = None
    id: int | None = None


class ValidatorStore(Protocol):
    """The validator's storage. Every method is one short transaction; every failure of the
    database raises :class:`byteleap.errors.StorageError` (a transient error: retried, never
    scored against anyone)."""

    # --- metagraph ---------------------------------------------------------------------
    async def sync_miners(self, now: datetime, neurons: Sequence[NeuronView]) -> None:
        """Upsert every neuron by hotkey; hotkeys missing from ``neurons`` become unregistered.
        A uid taken over by a new hotkey is a new miner (history stays with the old hotkey)."""

    async def miners(self, *, registered_only: bool = True) -> list[MinerRow]: ...

    # --- inventory and availability ----------------------------------------------------
    async def record_inventory(
        self,
        now: datetime,
        miner_hotkey: str,
        workers: Sequence[WorkerSnapshot],
        *,
        bucket_seconds: int,
    ) -> None:
        """Store one successful poll: upsert workers and GPUs (a claim keeps its first sighting
        unless it lapsed: unseen for the store's claim expiry, it starts again at ``now``), mark
        the miner's workers absent from ``workers`` offline, and count every healthy worker
        online in ``now``'s availability bucket (idempotent within a bucket)."""

    async def record_poll_failure(self, now: datetime, miner_hotkey: str, error: str) -> None:
        """A poll failed: the miner's workers go offline; no availability is counted."""

    async def workers(self, now: datetime) -> list[WorkerRow]:
        """Every known worker of a registered miner, with what the planner needs; its
        ``conflicted_gpus`` follow the scorer's ownership rule at ``now`` (expired claims
        block nobody; a miner's UUID belongs to the worker that reported it last)."""

    # --- challenges ----------------------------------------------------------------------
    async def open_challenge(self, challenge: ChallengeOpen) -> None:
        """Insert one ``dispatched`` row per GPU before the request leaves."""

    async def open_challenges(self, challenges: Sequence[ChallengeOpen]) -> None:
        """Open a whole epoch at once: the same rows as :meth:`open_challenge` of each, in one
        transaction (all or nothing), inserted in chunks. An empty sequence does nothing."""

    async def record_commit(
        self,
        challenge_id: str,
        committed_at: datetime,
        roots: Mapping[str, Sequence[bytes]],
    ) -> None:
        """The commit arrived: store each GPU's roots; status becomes ``committed``."""

    async def close_challenge(self, verdict: ChallengeVerdict) -> None:
        """Close one GPU's row with its outcome. Closing a closed row raises
        :class:`byteleap.errors.StorageError` (no challenge is scored twice)."""

    async def close_challenges(self, verdicts: Sequence[ChallengeVerdict]) -> None:
        """:meth:`close_challenge` of each verdict (a worker's GPUs together), in one
        transaction. Every row still open is closed and committed; if any verdict named a row
        that is already closed or does not exist, :class:`byteleap.errors.StorageError` is
        raised afterwards, naming them (those rows are left as they were, so repeating a call
        changes nothing). Invalid verdicts raise ``ValueError`` before anything is written."""

    async def verified_throughputs(self, since: datetime) -> list[VerifiedSample]:
        """One sample per GPU row verified and dispatched at or after ``since`` (every miner,
        registered or not), in no particular order: the deadline calibration's input."""

    async def close_in_flight(self, now: datetime, detail: str) -> int:
        """Close every dispatched or committed row as EXCUSED (restart); returns how many."""

    async def challenge(self, challenge_id: str) -> list[ChallengeRow]: ...

    async def recent_challenges(self, limit: int = 50) -> list[ChallengeRow]:
        """The newest rows first."""

    async def tally(self, since: datetime) -> list[MinerTally]: ...

    # --- scoring and weights ---------------------------------------------------------------
    async def scoring_inputs(self, now: datetime, params: ScoringParams) -> ScoringInputs:
        """Read the observations of every window ending at ``now``: challenges from
        ``earliest_challenge_needed`` (``ours`` set from the failure code), all GPU claims of
        registered miners (first and last seen), the verified hours per GPU and per worker,
        availability counts over the horizon aggregated in the database with only verified (or
        leased) buckets counted, and lease intervals/usage."""

    async def record_weights(self, submission: WeightSubmission) -> int:
        """Store one submission with its inputs; returns its id."""

    async def weight_submissions(self, limit: int = 20) -> list[WeightSubmission]:
        """The newest first."""

    # --- housekeeping ------------------------------------------------------------------------
    async def prune(
        self, now: datetime, *, retention: timedelta, availability_retention: timedelta
    ) -> dict[str, int]:
        """Delete closed challenges and weight submissions older than ``retention``, GPU claims
        unseen for longer than ``retention`` (never sooner than the claim expiry), and
        availability older than ``availability_retention``; rows deleted per table."""

    async def ping(self) -> float:
        """Round-trip a trivial query; seconds taken (health and DB-latency metric)."""

    async def close(self) -> None: ...


__all__ = [
    "ChallengeOpen",
    "ChallengeRow",
    "ChallengeStatus",
    "ChallengeVerdict",
    "GpuSnapshot",
    "MinerRow",
    "MinerTally",
    "ScoringInputs",
    "ValidatorStore",
    "VerifiedSample",
    "WeightStatus",
    "WeightSubmission",
    "WorkerRow",
    "WorkerSnapshot",
    "WorkerState",
]
