"""The plain records a challenge round reads and writes: the workers the planner sees, and the
rows a round stores when it opens a challenge and when it closes one.

They live in the pure core because the round's state machines (:mod:`.round_planner`,
:mod:`.epoch_round`) take and return them; the validator's store
(``neurons.validator.store.records``) stores and reads back the same types. Every datetime is
timezone-aware UTC; workers are 64 hex characters of their ed25519 public key, miners are ss58
hotkeys, GPUs are NVML UUIDs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from byteleap.challenge.params import ChallengeParams
from byteleap.challenge.verify import StageSample
from byteleap.errors import FraudReason, Outcome, VerificationFailed
from byteleap.protocol.worker_link.session import WorkerState


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """One GPU of a worker, as an inventory poll reported it."""

    uuid: str
    model: str
    memory_mib: int
    #: CUDA compute capability as the worker reports it (``"major.minor"``, e.g. ``"9.0"``);
    #: None when it was not reported. One that contradicts the model catalogue makes the GPU
    #: unverifiable (SPEC 4.5).
    compute_capability: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker as the challenge planner sees it."""

    miner_hotkey: str
    miner_uid: int
    endpoint: str | None
    worker_pubkey: str
    state: WorkerState
    #: listed, and healthy, in the miner's most recent successful poll
    online: bool
    last_seen: datetime
    gpus: tuple[GpuSnapshot, ...]
    #: GPUs of this worker that another miner or worker claimed first (never challenged)
    conflicted_gpus: frozenset[str] = frozenset()
    #: dispatch time of this worker's newest challenge (any outcome); None when never challenged
    last_challenge_at: datetime | None = None
    #: a challenge of this worker is dispatched or committed and not yet closed
    in_flight: bool = False


@dataclass(frozen=True, slots=True)
class ChallengeOpen:
    """A challenge about to be dispatched: one row per challenged GPU."""

    challenge_id: str
    miner_hotkey: str
    worker_pubkey: str
    gpu_uuids: tuple[str, ...]
    #: the model each GPU claimed when it was challenged (for the throughput check)
    gpu_models: Mapping[str, str]
    params: ChallengeParams
    seed: bytes
    dispatched_at: datetime
    deadline_at: datetime


@dataclass(frozen=True, slots=True)
class ChallengeVerdict:
    """How one GPU's challenge ended."""

    challenge_id: str
    gpu_uuid: str
    closed_at: datetime
    outcome: Outcome
    #: FraudReason value for fraud; the error code (``timeout``, ``link``, ...) otherwise
    failure: str | None = None
    detail: str | None = None
    #: validator-measured FLOP/s; required for VERIFIED
    throughput_flops: float | None = None
    #: seconds from dispatch to commit, when a commit arrived
    elapsed_s: float | None = None
    #: seconds the verification itself took (process pool)
    verify_s: float | None = None
    #: number of entries checked exactly
    checked_entries: int | None = None


#: (stage, row, values, proof as concatenated 32-byte siblings), as the wire carries it
WireOpening = tuple[int, int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class VerifyJob:
    """Everything needed to verify one GPU's reveal (plain and picklable: it goes to the
    verifier's process pool, ``neurons.validator.verification``)."""

    miner_hotkey: str
    worker_pubkey: bytes
    gpu_uuid: str
    seed: bytes
    params: ChallengeParams
    roots: tuple[bytes, ...]
    samples: tuple[StageSample, ...]
    openings: tuple[WireOpening, ...]
    #: False: Merkle paths, shapes and the set of openings only, not the entries
    #: (``verify_openings(entries=False)``)
    entries: bool = True


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """How one GPU's verification ended: ``reason`` is None when every check passed."""

    checked_entries: int
    seconds: float
    reason: FraudReason | None = None
    detail: str | None = None

    @property
    def verified(self) -> bool:
        return self.reason is None

    def error(self) -> VerificationFailed | None:
        """The fraud as the error tree's exception (None when verified)."""
        if self.reason is None:
            return None
        exc = VerificationFailed(self.reason)
        if self.detail:
            exc.args = (self.detail,)
        return exc


__all__ = [
    "ChallengeOpen",
    "ChallengeVerdict",
    "GpuSnapshot",
    "VerifyJob",
    "VerifyReport",
    "WireOpening",
    "WorkerRow",
]
