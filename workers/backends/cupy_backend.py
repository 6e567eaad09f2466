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
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np

from byteleap.aliases import Clock
from byteleap.challenge.generate import B_OFFSET
from byteleap.challenge.merkle import build_levels, leaf_hash, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import OpenedRow, ProverRun
from byteleap.errors import ConfigError, WorkerFailure
from workers.backends import kernels
from workers.backends.base import Abandoned, Device, ShouldStop

#: an identity the worker's inventory supplies for a CUDA device index: the NVML UUID, or
#: ``(uuid, name)``
Identity = str | tuple[str, str]

#: device memory kept free beyond the buffers: cuBLAS workspace, module code, allocator slack
MEMORY_MARGIN_BYTES = 256 << 20
#: threads per block of the grid-stride generation kernel, and blocks per SM at most
GENERATE_BLOCK = 256
GENERATE_BLOCKS_PER_SM = 32
#: threads per block of the hashing kernels (one thread per row or node)
HASH_BLOCK = 64


def _import_cupy() -> Any:
    """Import CuPy, allowing TF32 for float32 GEMMs unless the operator said otherwise.

    CuPy reads ``CUPY_TF32`` when it first picks the compute type of a float32 GEMM, so setting
    the default here, before any GEMM of the process, is enough. TF32 is exact for the challenge:
    entries are integers of at most 11 significant bits and every partial sum is exact in float32.
    """
    os.environ.setdefault("CUPY_TF32", "1")
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA indices = nvidia-smi's
    import cupy

    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device. Never raises."""
    try:
        cp = _import_cupy()
        return int(cp.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # no CuPy, no driver, no device: all mean "not available"
        return False


def uuid_bytes(raw: Any) -> bytes | None:
    """The raw bytes of a UUID given as bytes, a sequence of byte values, or hex text with or
    without dashes and the ``GPU-`` prefix. None when it is none of these."""
    if raw is None:
        return None
    if isinstance(raw, str):
        text = raw.strip().lower().removeprefix("gpu-").replace("-", "")
        try:
            return bytes.fromhex(text)
        except ValueError:
            return None
    try:
        return bytes(raw)
    except (TypeError, ValueError):
        return None


def format_uuid(raw: Any) -> str | None:
    """A CUDA device UUID as NVML prints it: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``.

    Accepts what CuPy's ``getDeviceProperties(i)['uuid']`` holds (raw bytes), a hex string with
    or without dashes or the ``GPU-`` prefix, or a sequence of byte values. Returns None unless
    that is 16 bytes, not all zero."""
    data = uuid_bytes(raw)
    if data is None or len(data) != 16 or not any(data):
        return None
    h = data.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _decode(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(value)


def stage_buffer_bytes(params: ChallengeParams) -> int:
    """Device memory one run needs for its buffers: ``A``, ``B``, ``C`` (float32) and the
    ``2m - 1`` digests of the tree."""
    p = params
    floats = p.m * p.k + p.k * p.n + p.m * p.n
    return 4 * floats + kernels.DIGEST_BYTES * kernels.node_slots(p.m)


def open_buffer_bytes(params: ChallengeParams, rows: int) -> int:
    """Device memory to open ``rows`` rows: ``B`` plus the rows of ``A``, ``C`` and int32."""
    p = params
    return 4 * (p.k * p.n + rows * p.k + 2 * rows * p.n) + 8 * rows


def split_digests(data: bytes, count: int) -> list[bytes]:
    """``count`` 32-byte digests from their concatenation."""
    size = kernels.DIGEST_BYTES
    if len(data) < size * count:
        raise ValueError(f"{len(data)} bytes hold fewer than {count} digests")
    return [data[i : i + size] for i in range(0, size * count, size)]


@dataclass
class StageProfile:
    """Device time of each phase of one stage, in seconds (CUDA events), for the benchmark."""

    generate: float
    gemm: float
    hash_rows: float
    merkle: float
    copy: float

    @property
    def total(self) -> float:
        return self.generate + self.gemm + self.hash_rows + self.merkle + self.copy


class _Kernels:
    """The compiled kernels of one device."""

    def __init__(self, cp: Any) -> None:
        module = cp.RawModule(code=kernels.SOURCE, options=kernels.NVRTC_OPTIONS)
        self.generate = module.get_function("bl_generate")
        self.generate_rows = module.get_function("bl_generate_rows")
        self.row_leaves = module.get_function("bl_row_leaves_f32")
        self.merkle_level = module.get_function("bl_merkle_level")
        self.to_int32 = module.get_function("bl_to_int32")
        self.sha256_batch = module.get_function("bl_sha256_batch")


class _Workspace:
    """Buffers of one device for one shape, reused by every stage and every run of that shape."""

    def __init__(self, cp: Any, params: ChallengeParams) -> None:
        p = params
        self.shape = (p.m, p.n, p.k)
        self.a = cp.empty((p.m, p.k), dtype=cp.float32)
        self.b = cp.empty((p.k, p.n), dtype=cp.float32)
        self.c = cp.empty((p.m, p.n), dtype=cp.float32)
        self.nodes = cp.empty(kernels.DIGEST_BYTES * kernels.node_slots(p.m), dtype=cp.uint8)
        # pinned host memory: the m leaves followed by the root; two, used alternately
        host_bytes = kernels.DIGEST_BYTES * (p.m + 1)
        import cupyx

        self.host = [cupyx.empty_pinned((host_bytes,), dtype=np.uint8) for _ in range(2)]

    def fits(self, params: ChallengeParams) -> bool:
        return self.shape == (params.m, params.n, params.k)


class CupyBackend:
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

    def __init__(
        self,
        nvml: Mapping[int, Identity] | None = None,
        *,
        devices: Sequence[int] | None = None,
        tf32: bool = True,
        memory_margin_bytes: int = MEMORY_MARGIN_BYTES,
    ) -> None:
        self._nvml = dict(nvml or {})
        self._only = None if devices is None else list(devices)
        self._tf32 = tf32
        self._margin = memory_margin_bytes
        self._cupy: Any = None
        self._guard_lock = threading.Lock()
        self._device_locks: dict[int, threading.Lock] = {}
        self._kernels: dict[int, _Kernels] = {}
        self._workspaces: dict[int, _Workspace] = {}
        self._sm_counts: dict[int, int] = {}
        self._devices: list[Device] | None = None
        self._mapped_errors: tuple[type[BaseException], ...] | None = None

    # ------------------------------------------------------------------ discovery

    @staticmethod
    def available() -> bool:
        """CuPy importable and at least one CUDA device present. Never raises."""
        return cupy_available()

    @property
    def _cp(self) -> Any:
        if self._cupy is None:
            try:
                self._cupy = _import_cupy()
            except ImportError as exc:
                raise WorkerFailure("CuPy is not installed (pip install 'byteleap[gpu]')") from exc
        return self._cupy

    def devices(self) -> list[Device]:
        """The CUDA devices offered, in CUDA index order; empty without CuPy or CUDA.

        Raises :class:`~byteleap.errors.ConfigError` when ``devices`` names an index that does
        not exist."""
        if self._devices is None:
            if not self.available():
                return []
            cp = self._cp
            with self._errors("reading the device properties"):
                count = int(cp.cuda.runtime.getDeviceCount())
                indices = list(range(count)) if self._only is None else self._only
                for index in indices:
                    if not 0 <= index < count:
                        raise ConfigError(
                            f"CUDA device {index} does not exist ({count} visible)",
                            key="compute.devices",
                        )
                self._devices = [self._describe(cp, index) for index in indices]
        return list(self._devices)

    def _identity(self, index: int, raw: bytes | None) -> tuple[str, str | None] | None:
        """The inventory entry of the CUDA device ``index`` whose UUID bytes CuPy reported as
        ``raw``: matched by UUID; by prefix when CuPy cut the UUID at its first zero byte (it
        converts the C ``char[16]`` like a string); by index only when nothing else decides."""
        entries = []
        for key, value in self._nvml.items():
            uuid, name = (value, None) if isinstance(value, str) else value
            entries.append((key, uuid, name, uuid_bytes(uuid) or b""))
        if raw is not None and len(raw) == 16 and any(raw):
            found = [(uuid, name) for _, uuid, name, data in entries if data == raw]
            return found[0] if found else None
        if raw is not None and len(raw) < 16:
            cut = raw + b"\0"
            found = [(uuid, name) for _, uuid, name, data in entries if data.startswith(cut)]
            if len(found) == 1:
                return found[0]
        by_index = [(uuid, name) for key, uuid, name, _ in entries if key == index]
        return by_index[0] if by_index else None

    def _describe(self, cp: Any, index: int) -> Device:
        props = cp.cuda.runtime.getDeviceProperties(index)
        self._sm_counts[index] = int(props.get("multiProcessorCount", 0)) or 1
        raw = uuid_bytes(props.get("uuid"))
        uuid = format_uuid(raw)
        name = _decode(props.get("name", f"CUDA device {index}"))
        known = self._identity(index, raw)
        if known is not None:
            uuid, name = known[0], known[1] or name
        if uuid is None:
            raise WorkerFailure(
                f"CUDA device {index} reports no complete UUID and the NVML inventory has no "
                "entry for it"
            )
        return Device(
            uuid=uuid,
            name=name,
            kind="cuda",
            index=index,
            memory_total_bytes=int(props.get("totalGlobalMem", 0)) or None,
        )

    # ------------------------------------------------------------------ plumbing

    def _index(self, device: Device) -> int:
        if device.kind != "cuda" or device.index is None:
            raise WorkerFailure(f"{device.name!r} is not a CUDA device of this backend")
        return device.index

    def _lock(self, index: int) -> threading.Lock:
        with self._guard_lock:
            return self._device_locks.setdefault(index, threading.Lock())

    def _error_types(self) -> tuple[type[BaseException], ...]:
        if self._mapped_errors is not None:
            return self._mapped_errors
        cp = self._cp
        # cupy's OutOfMemoryError is a MemoryError; a CUDA library that fails to load raises
        # ImportError, OSError or RuntimeError (CUDARuntimeError is one too)
        found: list[type[BaseException]] = [MemoryError, ImportError, OSError, RuntimeError]
        for owner, attr in (
            ("runtime", "CUDARuntimeError"),
            ("driver", "CUDADriverError"),
            ("compiler", "CompileException"),
        ):
            cls = getattr(getattr(cp.cuda, owner, None), attr, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
        try:
            from cupy_backends.cuda.libs import cublas

            found.append(cublas.CUBLASError)
        except (ImportError, AttributeError):  # pragma: no cover - depends on the CUDA install
            pass
        self._mapped_errors = tuple(found)
        return self._mapped_errors

    @contextmanager
    def _errors(self, what: str, index: int | None = None) -> Iterator[None]:
        """Map CUDA, cuBLAS, NVRTC and out-of-memory errors to :class:`WorkerFailure`."""
        types = self._error_types()
        try:
            yield
        except (WorkerFailure, Abandoned):
            raise
        except types as exc:
            where = f"CUDA device {index}: " if index is not None else ""
            raise WorkerFailure(f"{where}{what} failed: {type(exc).__name__}: {exc}") from exc

    @contextmanager
    def _on(self, device: Device, what: str) -> Iterator[tuple[Any, int]]:
        """Hold ``device`` for this thread, make it current, map its errors."""
        index = self._index(device)
        with self._lock(index), self._errors(what, index), self._cp.cuda.Device(index):
            yield self._cp, index

    @staticmethod
    @contextmanager
    def _stream(cp: Any) -> Iterator[Any]:
        """A fresh non-blocking stream of the current device, made current; on the way out it is
        drained, so that no kernel of a failed or abandoned call still writes the buffers."""
        stream = cp.cuda.Stream(non_blocking=True)
        try:
            with stream:
                yield stream
        finally:
            with suppress(Exception):  # on failure, the error that got us here is the one to tell
                stream.synchronize()

    def _kernels_for(self, cp: Any, index: int) -> _Kernels:
        if index not in self._kernels:
            try:
                self._kernels[index] = _Kernels(cp)
            except Exception as exc:  # NVRTC missing or failing: the host cannot run challenges
                raise WorkerFailure(
                    f"CUDA device {index}: compiling the challenge kernels failed "
                    f"({type(exc).__name__}: {exc}); CuPy needs NVRTC and cuBLAS from a CUDA 12 "
                    "toolkit, e.g. pip install 'cupy-cuda12x[ctk]'"
                ) from exc
        if index not in self._sm_counts:
            props = cp.cuda.runtime.getDeviceProperties(index)
            self._sm_counts[index] = int(props.get("multiProcessorCount", 0)) or 1
        if self._tf32:
            self._allow_tf32(cp)
        return self._kernels[index]

    @staticmethod
    def _allow_tf32(cp: Any) -> None:
        """Make sure CuPy's float32 GEMMs use TF32 even if some earlier float32 GEMM of this
        process fixed the compute type before ``CUPY_TF32`` was set. Best effort: CuPy keeps this
        switch in a private module; without it the product is still exact, only slower."""
        if os.environ.get("CUPY_TF32", "1") == "0":
            return
        try:
            linalg = cp._core._routines_linalg
            tf32 = linalg.COMPUTE_TYPE_TF32
            if int(cp.cuda.Device().compute_capability) < 80:
                return
            if linalg.get_compute_type(np.float32) != tf32:
                linalg.set_compute_type(np.float32, tf32)
        except Exception:  # pragma: no cover - depends on the CuPy version
            return

    def _check_memory(self, cp: Any, index: int, need: int, what: str) -> None:
        free, total = (int(x) for x in cp.cuda.runtime.memGetInfo())
        pooled = int(cp.get_default_memory_pool().free_bytes())
        if need + self._margin > free + pooled:
            raise WorkerFailure(
                f"CUDA device {index}: {what} needs {need / 2**30:.2f} GiB plus a margin of "
                f"{self._margin / 2**30:.2f} GiB, but only {(free + pooled) / 2**30:.2f} GiB of "
                f"{total / 2**30:.2f} GiB is free"
            )

    def _workspace(self, cp: Any, index: int, params: ChallengeParams) -> _Workspace:
        space = self._workspaces.get(index)
        if space is not None and space.fits(params):
            return space
        # drop every reference to the old buffers first, so that they are back in CuPy's pool
        # (and counted as free) before the new ones are sized and allocated
        self._workspaces.pop(index, None)
        del space
        shape = f"{params.m}x{params.n}x{params.k}"
        self._check_memory(cp, index, stage_buffer_bytes(params), f"a {shape} challenge")
        self._workspaces[index] = _Workspace(cp, params)
        return self._workspaces[index]

    def release(self, device: Device | None = None) -> None:
        """Drop the cached buffers of ``device`` (all devices by default)."""
        for index in [device.index] if device is not None else list(self._workspaces):
            if index is not None:
                with self._lock(index):
                    self._workspaces.pop(index, None)

    def _grid(self, index: int, count: int, block: int, per_sm: int | None = None) -> tuple[int]:
        blocks = max(1, math.ceil(count / block))
        if per_sm is not None:
            blocks = min(blocks, per_sm * self._sm_counts.get(index, 1))
        return (blocks,)

    # ------------------------------------------------------------------ one stage

    def _enqueue_generate(
        self, k: _Kernels, index: int, out: Any, count: int, key: int, start: int, v: int
    ) -> None:
        grid = self._grid(index, count, GENERATE_BLOCK, GENERATE_BLOCKS_PER_SM)
        args = (out, np.uint64(count), np.uint64(key), np.uint64(start), np.uint64(v))
        k.generate(grid, (GENERATE_BLOCK,), args)

    def _enqueue_hash(self, k: _Kernels, index: int, space: _Workspace, stage: int) -> None:
        m, n, _ = space.shape
        # one thread per row; small blocks spread the few warps over all SMs
        block = 32 if m < HASH_BLOCK * self._sm_counts.get(index, 1) else HASH_BLOCK
        args = (space.c, np.uint64(m), np.uint64(n), np.uint32(stage), np.uint32(0), space.nodes)
        k.row_leaves(self._grid(index, m, block), (block,), args)

    def _enqueue_merkle(self, k: _Kernels, index: int, space: _Workspace) -> None:
        m = space.shape[0]
        for src, dst, count in kernels.merkle_plan(m):
            block = min(HASH_BLOCK, max(32, count))
            args = (space.nodes, np.uint64(src), np.uint64(dst), np.uint64(count))
            k.merkle_level(self._grid(index, count, block), (block,), args)

    def _enqueue_copy(self, cp: Any, space: _Workspace, host: Any, stream: Any) -> None:
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
        k: _Kernels,
        index: int,
        space: _Workspace,
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
