"""The CPU backend: the NumPy reference prover, with reused buffers and every core.

**Pacing** (``compute.pace_flops``, development only). A CPU shared by a dozen devnet processes
gives no stable timings, so the devnet makes every NumPy device behave like a device of one fixed
speed: stage ``t`` of a run does not end before ``(t + 1) x stage FLOP / pace_flops`` seconds after
the run began. The backend computes, then sleeps for what is left (this runs in a worker thread,
so a plain sleep), so a whole run takes at least ``R x 2mnk / pace_flops`` seconds, and a
stage that computed slowly is made up by the sleeps after it. A stop request is honoured while
sleeping, as between stages.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from byteleap.aliases import Clock
from byteleap.challenge.generate import matrix_a, matrix_b
from byteleap.challenge.merkle import build_levels
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import (
    OpenedRow,
    ProverRun,
    Workspace,
    compute_stage,
    open_rows,
)
from byteleap.errors import WorkerFailure
from workers.backends.base import Abandoned, Device, ShouldStop

#: the longest single sleep while pacing, so a stop request is seen within it
PACE_SLICE_S = 0.05


def cpu_device_uuid(worker_pubkey: bytes) -> str:
    """A CPU has no NVML UUID; its identity is derived from the worker key, so it is unique per
    worker and cannot be claimed by another one."""
    return "CPU-" + hashlib.sha256(b"byteleap/cpu/v1" + worker_pubkey).hexdigest()[:32]


class NumpyBackend:
    name = "numpy"

    def __init__(
        self,
        device: Device,
        *,
        threads: int | None = None,
        pace_flops: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if pace_flops is not None and not pace_flops > 0:
            raise ValueError(f"pace_flops must be positive, got {pace_flops}")
        self._device = device
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._workspace: Workspace | None = None
        #: FLOP/s this device is paced to (None: as fast as it computes)
        self.pace_flops = pace_flops
        self._sleep = sleep

    @classmethod
    def for_worker(
        cls,
        worker_pubkey: bytes,
        cpu_name: str,
        *,
        threads: int | None = None,
        pace_flops: float | None = None,
    ) -> NumpyBackend:
        device = Device(uuid=cpu_device_uuid(worker_pubkey), name=f"CPU {cpu_name}", kind="cpu")
        return cls(device, threads=threads, pace_flops=pace_flops)

    def devices(self) -> list[Device]:
        return [self._device]

    def _space(self, params: ChallengeParams) -> Workspace:
        if self._workspace is None or not self._workspace.fits(params):
            self._workspace = None  # let the old buffers go before allocating the new ones
            try:
                self._workspace = Workspace(params)
            except MemoryError as exc:
                raise WorkerFailure(
                    f"not enough memory for {params.m}x{params.n}x{params.k}"
                ) from exc
        return self._workspace

    def run(
        self,
        device: Device,
        binding: Binding,
        seed: bytes,
        params: ChallengeParams,
        *,
        clock: Clock,
        should_stop: ShouldStop | None = None,
    ) -> ProverRun:
        space = self._space(params)
        run = ProverRun(binding=binding, seed=seed, params=params)
        began = clock()
        stage_flops = params.flops / params.stages
        with ThreadPoolExecutor(self._threads) as pool:
            for stage in range(params.stages):
                if should_stop is not None and should_stop():
                    raise Abandoned(f"stopped before stage {stage}")
                started = clock()
                _, leaves = compute_stage(stage, run.key(stage), space, pool, self._threads)
                run.leaves.append(leaves)
                run.roots.append(build_levels(leaves)[-1][0])
                if self.pace_flops is not None:
                    due = began + (stage + 1) * stage_flops / self.pace_flops
                    self._pace(due, clock, should_stop, stage)
                run.stage_seconds.append(clock() - started)
        return run

    def _pace(self, due: float, clock: Clock, should_stop: ShouldStop | None, stage: int) -> None:
        """Sleep until ``clock()`` reaches ``due`` (pacing), in slices that watch for a stop."""
        while (left := due - clock()) > 0:
            if should_stop is not None and should_stop():
                raise Abandoned(f"stopped while pacing stage {stage}")
            self._sleep(min(left, PACE_SLICE_S))

    def open(
        self, device: Device, run: ProverRun, stage: int, rows: Sequence[int]
    ) -> list[OpenedRow]:
        return open_rows(run, stage, rows)

    def bare_gemm_seconds(self, device: Device, params: ChallengeParams, *, clock: Clock) -> float:
        space = self._space(params)
        matrix_a(np, 1, params, out=space.a)
        matrix_b(np, 1, params, out=space.b)
        np.matmul(space.a, space.b, out=space.c)  # warm up BLAS
        started = clock()
        np.matmul(space.a, space.b, out=space.c)
        return clock() - started
