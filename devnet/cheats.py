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
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from byteleap.challenge.merkle import build_levels, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import OpenedRow, ProverRun, open_rows, row_leaves
from byteleap.crypto import WorkerKey
from byteleap.errors import MalformedMessage, WorkerFailure
from byteleap.protocol.worker_link.challenges import ChallengeDispatch, GpuCommit, RevealRequest
from byteleap.protocol.worker_link.challenges import RowOpening as WireOpening
from byteleap.sessions.worker_agent import MAX_KEPT_RUNS
from devnet.cheat_devices import SharedDevice
from devnet.cheat_modes import (
    LATE_EXCUSE_S,
    SILENT_GRACE_S,
    Cheat,
    CheatMode,
)
from workers.backends.base import Abandoned, ComputeBackend, Device
from workers.compute import ChallengeExecutor

# --------------------------------------------------------------------------- evidence


RevealRows = Callable[[int, Sequence[int]], list[OpenedRow]]


@dataclass(frozen=True)
class Evidence:
    """What a worker committed for one device, and how it answers a reveal of it."""

    roots: tuple[bytes, ...]
    stage_seconds: tuple[float, ...]
    reveal: RevealRows


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

    def reveal(stage: int, rows: Sequence[int]) -> list[OpenedRow]:
        levels = build_levels(run.leaves[stage])
        made_up = _numbers(params, rng, (len(rows), params.n))
        return [
            OpenedRow(stage, row, made_up[i].tobytes(), proof(levels, row))
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

    def reveal(stage: int, rows: Sequence[int]) -> list[OpenedRow]:
        if stage == 0:
            return open_rows(run, 0, rows)
        values = {row: made_up[stage][row].tobytes() for row in rows}
        return open_rows(run, stage, rows, values=values)

    return Evidence(tuple(run.roots), tuple(run.stage_seconds), reveal)


def phantom_evidence(params: ChallengeParams, rng: random.Random) -> Evidence:
    """Random roots, committed without any work; a reveal gets zero rows and random paths."""
    roots = tuple(rng.randbytes(32) for _ in range(params.stages))

    def reveal(stage: int, rows: Sequence[int]) -> list[OpenedRow]:
        return [
            OpenedRow(
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
