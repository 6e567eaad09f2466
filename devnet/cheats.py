"""How the devnet's cheating workers lie, and the executor that does it.

A cheating worker is the real worker (``WorkerAgent`` and ``WorkerRuntime`` from ``workers/``)
with :class:`CheatingExecutor` in place of the honest ``ChallengeExecutor``. Nothing in the
production worker knows about cheating: the devnet starts these workers through its own entry
point (:mod:`devnet.cheat_worker`).

Every mode claims compute or hardware it does not have, and every one must be caught by the
validator's exact verification, by its deadline or by its model catalogue:

=============== ======================================================== =======================
mode            what the worker does                                     what the validator sees
=============== ======================================================== =======================
fake_rows       computes and commits honestly, but at reveal sends       ``bad_proof``
                made-up rows instead of recomputing the requested ones
skipped_stages  computes stage 0, then commits Merkle roots of random    ``wrong_entry``
                rows for every later stage without multiplying anything
copied_roots    claims two devices, computes one and commits its roots   ``wrong_entry`` on the
                for both                                                 copy
phantom_gpu     claims an H100 it does not have and commits random roots ``impossible_throughput``
                at once; with ``never_commit`` it never answers          (or ``bad_proof``);
                                                                         ``timeout``
sybil           several workers (on two miners) claim four CPU devices   ``timeout`` for every
                in all and compute every claim honestly, but on ONE      claim that queued
                shared simulated device (a file lock held for each       behind another; only
                whole paced run), so the claims are served one after     the first to finish
                another                                                  can be verified
cpu_as_gpu      a CPU claims an "NVIDIA H200" (GPU- uuid, its memory and ``timeout``: a GPU-sized
                compute capability); it cannot compute a GPU-sized       challenge is never
                challenge and never commits                              answered
ambiguous_model a CPU claims an "NVIDIA GeForce RTX 3090 H200": a name   ``timeout``: sized as a
                that matches two models is ``unknown``; never commits    slow GPU, still far
                                                                         beyond a CPU
late_excuse     answers every challenge with "busy", but only after its  ``timeout``: any answer
                deadline has passed (it never computes)                  after the deadline is
                                                                         one
phantom_busy    one worker lists as many CPU devices as the protocol     ``unexplained_busy``: no
                lets one worker list (``MAX_GPUS``) and always says it   lease explains it; the
                is busy; it never computes. An honest companion worker   phantom earns nothing;
                runs beside it on the same miner                         the companion verifies
receipt_mint    honest workers, but a colluding low-stake validator      its receipts count
                (:mod:`devnet.colluder`) leases them without any only in proportion to
                renter and mints usage receipts the miner countersigns   the colluder's stake
=============== ======================================================== =======================

The first four are *fraud* modes (:data:`FRAUD_MODES`): their cheaters must end with weight 0. A
sybil does real work, so it earns something: at most what the one device it really has earns, so
neither sybil miner may weigh more than an honest miner's weight per device. The two model modes
(:data:`MODEL_MODES`) must end with weight 0 and never be leased.

The last three are *excuse and collusion* modes (SPEC 5.5, "what a miner cannot choose"). A
late_excuse miner must end with weight 0, every late answer a timeout. A phantom_busy miner
earns at most what its one honest device earns: the busy devices must not lift it. A
receipt_mint miner computes honestly and may earn its challenge share, but its lease share may
not exceed the colluding validator's share of the validators' stake. The receipt_mint miner's
workers run the production worker unchanged (the cheat is the colluder's). A phantom_busy miner's
companion computes every challenge honestly, but it is a cheating worker process all the same:
it runs no renters' jobs, and lists its one device as small as a sybil claim
(:data:`COMPANION_DEVICE_MIB`), so the renters (who ask for 1 GiB) never land on it.

Each cheater signs its commitments with its real key, so the rejection is always for the cheat and
never for a bad signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import random
import threading
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from byteleap.challenge.merkle import build_levels, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import ProverRun, RowOpening, open_rows, row_leaves
from byteleap.crypto import WorkerKey
from byteleap.errors import MalformedMessage, WorkerFailure
from byteleap.protocol.common import MAX_GPUS
from byteleap.protocol.inventory import GpuInfo, Inventory
from byteleap.protocol.worker_link import (
    ChallengeDispatch,
    GpuCommit,
    RevealRequest,
    Unavailable,
    WorkerState,
)
from byteleap.protocol.worker_link import RowOpening as WireOpening
from byteleap.sessions.worker_agent import MAX_KEPT_RUNS, Instruction, Send, WorkerAgent
from workers.backends.base import Abandoned, ComputeBackend, Device
from workers.backends.select import CPU_DEVICE_INDEX
from workers.compute import ChallengeExecutor


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


# --------------------------------------------------------------------------- claimed devices


def _derived(worker_pubkey: bytes, purpose: bytes) -> bytes:
    return hashlib.sha256(b"byteleap/devnet/" + purpose + b"/" + worker_pubkey).digest()


def twin_uuid(worker_pubkey: bytes) -> str:
    """The second CPU device a copied_roots worker claims (unique per worker)."""
    return "CPU-" + _derived(worker_pubkey, b"twin").hex()[:32]


def phantom_uuid(worker_pubkey: bytes) -> str:
    """An NVML-looking UUID for the GPU a phantom worker claims."""
    return f"GPU-{uuidlib.UUID(bytes=_derived(worker_pubkey, b'phantom')[:16])}"


def fake_gpu_uuid(worker_pubkey: bytes, mode: CheatMode) -> str:
    """An NVML-looking UUID for the GPU a cpu_as_gpu or ambiguous_model worker claims."""
    purpose = b"gpu/" + mode.value.encode()
    return f"GPU-{uuidlib.UUID(bytes=_derived(worker_pubkey, purpose)[:16])}"


def sybil_uuid(worker_pubkey: bytes, claim: int) -> str:
    """The CPU device a sybil worker claims as its ``claim``-th (from 1; claim 0 is its own)."""
    return "CPU-" + _derived(worker_pubkey, b"sybil/%d" % claim).hex()[:32]


def phantom_busy_uuid(worker_pubkey: bytes, claim: int) -> str:
    """The ``claim``-th CPU device a phantom_busy worker lists (from 1; claim 0 is its own)."""
    return "CPU-" + _derived(worker_pubkey, b"busy/%d" % claim).hex()[:32]


def _gpu(uuid: str, name: str, memory_mib: int) -> Device:
    return Device(uuid=uuid, name=name, kind="cuda", index=0, memory_total_bytes=memory_mib * 2**20)


def claimed_devices(
    mode: CheatMode, real: Device, worker_pubkey: bytes, *, claims: int = 1, companion: bool = False
) -> list[Device]:
    """The devices the worker advertises: its real CPU device, a twin, several sybil or
    phantom_busy claims, or a GPU it does not have."""
    if mode is CheatMode.COPIED_ROOTS:
        twin = Device(uuid=twin_uuid(worker_pubkey), name=real.name, kind="cpu")
        return [real, twin]
    if mode is CheatMode.PHANTOM_GPU:
        return [_gpu(phantom_uuid(worker_pubkey), PHANTOM_MODEL, PHANTOM_MEMORY_MIB)]
    if mode is CheatMode.CPU_AS_GPU:
        return [_gpu(fake_gpu_uuid(worker_pubkey, mode), CPU_AS_GPU_MODEL, CPU_AS_GPU_MEMORY_MIB)]
    if mode is CheatMode.AMBIGUOUS_MODEL:
        return [_gpu(fake_gpu_uuid(worker_pubkey, mode), AMBIGUOUS_MODEL, AMBIGUOUS_MEMORY_MIB)]
    if mode is CheatMode.SYBIL:
        shared = replace(real, memory_total_bytes=SYBIL_DEVICE_MIB * 2**20)
        extra = [replace(shared, uuid=sybil_uuid(worker_pubkey, i)) for i in range(1, claims)]
        return [shared, *extra]
    if mode is CheatMode.PHANTOM_BUSY and companion:
        return [replace(real, memory_total_bytes=COMPANION_DEVICE_MIB * 2**20)]
    if mode is CheatMode.PHANTOM_BUSY:
        listed = [replace(real, uuid=phantom_busy_uuid(worker_pubkey, i)) for i in range(1, claims)]
        return [real, *listed]
    return [real]


def claimed_inventory(inventory: Inventory, devices: Sequence[Device]) -> Inventory:
    """``inventory`` (the host's real facts) listing exactly ``devices`` as its GPUs."""
    host_mib = inventory.host.memory_total_bytes // 2**20

    def index(i: int, device: Device) -> int:
        # a CPU device has no NVML index; take the top of the range, as the honest worker does
        return device.index if device.index is not None else CPU_DEVICE_INDEX - i

    gpus = [
        GpuInfo(
            index=index(i, device),
            name=device.name[:64],
            uuid=device.uuid,
            memory_total_mib=(device.memory_total_bytes or 0) // 2**20 or host_mib,
            compute_capability=CAPABILITIES.get(device.name),
        )
        for i, device in enumerate(devices)
    ]
    backends = ["cupy"] if any(d.kind == "cuda" for d in devices) else ["numpy"]
    return inventory.model_copy(update={"gpus": gpus, "backends": backends})


# --------------------------------------------------------------------------- always busy


class AlwaysBusyAgent(WorkerAgent):
    """The real worker agent, except that it says "busy" in every heartbeat and refuses every
    challenge as busy at once, without computing (phantom_busy). It still takes a lease, and
    then says "leased", as the honest agent does."""

    @property
    def state(self) -> WorkerState:
        return "leased" if self.lease is not None else "busy"

    def _dispatch(self, dispatch: ChallengeDispatch) -> list[Instruction]:
        busy = Unavailable(challenge_id=dispatch.challenge_id, leased=self.lease is not None)
        return [Send(busy)]


# --------------------------------------------------------------------------- the shared device


class SharedDevice:
    """The one simulated device behind every claim of a sybil: a file lock (``fcntl.flock``)
    held for the whole paced run of one claim, so claims in any process or thread are served one
    after another.

    Each hold opens the file anew (its own open file description), so two holders in one process
    exclude each other as two processes do. While it holds the lock, a holder appends one JSON
    line to the same file: the claim, the challenge, and when the device began and ended serving
    it (wall clock), so a test can tell which claim was served first."""

    def __init__(self, path: Path, *, poll_s: float = LOCK_POLL_S) -> None:
        self.path = path
        self.poll_s = poll_s

    @contextlib.contextmanager
    def serving(
        self, claim: str, challenge_id: str, should_stop: Callable[[], bool] | None = None
    ) -> Iterator[None]:
        """Hold the device while the body runs; raises Abandoned if stopped while waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if should_stop is not None and should_stop():
                        raise Abandoned("stopped while waiting for the shared device") from None
                    time.sleep(self.poll_s)
            try:
                began = time.time()
                yield
                entry = {
                    "claim": claim,
                    "challenge_id": challenge_id,
                    "pid": os.getpid(),
                    "began": began,
                    "ended": time.time(),
                }
                handle.write(json.dumps(entry) + "\n")
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ledger(self) -> list[dict[str, Any]]:
        """Every run the device served, in the order it served them."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- evidence


Reveal = Callable[[int, Sequence[int]], list[RowOpening]]


@dataclass(frozen=True)
class Evidence:
    """What a worker committed for one device, and how it answers a reveal of it."""

    roots: tuple[bytes, ...]
    stage_seconds: tuple[float, ...]
    reveal: Reveal


def _numbers(params: ChallengeParams, rng: random.Random, shape: tuple[int, ...]) -> Any:
    """Random int32 values in the range an honest product can take (so nothing looks odd
    before the exact check)."""
    bound = params.k * params.v * params.v
    generator = np.random.default_rng(rng.getrandbits(64))
    return generator.integers(-bound, bound + 1, size=shape, dtype=np.int32).astype("<i4")


def honest_evidence(run: ProverRun) -> Evidence:
    """An honest run's evidence. Committed under another device's UUID, it is a copied root."""
    return Evidence(
        tuple(run.roots),
        tuple(run.stage_seconds),
        lambda stage, rows: open_rows(run, stage, rows),
    )


def fake_rows_evidence(run: ProverRun, rng: random.Random) -> Evidence:
    """Honest roots; the revealed rows are made up (with the honest Merkle paths)."""
    params = run.params

    def reveal(stage: int, rows: Sequence[int]) -> list[RowOpening]:
        levels = build_levels(run.leaves[stage])
        made_up = _numbers(params, rng, (len(rows), params.n))
        return [
            RowOpening(stage, row, made_up[i].tobytes(), proof(levels, row))
            for i, row in enumerate(rows)
        ]

    return Evidence(tuple(run.roots), tuple(run.stage_seconds), reveal)


def skipped_stages_evidence(
    first: ProverRun, params: ChallengeParams, rng: random.Random
) -> Evidence:
    """``first`` computed stage 0 honestly; every later stage commits random rows instead."""
    run = ProverRun(
        binding=first.binding,
        seed=first.seed,
        params=params,
        roots=list(first.roots[:1]),
        leaves=list(first.leaves[:1]),
        stage_seconds=list(first.stage_seconds[:1]),
    )
    made_up: dict[int, Any] = {}
    for stage in range(1, params.stages):
        product = _numbers(params, rng, (params.m, params.n))
        made_up[stage] = product
        leaves = row_leaves(stage, product)
        run.leaves.append(leaves)
        run.roots.append(build_levels(leaves)[-1][0])
        run.stage_seconds.append(0.0)

    def reveal(stage: int, rows: Sequence[int]) -> list[RowOpening]:
        if stage == 0:
            return open_rows(run, 0, rows)
        values = {row: made_up[stage][row].tobytes() for row in rows}
        return open_rows(run, stage, rows, values=values)

    return Evidence(tuple(run.roots), tuple(run.stage_seconds), reveal)


def phantom_evidence(params: ChallengeParams, rng: random.Random) -> Evidence:
    """Random roots, committed without any work; a reveal gets zero rows and random paths."""
    roots = tuple(rng.randbytes(32) for _ in range(params.stages))

    def reveal(stage: int, rows: Sequence[int]) -> list[RowOpening]:
        return [
            RowOpening(
                stage,
                row,
                bytes(4 * params.n),
                tuple(rng.randbytes(32) for _ in range(params.depth)),
            )
            for row in rows
        ]

    return Evidence(roots, (0.0,) * params.stages, reveal)


# --------------------------------------------------------------------------- the executor


class CheatingExecutor(ChallengeExecutor):
    """A ``ChallengeExecutor`` that commits and reveals as :class:`Cheat` says.

    ``backend`` is the real NumPy backend (paced, in the devnet): the honest parts of a cheat
    (stage 0, the copied device, every sybil claim) run on it. ``claimed`` are the devices the
    worker advertises."""

    def __init__(
        self,
        backend: ComputeBackend,
        key: WorkerKey,
        *,
        clock: Callable[[], float],
        cheat: Cheat,
        claimed: Sequence[Device],
        rng: random.Random | None = None,
        keep: int = MAX_KEPT_RUNS,
    ) -> None:
        super().__init__(backend, key, clock=clock, keep=keep)
        self.cheat = cheat
        self.claimed = tuple(claimed)
        self.rng = rng or random.Random()
        #: sybil only: the device every claim of the sybil shares
        self.shared = SharedDevice(cheat.device_lock) if cheat.device_lock is not None else None
        self._halt = threading.Event()
        self._committed: OrderedDict[str, dict[str, Evidence]] = OrderedDict()

    def devices(self) -> dict[str, Device]:
        return {device.uuid: device for device in self.claimed}

    def stop(self) -> None:
        self._halt.set()
        super().stop()

    async def run(self, dispatch: ChallengeDispatch, miner_hotkey: str) -> tuple[GpuCommit, ...]:
        self._halt.clear()
        missing = [uuid for uuid in dispatch.gpu_uuids if uuid not in self.devices()]
        if missing:
            raise MalformedMessage(f"no device {', '.join(missing)} on this worker")
        if self.cheat.silent:
            # a cpu_as_gpu or ambiguous_model worker cannot compute a GPU-sized challenge, and
            # does not try (it would only burn the devnet's CPU): it never commits
            await self._hold(dispatch, SILENT_GRACE_S, "never committed")
        if self.cheat.mode is CheatMode.LATE_EXCUSE:
            # "busy", but only once the deadline has passed: the agent answers an abandoned
            # challenge with Unavailable (busy), and the miner passes that on as the excuse
            await self._hold(dispatch, LATE_EXCUSE_S, "busy, after the deadline")
        if self.cheat.always_busy:
            # the agent refuses every challenge of an always-busy worker before it gets here
            raise Abandoned(f"{self.cheat.mode.value}: busy")
        evidence = await asyncio.to_thread(self._prove, dispatch, miner_hotkey)
        self._committed[dispatch.challenge_id] = evidence
        while len(self._committed) > self.keep:
            self._committed.popitem(last=False)
        return tuple(
            GpuCommit.create(
                self.key,
                dispatch.challenge_id,
                uuid,
                evidence[uuid].roots,
                [seconds * 1e3 for seconds in evidence[uuid].stage_seconds],
            )
            for uuid in dispatch.gpu_uuids
        )

    async def open(self, request: RevealRequest) -> tuple[WireOpening, ...]:
        evidence = self._committed.get(request.challenge_id)
        if evidence is None:
            raise WorkerFailure(f"challenge {request.challenge_id} is no longer kept")

        def all_rows() -> list[WireOpening]:
            return [
                WireOpening(
                    gpu_uuid=want.gpu_uuid,
                    stage=got.stage,
                    row=got.row,
                    values=got.values,
                    proof=b"".join(got.proof),
                )
                for want in request.openings
                for got in evidence[want.gpu_uuid].reveal(want.stage, want.rows)
            ]

        return tuple(await asyncio.to_thread(all_rows))

    async def _hold(self, dispatch: ChallengeDispatch, past_s: float, why: str) -> None:
        """Hold the challenge until ``past_s`` after its deadline (or a stop), then give it up
        without a commit: the agent answers "busy"."""
        until = self.clock() + dispatch.deadline_ms / 1000 + past_s
        while not self._halt.is_set():
            remaining = until - self.clock()
            if remaining <= 0:
                break
            await asyncio.sleep(min(0.05, remaining))
        raise Abandoned(f"{self.cheat.mode.value}: {why}")

    def _prove(self, dispatch: ChallengeDispatch, miner_hotkey: str) -> dict[str, Evidence]:
        real = self.backend.devices()[0]
        params = dispatch.params

        def compute(gpu_uuid: str, params: ChallengeParams) -> ProverRun:
            binding = Binding(
                miner_hotkey=miner_hotkey, worker_pubkey=self.key.public_key, gpu_uuid=gpu_uuid
            )
            return self.backend.run(
                real,
                binding,
                dispatch.seed,
                params,
                clock=self.clock,
                should_stop=self._halt.is_set,
            )

        uuids = dispatch.gpu_uuids
        match self.cheat.mode:
            case CheatMode.FAKE_ROWS:
                return {u: fake_rows_evidence(compute(u, params), self.rng) for u in uuids}
            case CheatMode.SKIPPED_STAGES:
                first_stage = params.model_copy(update={"stages": 1})
                return {
                    u: skipped_stages_evidence(compute(u, first_stage), params, self.rng)
                    for u in uuids
                }
            case CheatMode.COPIED_ROOTS:
                # one real computation, bound to the real device, committed for every device
                computed = honest_evidence(compute(real.uuid, params))
                return dict.fromkeys(uuids, computed)
            case CheatMode.PHANTOM_GPU:
                return {u: phantom_evidence(params, self.rng) for u in uuids}
            case CheatMode.PHANTOM_BUSY if self.cheat.companion:
                return {u: honest_evidence(compute(u, params)) for u in uuids}
            case CheatMode.SYBIL:
                # every claim honestly, one after another, each holding the one shared device
                # for its whole (paced) run
                assert self.shared is not None
                evidence = {}
                for u in uuids:
                    with self.shared.serving(u, dispatch.challenge_id, self._halt.is_set):
                        evidence[u] = honest_evidence(compute(u, params))
                return evidence
            case _:  # pragma: no cover - these modes return or raise before computing
                raise Abandoned(f"{self.cheat.mode.value}: never computes")
