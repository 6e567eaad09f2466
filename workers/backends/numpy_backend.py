"""The CPU backend: the NumPy reference prover, with reused buffers and every core."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from byteleap.challenge.generate import matrix_a, matrix_b
from byteleap.challenge.merkle import build_levels
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import (
    ProverRun,
    RowOpening,
    Workspace,
    compute_stage,
    open_rows,
)
from byteleap.errors import WorkerFailure
from workers.backends.base import Abandoned, Clock, Device, ShouldStop


def cpu_device_uuid(worker_pubkey: bytes) -> str:
    """A CPU has no NVML UUID; its identity is derived from the worker key, so it is unique per
    worker and cannot be claimed by another one."""
    return "CPU-" + hashlib.sha256(b"byteleap/cpu/v1" + worker_pubkey).hexdigest()[:32]


class NumpyBackend:
    name = "numpy"

    def __init__(self, device: Device, *, threads: int | None = None) -> None:
        self._device = device
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._workspace: Workspace | None = None

    @classmethod
    def for_worker(cls, worker_pubkey: bytes, cpu_name: str, **kwargs: int) -> NumpyBackend:
        device = Device(uuid=cpu_device_uuid(worker_pubkey), name=f"CPU {cpu_name}", kind="cpu")
        return cls(device, **kwargs)

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
        with ThreadPoolExecutor(self._threads) as pool:
            for stage in range(params.stages):
                if should_stop is not None and should_stop():
                    raise Abandoned(f"stopped before stage {stage}")
                started = clock()
                _, leaves = compute_stage(stage, run.key(stage), space, pool, self._threads)
                run.leaves.append(leaves)
                run.roots.append(build_levels(leaves)[-1][0])
                run.stage_seconds.append(clock() - started)
        return run

    def open(
        self, device: Device, run: ProverRun, stage: int, rows: Sequence[int]
    ) -> list[RowOpening]:
        return open_rows(run, stage, rows)

    def bare_gemm_seconds(self, device: Device, params: ChallengeParams, *, clock: Clock) -> float:
        space = self._space(params)
        matrix_a(np, 1, params, out=space.a)
        matrix_b(np, 1, params, out=space.b)
        np.matmul(space.a, space.b, out=space.c)  # warm up BLAS
        started = clock()
        np.matmul(space.a, space.b, out=space.c)
        return clock() - started
