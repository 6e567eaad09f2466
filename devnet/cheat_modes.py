"""The devnet's cheat modes: what each one does, which failures the validators must find for it,
the models and sizes its claimed devices report, and a cheating worker's settings
(:class:`Cheat`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from byteleap.protocol.common import MAX_GPUS


class CheatMode(StrEnum):
    FAKE_ROWS = "fake_rows"
    SKIPPED_STAGES = "skipped_stages"
    COPIED_ROOTS = "copied_roots"
    PHANTOM_GPU = "phantom_gpu"
    SYBIL = "sybil"
    CPU_AS_GPU = "cpu_as_gpu"
    AMBIGUOUS_MODEL = "ambiguous_model"
    LATE_EXCUSE = "late_excuse"
    PHANTOM_BUSY = "phantom_busy"
    RECEIPT_MINT = "receipt_mint"


#: every mode (``byteleap devnet --cheat MODE``)
MODES: tuple[CheatMode, ...] = tuple(CheatMode)


#: the modes whose every challenge is fraud or a timeout: their cheaters end with weight 0.
#: ``--cheaters N`` takes these in turn
FRAUD_MODES: tuple[CheatMode, ...] = (
    CheatMode.FAKE_ROWS,
    CheatMode.SKIPPED_STAGES,
    CheatMode.COPIED_ROOTS,
    CheatMode.PHANTOM_GPU,
)


#: the modes that claim a GPU model a CPU cannot answer for: weight 0, never leased
MODEL_MODES: tuple[CheatMode, ...] = (CheatMode.CPU_AS_GPU, CheatMode.AMBIGUOUS_MODEL)


#: the modes whose workers never commit (the validator records a timeout)
SILENT_MODES: frozenset[CheatMode] = frozenset(MODEL_MODES)


#: the modes that test SPEC 5.5 (excuses, busy claims, receipts of a colluding validator)
EXCUSE_MODES: tuple[CheatMode, ...] = (
    CheatMode.LATE_EXCUSE,
    CheatMode.PHANTOM_BUSY,
    CheatMode.RECEIPT_MINT,
)


#: the cheating miners that may earn something, within a bound their check states (a sybil's
#: one real device, a phantom_busy miner's honest worker, a receipt_mint miner's honest compute)
BOUNDED_MODES: frozenset[CheatMode] = frozenset(
    {CheatMode.SYBIL, CheatMode.PHANTOM_BUSY, CheatMode.RECEIPT_MINT}
)


#: the modes without a cheating worker process: every worker of a receipt_mint miner runs the
#: production ``byteleap-worker``
HONEST_WORKER_MODES: frozenset[CheatMode] = frozenset({CheatMode.RECEIPT_MINT})


#: a worker still holding an earlier challenge (a silent one past its deadline, a sybil's queued
#: claims) answers the next epoch's "busy", and no lease explains that: a missed challenge
_STILL_BUSY = "unexplained_busy"


#: failure types (``FraudReason`` values, ``timeout`` or ``unexplained_busy``) the validator may
#: record for each mode with one validator. With several, any worker, honest or not, can also be
#: found busy with another validator's challenge (``unexplained_busy``)
EXPECTED_FAILURES: Mapping[CheatMode, frozenset[str]] = {
    CheatMode.FAKE_ROWS: frozenset({"bad_proof"}),
    CheatMode.SKIPPED_STAGES: frozenset({"wrong_entry"}),
    CheatMode.COPIED_ROOTS: frozenset({"wrong_entry"}),
    CheatMode.PHANTOM_GPU: frozenset(
        {"impossible_throughput", "bad_proof", "timeout", _STILL_BUSY}
    ),
    CheatMode.SYBIL: frozenset({"timeout", _STILL_BUSY}),
    CheatMode.CPU_AS_GPU: frozenset({"timeout", _STILL_BUSY}),
    CheatMode.AMBIGUOUS_MODEL: frozenset({"timeout", _STILL_BUSY}),
    # a late excuse is a timeout; with several validators, one validator's challenge may also
    # find the worker still "busy" holding another's (no lease explains that either)
    CheatMode.LATE_EXCUSE: frozenset({"timeout", "unexplained_busy"}),
    CheatMode.PHANTOM_BUSY: frozenset({"unexplained_busy", "timeout"}),
    # honest compute: only what can befall an honest worker
    CheatMode.RECEIPT_MINT: frozenset({"timeout", "unexplained_busy"}),
}


DESCRIPTIONS: Mapping[CheatMode, str] = {
    CheatMode.FAKE_ROWS: "reveals made-up rows instead of recomputing them",
    CheatMode.SKIPPED_STAGES: "computes stage 0 only; later roots are of random rows",
    CheatMode.COPIED_ROOTS: "claims two devices, computes one, copies its roots",
    CheatMode.PHANTOM_GPU: "claims an H100 it does not have; commits garbage or never",
    CheatMode.SYBIL: "two miners, three workers, four claims, one shared device",
    CheatMode.CPU_AS_GPU: "a CPU claiming an NVIDIA H200; never commits",
    CheatMode.AMBIGUOUS_MODEL: "a CPU claiming an 'RTX 3090 H200' (unknown model); never commits",
    CheatMode.LATE_EXCUSE: "answers every challenge 'busy', after its deadline; never computes",
    CheatMode.PHANTOM_BUSY: f"one worker lists {MAX_GPUS} devices, always busy; one honest beside",
    CheatMode.RECEIPT_MINT: "honest workers; a colluding validator mints receipts for them",
}


#: the GPU a phantom worker claims
PHANTOM_MODEL = "NVIDIA H100 80GB HBM3"


PHANTOM_MEMORY_MIB = 81_559


#: the GPU a cpu_as_gpu worker claims: a real model, with its memory and compute capability
CPU_AS_GPU_MODEL = "NVIDIA H200"


CPU_AS_GPU_MEMORY_MIB = 143_771


#: a name that matches two catalogue models (so the validator calls it ``unknown``)
AMBIGUOUS_MODEL = "NVIDIA GeForce RTX 3090 H200"


AMBIGUOUS_MEMORY_MIB = 24_576


#: the compute capability each claimed GPU model reports
CAPABILITIES: Mapping[str, str] = {CPU_AS_GPU_MODEL: "9.0", AMBIGUOUS_MODEL: "8.6"}


#: seconds a silent worker waits past the deadline before it gives the challenge up
SILENT_GRACE_S = 1.0


#: memory every sybil claim reports: the one small simulated device they share
SYBIL_DEVICE_MIB = 512


#: how the sybil's claims are spread: workers of the first miner, then of the second
SYBIL_CLAIMS: tuple[tuple[int, ...], ...] = ((2, 1), (1,))


#: seconds between two tries at the shared device's lock
LOCK_POLL_S = 0.005


#: seconds past a challenge's deadline (as the worker received it) a late_excuse worker says
#: "busy": well inside the miner's own wait (the deadline plus half a second), so the excuse
#: reaches the validator as an excuse, and always after the validator's deadline, which runs
#: from the epoch's first dispatch, before the worker got the challenge
LATE_EXCUSE_S = 0.2


#: the devices a phantom_busy worker lists: the most one worker's inventory may hold
PHANTOM_BUSY_CLAIMS = MAX_GPUS


#: memory the honest companion of a phantom_busy worker lists for its one device
COMPANION_DEVICE_MIB = SYBIL_DEVICE_MIB


def mode_for(index: int) -> CheatMode:
    """Cheater ``index`` (from 0) of ``--cheaters`` cheats in fraud mode ``index mod 4``, so a few
    cheaters already show several kinds of fraud."""
    return FRAUD_MODES[index % len(FRAUD_MODES)]


@dataclass(frozen=True)
class Cheat:
    mode: CheatMode
    #: phantom_gpu only: never commit (a timeout) instead of committing garbage at once
    never_commit: bool = False
    #: sybil and phantom_busy only: how many devices this worker claims
    claims: int = 1
    #: sybil only: the lock file of the one device every claim of the sybil shares
    device_lock: Path | None = None
    #: phantom_busy only: the honest worker beside the busy one (computes honestly, one device)
    companion: bool = False

    def __post_init__(self) -> None:
        if self.mode in HONEST_WORKER_MODES:
            raise ValueError(f"{self.mode.value} runs no cheating worker")
        if self.never_commit and self.mode is not CheatMode.PHANTOM_GPU:
            raise ValueError("never_commit applies to phantom_gpu only")
        if self.claims < 1:
            raise ValueError("a worker claims at least one device")
        if self.claims > MAX_GPUS:
            raise ValueError(f"a worker lists at most {MAX_GPUS} devices")
        if self.mode is CheatMode.SYBIL:
            if self.device_lock is None:
                raise ValueError("a sybil worker needs the shared device's lock file")
        elif self.device_lock is not None:
            raise ValueError("device_lock applies to sybil only")
        elif self.claims != 1 and self.mode is not CheatMode.PHANTOM_BUSY:
            raise ValueError("claims apply to sybil and phantom_busy only")
        if self.companion and (self.mode is not CheatMode.PHANTOM_BUSY or self.claims != 1):
            raise ValueError("a companion is phantom_busy's honest worker, with one device")

    @property
    def silent(self) -> bool:
        """Whether this worker never commits."""
        return self.never_commit or self.mode in SILENT_MODES

    @property
    def always_busy(self) -> bool:
        """Whether this worker says "busy" in every heartbeat (and to every challenge)."""
        return self.mode is CheatMode.PHANTOM_BUSY and not self.companion

    @property
    def label(self) -> str:
        if self.never_commit:
            return f"{self.mode.value} (never commits)"
        if self.companion:
            return f"{self.mode.value} (honest companion)"
        if self.mode in (CheatMode.SYBIL, CheatMode.PHANTOM_BUSY):
            return f"{self.mode.value} ({self.claims} claim{'s' if self.claims > 1 else ''})"
        return self.mode.value
