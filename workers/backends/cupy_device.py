"""The CUDA side of the GPU backend: CuPy imported lazily, the devices of this host matched to
the worker's NVML inventory, their compiled kernels, workspaces, locks and streams, and the
mapping of CUDA failures to :class:`~byteleap.errors.WorkerFailure`. :class:`CupyDevices` is the
base of :class:`~workers.backends.cupy_backend.CupyBackend`, which runs the challenges on them.
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

from byteleap.challenge.params import ChallengeParams
from byteleap.errors import ConfigError, WorkerFailure
from workers.backends import kernels
from workers.backends.base import Abandoned, Device

#: an identity the worker's inventory supplies for a CUDA device index: the NVML UUID, or
#: ``(uuid, name)``
NvmlIdentity = str | tuple[str, str]

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


class CudaKernels:
    """The compiled kernels of one device."""

    def __init__(self, cp: Any) -> None:
        module = cp.RawModule(code=kernels.SOURCE, options=kernels.NVRTC_OPTIONS)
        self.generate = module.get_function("bl_generate")
        self.generate_rows = module.get_function("bl_generate_rows")
        self.row_leaves = module.get_function("bl_row_leaves_f32")
        self.merkle_level = module.get_function("bl_merkle_level")
        self.to_int32 = module.get_function("bl_to_int32")
        self.sha256_batch = module.get_function("bl_sha256_batch")


class StageWorkspace:
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


class CupyDevices:
    """The CUDA devices of this host and everything a run needs on one (see
    :class:`~workers.backends.cupy_backend.CupyBackend` for ``nvml`` and ``devices``)."""

    def __init__(
        self,
        nvml: Mapping[int, NvmlIdentity] | None = None,
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
        self._kernels: dict[int, CudaKernels] = {}
        self._workspaces: dict[int, StageWorkspace] = {}
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

    def _kernels_for(self, cp: Any, index: int) -> CudaKernels:
        if index not in self._kernels:
            try:
                self._kernels[index] = CudaKernels(cp)
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

    def _workspace(self, cp: Any, index: int, params: ChallengeParams) -> StageWorkspace:
        space = self._workspaces.get(index)
        if space is not None and space.fits(params):
            return space
        # drop every reference to the old buffers first, so that they are back in CuPy's pool
        # (and counted as free) before the new ones are sized and allocated
        self._workspaces.pop(index, None)
        del space
        shape = f"{params.m}x{params.n}x{params.k}"
        self._check_memory(cp, index, stage_buffer_bytes(params), f"a {shape} challenge")
        self._workspaces[index] = StageWorkspace(cp, params)
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
