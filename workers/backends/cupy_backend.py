"""The GPU backend: CuPy, cuBLAS for the GEMM, and our own CUDA kernels for the rest.

One stage on the device (all on one non-blocking stream of the run's own GPU):

1. ``bl_generate`` writes ``A_t`` (``m x k``) and ``B_t`` (``k x n``) as float32.
2. ``cupy.matmul(A, B, out=C)``: cuBLAS, float32 with TF32 tensor cores allowed (exact, SPEC 4.2).
3. ``bl_row_leaves_f32`` hashes every row of ``C`` into its leaf, converting each entry exactly
   to int32 as it loads it, so no separate conversion pass runs.
4. ``bl_merkle_level``, once per tree level, builds the tree in the same buffer.
5. The leaves and the root are copied into pinned host memory and an event is recorded.

The host waits for the event, reads the root, derives the next stage's key from it and enqueues
the next stage; while the device computes it, the host turns the previous stage's leaves into the
``bytes`` objects that :class:`~byteleap.challenge.reference.ProverRun` keeps (two pinned buffers
alternate, so the device never writes the one being read).

Opening rows (:meth:`CupyBackend.open`) regenerates ``B_t`` and only the requested rows of
``A_t`` on the device, multiplies them, converts them to int32 on the device and builds the
Merkle paths on the host from the stored leaves. It checks each recomputed row against its stored
leaf first: an unreliable device raises :class:`~byteleap.errors.WorkerFailure` rather than
revealing a row that would be scored as fraud.

CuPy is imported lazily, so this module imports on a machine without it. The kernels' source is
:data:`workers.backends.kernels.SOURCE`; the CPU test suite builds that same text with gcc.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from byteleap.aliases import Clock
from byteleap.challenge.generate import B_OFFSET
from byteleap.challenge.merkle import build_levels, leaf_hash, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import OpenedRow, ProverRun
from byteleap.errors import WorkerFailure
from workers.backends import kernels
from workers.backends.base import Abandoned, Device, ShouldStop
from workers.backends.cupy_device import (
    GENERATE_BLOCK,
    GENERATE_BLOCKS_PER_SM,
    HASH_BLOCK,
    CudaKernels,
    CupyDevices,
    StageProfile,
    StageWorkspace,
    open_buffer_bytes,
    split_digests,
)


class CupyBackend(CupyDevices):
    """Runs challenges on the CUDA devices of this host, one run per device at a time; runs on
    different devices may go on concurrently from different threads.

    ``nvml`` is what the worker's NVML inventory knows: index -> UUID, or index -> ``(uuid,
    name)``. A CUDA device is matched to it by its own UUID (from the CUDA device properties), so
    a CUDA order that differs from NVML's cannot bind a proof to the wrong GPU (a UUID that CuPy
    cut at a zero byte is matched by prefix); the index is used only for a device whose UUID
    decides nothing. A device the inventory does not list keeps the CUDA
    UUID, formatted as NVML prints it (``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``), and the
    CUDA name. ``devices`` restricts the backend to those CUDA indices (``compute.devices``).
    Importing CuPy through this backend defaults ``CUDA_DEVICE_ORDER`` to ``PCI_BUS_ID``, so that
    CUDA indices are the ``nvidia-smi`` ones unless the operator chose otherwise.
    """

    name = "cupy"

    # ------------------------------------------------------------------ one stage

    def _enqueue_generate(
        self, k: CudaKernels, index: int, out: Any, count: int, key: int, start: int, v: int
    ) -> None:
        grid = self._grid(index, count, GENERATE_BLOCK, GENERATE_BLOCKS_PER_SM)
        args = (out, np.uint64(count), np.uint64(key), np.uint64(start), np.uint64(v))
        k.generate(grid, (GENERATE_BLOCK,), args)

    def _enqueue_hash(self, k: CudaKernels, index: int, space: StageWorkspace, stage: int) -> None:
        m, n, _ = space.shape
        # one thread per row; small blocks spread the few warps over all SMs
        block = 32 if m < HASH_BLOCK * self._sm_counts.get(index, 1) else HASH_BLOCK
        args = (space.c, np.uint64(m), np.uint64(n), np.uint32(stage), np.uint32(0), space.nodes)
        k.row_leaves(self._grid(index, m, block), (block,), args)

    def _enqueue_merkle(self, k: CudaKernels, index: int, space: StageWorkspace) -> None:
        m = space.shape[0]
        for src, dst, count in kernels.merkle_plan(m):
            block = min(HASH_BLOCK, max(32, count))
            args = (space.nodes, np.uint64(src), np.uint64(dst), np.uint64(count))
            k.merkle_level(self._grid(index, count, block), (block,), args)

    def _enqueue_copy(self, cp: Any, space: StageWorkspace, host: Any, stream: Any) -> None:
        m = space.shape[0]
        size = kernels.DIGEST_BYTES
        runtime = cp.cuda.runtime
        kind = runtime.memcpyDeviceToHost
        src = int(space.nodes.data.ptr)
        dst = int(host.ctypes.data)
        runtime.memcpyAsync(dst, src, size * m, kind, stream.ptr)
        root = src + size * (kernels.node_slots(m) - 1)
        runtime.memcpyAsync(dst + size * m, root, size, kind, stream.ptr)

    def _enqueue_stage(
        self,
        cp: Any,
        k: CudaKernels,
        index: int,
        space: StageWorkspace,
        stage: int,
        key: int,
        v: int,
        host: Any,
        stream: Any,
    ) -> None:
        m, n, kk = space.shape
        self._enqueue_generate(k, index, space.a, m * kk, key, 0, v)
        self._enqueue_generate(k, index, space.b, kk * n, key ^ B_OFFSET, 0, v)
        cp.matmul(space.a, space.b, out=space.c)
        self._enqueue_hash(k, index, space, stage)
        self._enqueue_merkle(k, index, space)
        self._enqueue_copy(cp, space, host, stream)

    # ------------------------------------------------------------------ the interface

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
        run = ProverRun(binding=binding, seed=seed, params=params)
        m = params.m
        root_at = kernels.DIGEST_BYTES * m
        with self._on(device, "the challenge") as (cp, index):
            k = self._kernels_for(cp, index)
            space = self._workspace(cp, index, params)
            done = cp.cuda.Event(disable_timing=True)
            pending: Any = None  # pinned buffer whose leaves are not yet in run.leaves
            with self._stream(cp) as stream:
                for stage in range(params.stages):
                    if should_stop is not None and should_stop():
                        raise Abandoned(f"stopped before stage {stage}")
                    started = clock()
                    host = space.host[stage % 2]
                    key = run.key(stage)
                    self._enqueue_stage(cp, k, index, space, stage, key, params.v, host, stream)
                    done.record(stream)
                    if pending is not None:  # overlaps with the device's work on this stage
                        run.leaves.append(split_digests(pending.tobytes(), m))
                    done.synchronize()
                    run.roots.append(host[root_at : root_at + kernels.DIGEST_BYTES].tobytes())
                    run.stage_seconds.append(clock() - started)
                    pending = host
            if pending is not None:
                run.leaves.append(split_digests(pending.tobytes(), m))
        return run

    def open(
        self, device: Device, run: ProverRun, stage: int, rows: Sequence[int]
    ) -> list[OpenedRow]:
        if not 0 <= stage < min(len(run.roots), len(run.leaves)):
            raise IndexError(f"stage {stage} was not committed")
        params = run.params
        wanted = [int(row) for row in rows]
        for row in wanted:
            if not 0 <= row < params.m:
                raise IndexError(f"row {row} is outside a tree of {params.m} leaves")
        if not wanted:
            return []
        values = self.recompute_rows(device, run, stage, wanted)
        leaves = run.leaves[stage]
        for row in wanted:
            if leaf_hash(stage, row, values[row]) != leaves[row]:
                raise WorkerFailure(
                    f"{device.name} ({device.uuid}): row {row} of stage {stage} recomputed to a "
                    "different value than the committed one; the device is unreliable"
                )
        levels = build_levels(leaves)
        if levels[-1][0] != run.roots[stage]:
            raise WorkerFailure(f"the stored leaves of stage {stage} do not match its root")
        return [OpenedRow(stage, row, values[row], proof(levels, row)) for row in wanted]

    def recompute_rows(
        self, device: Device, run: ProverRun, stage: int, rows: Sequence[int]
    ) -> dict[int, bytes]:
        """Rows ``rows`` of stage ``stage``'s product as int32 little-endian bytes, recomputed
        on the device: ``B_t`` in full, only the requested rows of ``A_t``."""
        p = run.params
        key = run.key(stage)
        count = len(rows)
        if count == 0:
            return {}
        with self._on(device, "opening rows") as (cp, index):
            k = self._kernels_for(cp, index)
            space = self._workspaces.get(index)
            reuse = space is not None and space.shape[1:] == (p.n, p.k)
            need = open_buffer_bytes(p, count) - (4 * p.k * p.n if reuse else 0)
            self._check_memory(cp, index, need, f"opening {count} rows")
            # B_t goes into the workspace's buffer when there is one of its shape
            b = space.b if reuse and space is not None else cp.empty((p.k, p.n), dtype=cp.float32)
            a_rows = cp.empty((count, p.k), dtype=cp.float32)
            c_rows = cp.empty((count, p.n), dtype=cp.float32)
            ints = cp.empty((count, p.n), dtype=cp.int32)
            with self._stream(cp) as stream:
                row_ids = cp.asarray(np.asarray(rows, dtype=np.uint64))
                self._enqueue_generate(k, index, b, p.k * p.n, key ^ B_OFFSET, 0, p.v)
                cells = count * p.k
                grid = self._grid(index, cells, GENERATE_BLOCK, GENERATE_BLOCKS_PER_SM)
                args = (a_rows, row_ids, np.uint64(count), np.uint64(p.k), np.uint64(key))
                k.generate_rows(grid, (GENERATE_BLOCK,), (*args, np.uint64(p.v)))
                cp.matmul(a_rows, b, out=c_rows)
                cells = count * p.n
                grid = self._grid(index, cells, GENERATE_BLOCK, GENERATE_BLOCKS_PER_SM)
                k.to_int32(grid, (GENERATE_BLOCK,), (c_rows, ints, np.uint64(cells)))
                stream.synchronize()
                host = np.ascontiguousarray(cp.asnumpy(ints), dtype="<i4")
        return {row: host[i].tobytes() for i, row in enumerate(rows)}

    def bare_gemm_seconds(
        self, device: Device, params: ChallengeParams, *, clock: Clock, repeats: int = 3
    ) -> float:
        """Device time of one bare ``A @ B`` of the challenge's shape (CUDA events; the best of
        ``repeats`` after a warm-up). ``clock`` is unused: the events time the device itself."""
        with self._on(device, "the bare GEMM") as (cp, index):
            k = self._kernels_for(cp, index)
            space = self._workspace(cp, index, params)
            m, n, kk = space.shape
            start, end = cp.cuda.Event(), cp.cuda.Event()
            best = math.inf
            with self._stream(cp) as stream:
                self._enqueue_generate(k, index, space.a, m * kk, 1, 0, params.v)
                self._enqueue_generate(k, index, space.b, kk * n, 1 ^ B_OFFSET, 0, params.v)
                cp.matmul(space.a, space.b, out=space.c)  # warm up cuBLAS and its heuristics
                for _ in range(max(1, repeats)):
                    start.record(stream)
                    cp.matmul(space.a, space.b, out=space.c)
                    end.record(stream)
                    end.synchronize()
                    best = min(best, cp.cuda.get_elapsed_time(start, end) / 1e3)
        return best

    def profile_stage(
        self, device: Device, params: ChallengeParams, *, key: int = 1, stage: int = 0
    ) -> StageProfile:
        """One stage with CUDA events between its phases (after a warm-up stage), for
        ``bench/gpu.py``: where the device time of a stage goes."""
        with self._on(device, "profiling a stage") as (cp, index):
            k = self._kernels_for(cp, index)
            space = self._workspace(cp, index, params)
            m, n, kk = space.shape
            marks = [cp.cuda.Event() for _ in range(6)]
            host = space.host[0]
            with self._stream(cp) as stream:
                self._enqueue_stage(cp, k, index, space, stage, key, params.v, host, stream)
                marks[0].record(stream)
                self._enqueue_generate(k, index, space.a, m * kk, key, 0, params.v)
                self._enqueue_generate(k, index, space.b, kk * n, key ^ B_OFFSET, 0, params.v)
                marks[1].record(stream)
                cp.matmul(space.a, space.b, out=space.c)
                marks[2].record(stream)
                self._enqueue_hash(k, index, space, stage)
                marks[3].record(stream)
                self._enqueue_merkle(k, index, space)
                marks[4].record(stream)
                self._enqueue_copy(cp, space, host, stream)
                marks[5].record(stream)
                marks[5].synchronize()
            seconds = [cp.cuda.get_elapsed_time(marks[i], marks[i + 1]) / 1e3 for i in range(5)]
        return StageProfile(*seconds)

    def sha256_on_device(self, device: Device, messages: Sequence[bytes]) -> list[bytes]:
        """SHA-256 of each message, computed by the device kernel (``bl_sha256_batch``): the
        entry point the GPU tests check against ``hashlib`` with the NIST vectors."""
        if not messages:
            return []
        offsets = np.cumsum([0] + [len(msg) for msg in messages[:-1]], dtype=np.uint64)
        lengths = np.asarray([len(msg) for msg in messages], dtype=np.uint64)
        data = np.frombuffer(b"".join(messages) + b"\0", dtype=np.uint8)
        with self._on(device, "hashing") as (cp, index):
            k = self._kernels_for(cp, index)
            out = cp.empty(kernels.DIGEST_BYTES * len(messages), dtype=cp.uint8)
            with self._stream(cp) as stream:
                d_data, d_offsets, d_lengths = (cp.asarray(x) for x in (data, offsets, lengths))
                count = np.uint64(len(messages))
                grid = self._grid(index, len(messages), HASH_BLOCK)
                k.sha256_batch(grid, (HASH_BLOCK,), (d_data, d_offsets, d_lengths, count, out))
                stream.synchronize()
                digests = cp.asnumpy(out).tobytes()
        return split_digests(digests, len(messages))
