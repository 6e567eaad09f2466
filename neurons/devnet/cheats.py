"""How the devnet's cheating workers lie, and the executor that does it.

A cheating worker is the real worker (``WorkerAgent`` and ``WorkerRuntime`` from ``workers/``)
with :class:`CheatingExecutor` in place of the honest ``ChallengeExecutor``. Nothing in the
production worker knows about cheating: the devnet starts these workers through its own entry
point (:mod:`neurons.devnet.cheat_worker`).

Every mode claims compute that was not done, and every one must be caught by the validator's exact
verification or by its deadline:

============== ========================================================= =======================
mode           what the worker does                                      what the validator sees
============== ========================================================= =======================
fake_rows      computes and commits honestly, but at reveal sends        ``bad_proof``
               made-up rows instead of recomputing the requested ones
skipped_stages computes stage 0, then commits Merkle roots of random     ``wrong_entry``
               rows for every later stage without multiplying anything
copied_roots   claims two devices, computes one and commits its roots    ``wrong_entry`` on the
               for both                                                  copy
phantom_gpu    claims an H100 it does not have and commits random roots  ``impossible_throughput``
               at once; with ``never_commit`` it never answers           (or ``bad_proof``);
                                                                         ``timeout``
============== ========================================================= =======================

Each cheater signs its commitments with its real key, so the rejection is always for the cheat and
never for a bad signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from byteleap.challenge.merkle import build_levels, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import ProverRun, RowOpening, open_rows, row_leaves
from byteleap.crypto import WorkerKey
from byteleap.errors import MalformedMessage, WorkerFailure
from byteleap.protocol.inventory import GpuInfo, Inventory
from byteleap.protocol.worker_link import ChallengeDispatch, GpuCommit, RevealRequest
from byteleap.protocol.worker_link import RowOpening as WireOpening
from workers.agent import MAX_KEPT_RUNS
from workers.backends.base import Abandoned, ComputeBackend, Device
from workers.backends.select import CPU_DEVICE_INDEX
from workers.compute import ChallengeExecutor


class CheatMode(StrEnum):
    FAKE_ROWS = "fake_rows"
    SKIPPED_STAGES = "skipped_stages"
    COPIED_ROOTS = "copied_roots"
    PHANTOM_GPU = "phantom_gpu"


MODES: tuple[CheatMode, ...] = tuple(CheatMode)

#: failure types (``FraudReason`` values, or ``timeout``) the validator may record for each mode
EXPECTED_FAILURES: Mapping[CheatMode, frozenset[str]] = {
    CheatMode.FAKE_ROWS: frozenset({"bad_proof"}),
    CheatMode.SKIPPED_STAGES: frozenset({"wrong_entry"}),
    CheatMode.COPIED_ROOTS: frozenset({"wrong_entry"}),
    CheatMode.PHANTOM_GPU: frozenset({"impossible_throughput", "bad_proof", "timeout"}),
}

DESCRIPTIONS: Mapping[CheatMode, str] = {
    CheatMode.FAKE_ROWS: "reveals made-up rows instead of recomputing them",
    CheatMode.SKIPPED_STAGES: "computes stage 0 only; later roots are of random rows",
    CheatMode.COPIED_ROOTS: "claims two devices, computes one, copies its roots",
    CheatMode.PHANTOM_GPU: "claims an H100 it does not have; commits garbage or never",
}

#: the GPU a phantom worker claims
PHANTOM_MODEL = "NVIDIA H100 80GB HBM3"
PHANTOM_MEMORY_MIB = 81_559
#: seconds a silent phantom waits past the deadline before it gives the challenge up
SILENT_GRACE_S = 1.0


def mode_for(index: int) -> CheatMode:
    """Cheater ``index`` (from 0) cheats in mode ``index mod 4``, so a few cheaters already show
    several kinds of fraud."""
    return MODES[index % len(MODES)]


@dataclass(frozen=True)
class Cheat:
    mode: CheatMode
    #: phantom_gpu only: never commit (a timeout) instead of committing garbage at once
    never_commit: bool = False

    def __post_init__(self) -> None:
        if self.never_commit and self.mode is not CheatMode.PHANTOM_GPU:
            raise ValueError("never_commit applies to phantom_gpu only")

    @property
    def label(self) -> str:
        return f"{self.mode.value} (never commits)" if self.never_commit else self.mode.value


# --------------------------------------------------------------------------- claimed devices


def _derived(worker_pubkey: bytes, purpose: bytes) -> bytes:
    return hashlib.sha256(b"byteleap/devnet/" + purpose + b"/" + worker_pubkey).digest()


def twin_uuid(worker_pubkey: bytes) -> str:
    """The second CPU device a copied_roots worker claims (unique per worker)."""
    return "CPU-" + _derived(worker_pubkey, b"twin").hex()[:32]


def phantom_uuid(worker_pubkey: bytes) -> str:
    """An NVML-looking UUID for the GPU a phantom worker claims."""
    return f"GPU-{uuidlib.UUID(bytes=_derived(worker_pubkey, b'phantom')[:16])}"


def claimed_devices(mode: CheatMode, real: Device, worker_pubkey: bytes) -> list[Device]:
    """The devices the worker advertises: its real CPU device, a twin, or a phantom GPU only."""
    if mode is CheatMode.COPIED_ROOTS:
        twin = Device(uuid=twin_uuid(worker_pubkey), name=real.name, kind="cpu")
        return [real, twin]
    if mode is CheatMode.PHANTOM_GPU:
        phantom = Device(
            uuid=phantom_uuid(worker_pubkey),
            name=PHANTOM_MODEL,
            kind="cuda",
            index=0,
            memory_total_bytes=PHANTOM_MEMORY_MIB * 2**20,
        )
        return [phantom]
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
        )
        for i, device in enumerate(devices)
    ]
    backends = ["cupy"] if any(d.kind == "cuda" for d in devices) else ["numpy"]
    return inventory.model_copy(update={"gpus": gpus, "backends": backends})


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

    ``backend`` is the real NumPy backend: the honest parts of a cheat (stage 0, the copied
    device) run on it. ``claimed`` are the devices the worker advertises."""

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
        if self.cheat.never_commit:
            await self._stay_silent(dispatch)
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

    async def _stay_silent(self, dispatch: ChallengeDispatch) -> None:
        """Hold the challenge past its deadline, then give it up without a commit."""
        until = self.clock() + dispatch.deadline_ms / 1000 + SILENT_GRACE_S
        while not self._halt.is_set():
            if self.clock() >= until:
                break
            await asyncio.sleep(0.05)
        raise Abandoned("phantom GPU: never committed")

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
