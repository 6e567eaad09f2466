"""The CUDA kernels of the CuPy backend, checked on the CPU.

``workers.backends.kernels.SOURCE`` is the text the CuPy backend hands to ``cupy.RawModule``. Here
the very same string is built with gcc as a shared library and called through ``ctypes``; only the
grid-stride loop header and the function qualifiers differ between the two builds (see
``kernels.py``). The NumPy reference (``byteleap.challenge``) and ``hashlib`` are the oracles.

The second half runs :class:`~workers.backends.cupy_backend.CupyBackend` itself against a stand-in
for CuPy whose "device" is host memory and whose kernels are the gcc build: that checks the
backend's buffer layout, launch arguments (types and widths derived from the kernel source),
stream use and Merkle bookkeeping end to end, with the frozen vectors and exact verification.
What it cannot check, the real NVRTC build, cuBLAS and CuPy itself, is left to ``tests/gpu``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.challenge.generate import B_OFFSET, matrix_a, matrix_b, splitmix_entries
from byteleap.challenge.merkle import leaf_hash, merkle_root
from byteleap.challenge.params import ChallengeParams, SamplingParams
from byteleap.challenge.reference import open_rows, run_reference
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.errors import ConfigError, Outcome, WorkerFailure, outcome_of
from tests.support.vectors import BINDING, SEED, SMALL, SMALL_ROOTS
from workers.backends import cupy_device, kernels
from workers.backends.base import Abandoned, Device
from workers.backends.cupy_backend import CupyBackend
from workers.backends.cupy_device import format_uuid

# ---- the kernel signatures, read from the source itself ------------------------------------

_C_TYPES = {"bl_u64": "u64", "bl_u32": "u32"}
_POINTEE = {"float": np.float32, "int": np.int32, "bl_u8": np.uint8, "bl_u64": np.uint64}


def kernel_signatures() -> dict[str, list[tuple[str, Any]]]:
    """``name -> [(kind, pointee dtype or None)]`` for every ``BL_KERNEL`` in the source."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for name, params in re.findall(r"BL_KERNEL void (\w+)\(([^)]*)\)", kernels.SOURCE):
        found[name] = []
        for param in params.split(","):
            words = param.replace("const", "").split()
            ctype = words[0]
            if "*" in param:
                found[name].append(("ptr", _POINTEE[ctype.rstrip("*")]))
            else:
                found[name].append((_C_TYPES[ctype], None))
    return found


SIGNATURES = kernel_signatures()
_CTYPES = {"ptr": ctypes.c_void_p, "u64": ctypes.c_uint64, "u32": ctypes.c_uint32}


def test_the_kernel_list_matches_the_source() -> None:
    assert set(SIGNATURES) == set(kernels.KERNEL_NAMES)
    assert SIGNATURES["bl_generate"] == [("ptr", np.float32)] + [("u64", None)] * 4
    assert SIGNATURES["bl_row_leaves_f32"][3:5] == [("u32", None), ("u32", None)]


# ---- the host build -------------------------------------------------------------------------


class HostKernels:
    """The kernels of ``kernels.SOURCE`` built for the host, with NumPy-friendly wrappers."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        for name, params in SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes = [_CTYPES[kind] for kind, _ in params]
            function.restype = None

    def generate(self, count: int, key: int, start: int, v: int) -> np.ndarray:
        out = np.empty(count, dtype=np.float32)
        self.lib.bl_generate(out.ctypes.data, count, key, start, v)
        return out

    def generate_rows(self, rows: Sequence[int], k: int, key: int, v: int) -> np.ndarray:
        ids = np.asarray(rows, dtype=np.uint64)
        out = np.empty((len(rows), k), dtype=np.float32)
        self.lib.bl_generate_rows(out.ctypes.data, ids.ctypes.data, len(rows), k, key, v)
        return out

    def sha256(self, messages: Sequence[bytes]) -> list[bytes]:
        data = np.frombuffer(b"".join(messages) + b"\0", dtype=np.uint8)
        lengths = np.asarray([len(m) for m in messages], dtype=np.uint64)
        offsets = (np.cumsum(lengths) - lengths).astype(np.uint64)
        out = np.zeros(32 * len(messages), dtype=np.uint8)
        self.lib.bl_sha256_batch(
            data.ctypes.data,
            offsets.ctypes.data,
            lengths.ctypes.data,
            len(messages),
            out.ctypes.data,
        )
        return [out[32 * i : 32 * i + 32].tobytes() for i in range(len(messages))]

    def row_leaves(self, matrix: np.ndarray, stage: int, first_row: int) -> list[bytes]:
        c = np.ascontiguousarray(matrix)
        rows, n = c.shape
        function = (
            self.lib.bl_row_leaves_f32 if c.dtype == np.float32 else self.lib.bl_row_leaves_i32
        )
        assert c.dtype in (np.float32, np.int32)
        out = np.zeros(32 * rows, dtype=np.uint8)
        function(c.ctypes.data, rows, n, stage, first_row, out.ctypes.data)
        return [out[32 * i : 32 * i + 32].tobytes() for i in range(rows)]

    def merkle_root(self, leaves: Sequence[bytes]) -> bytes:
        m = len(leaves)
        nodes = np.zeros(32 * kernels.node_slots(m), dtype=np.uint8)
        nodes[: 32 * m] = np.frombuffer(b"".join(leaves), dtype=np.uint8)
        for src, dst, count in kernels.merkle_plan(m):
            self.lib.bl_merkle_level(nodes.ctypes.data, src, dst, count)
        return nodes[-32:].tobytes()

    def to_int32(self, values: np.ndarray) -> np.ndarray:
        src = np.ascontiguousarray(values, dtype=np.float32)
        out = np.empty(src.shape, dtype=np.int32)
        self.lib.bl_to_int32(src.ctypes.data, out.ctypes.data, src.size)
        return out


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> HostKernels:
    compiler = shutil.which("g++") or shutil.which("gcc")
    if compiler is None:
        pytest.fail(
            "no C++ compiler: these tests build the CUDA kernel source for the host with gcc "
            "(g++ or gcc on PATH; Debian: apt-get install g++)"
        )
    folder = tmp_path_factory.mktemp("kernels")
    source = folder / "kernels.cpp"
    library = folder / "libkernels.so"
    source.write_text(kernels.SOURCE)
    command = [compiler, "-x", "c++", "-std=c++17", "-O2", "-shared", "-fPIC"]
    command += ["-Wall", "-Wextra", "-Werror", "-o", str(library), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed:\n{built.stderr}")
    return HostKernels(ctypes.CDLL(str(library)))


# ---- (a) generation -------------------------------------------------------------------------

KEYS = [0, 1, 0x7D7F97AEB493AC31, 0xFFFF_FFFF_FFFF_FFFF, B_OFFSET, 0x0123_4567_89AB_CDEF]


@pytest.mark.parametrize("v", [1, 2, 15, 100, 1024])
@pytest.mark.parametrize(("m", "n", "k"), [(2, 1, 1), (8, 8, 16), (16, 24, 40), (64, 17, 33)])
def test_generation_matches_the_reference_matrices(
    host: HostKernels, m: int, n: int, k: int, v: int
) -> None:
    # generation does not care about the exactness bound, so v = 1024 is tried with any k
    params = ChallengeParams.model_construct(m=m, n=n, k=k, v=v, stages=1)
    for key in KEYS:
        a = host.generate(m * k, key, 0, v).reshape(m, k)
        b = host.generate(k * n, key ^ B_OFFSET, 0, v).reshape(k, n)
        assert np.array_equal(a.view(np.uint32), matrix_a(np, key, params).view(np.uint32))
        assert np.array_equal(b.view(np.uint32), matrix_b(np, key, params).view(np.uint32))
        assert a.min() >= -v and a.max() <= v
        # a row range starts at counter first_row * k
        part = host.generate(3 * k, key, (m - 3) * k, v).reshape(3, k) if m >= 3 else a
        expected = matrix_a(np, key, params, range(m - 3, m)) if m >= 3 else a
        assert np.array_equal(part, expected)


@pytest.mark.parametrize(
    "start",
    [2**32 - 100, 2**32, 2**63 - 100, 2**63, 2**64 - 200, 2**64 - 50],  # the last one wraps
)
@pytest.mark.parametrize("v", [1, 15, 1024])
def test_generation_at_counter_boundaries(host: HostKernels, start: int, v: int) -> None:
    count = 200
    counters = np.arange(count, dtype=np.uint64) + np.uint64(start)  # wraps mod 2**64
    for key in KEYS:
        expected = splitmix_entries(np, counters.copy(), key, v)
        got = host.generate(count, key, start, v)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (hex(key), start)


def test_generation_exposes_the_published_splitmix_output(host: HostKernels) -> None:
    # see test_challenge_vectors: with v = 2**31 an entry is the finalizer's top 32 bits - 2**31
    gamma = 0x9E3779B97F4A7C15
    got = host.generate(1, 0, gamma, 2**31)
    assert got[0] == np.float32((0xE220A8397B1DCDAF >> 32) - 2**31)


def test_generate_rows_matches_the_reference_rows(host: HostKernels) -> None:
    params = ChallengeParams(m=64, n=8, k=37, v=15, stages=1)
    key = 0xDEAD_BEEF_0BAD_F00D
    full = matrix_a(np, key, params)
    rows = [63, 0, 5, 5, 31]
    assert np.array_equal(host.generate_rows(rows, params.k, key, params.v), full[rows])


def test_float_to_int32_is_exact(host: HostKernels) -> None:
    values = np.array([0, 1, -1, 2**24 - 1, -(2**24) + 1, 12345, -987654], dtype=np.float32)
    assert host.to_int32(values).tolist() == values.astype(np.int64).tolist()


# ---- (b) SHA-256 against NIST and hashlib ----------------------------------------------------

NIST = {
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq": (
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    ),
    b"a" * 1_000_000: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
}


def test_sha256_nist_vectors(host: HostKernels) -> None:
    messages = list(NIST)
    assert [d.hex() for d in host.sha256(messages)] == list(NIST.values())


def test_sha256_across_block_boundaries(host: HostKernels) -> None:
    rng = random.Random(7)
    lengths = [*range(0, 200), 247, 248, 255, 256, 257, 1000, 4096]
    messages = [rng.randbytes(n) for n in lengths]
    got = host.sha256(messages)
    for length, message, digest in zip(lengths, messages, got, strict=True):
        assert digest == hashlib.sha256(message).digest(), length


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_sha256_of_random_messages(host: HostKernels, messages: list[bytes]) -> None:
    assert host.sha256(messages) == [hashlib.sha256(m).digest() for m in messages]


# ---- (c) row leaves and the tree -------------------------------------------------------------

WIDTHS = [1, 2, 3, 5, 13, 14, 15, 16, 17, 29, 30, 31, 32, 33, 45, 46, 47, 61, 62, 100, 255, 257]


@pytest.mark.parametrize("n", WIDTHS)
def test_int32_row_leaves_match_the_reference(host: HostKernels, n: int) -> None:
    rng = np.random.default_rng(n)
    matrix = rng.integers(-(2**31), 2**31, size=(5, n), dtype=np.int64).astype(np.int32)
    matrix[0, :] = -1
    matrix[1, : min(n, 3)] = [-(2**31), 2**31 - 1, 0][: min(n, 3)]
    for stage, first in [(0, 0), (3, 17), (2**32 - 1, 2**32 - 5)]:
        got = host.row_leaves(matrix, stage, first)
        expected = [leaf_hash(stage, first + i, matrix[i].tobytes()) for i in range(5)]
        assert got == expected


@pytest.mark.parametrize("n", WIDTHS)
def test_float32_row_leaves_convert_exactly(host: HostKernels, n: int) -> None:
    rng = np.random.default_rng(1000 + n)
    exact = rng.integers(-(2**24) + 1, 2**24, size=(4, n)).astype(np.int32)
    got = host.row_leaves(exact.astype(np.float32), 9, 100)
    assert got == [leaf_hash(9, 100 + i, exact[i].astype("<i4").tobytes()) for i in range(4)]


def test_row_index_wraps_like_u32(host: HostKernels) -> None:
    matrix = np.arange(12, dtype=np.int32).reshape(3, 4)
    got = host.row_leaves(matrix, 1, 2**32 - 1)
    assert got[1] == leaf_hash(1, 0, matrix[1].tobytes())


@pytest.mark.parametrize("m", [1, 2, 4, 8, 64, 512])
def test_device_tree_matches_the_reference_tree(host: HostKernels, m: int) -> None:
    rng = random.Random(m)
    leaves = [rng.randbytes(32) for _ in range(m)]
    assert host.merkle_root(leaves) == merkle_root(leaves)


def test_merkle_plan_layout() -> None:
    assert kernels.merkle_plan(8) == [(0, 8, 4), (8, 12, 2), (12, 14, 1)]
    assert kernels.merkle_plan(1) == []
    assert kernels.node_slots(8) == 15
    with pytest.raises(ValueError):
        kernels.merkle_plan(6)


def test_a_whole_stage_on_the_host_build_matches_the_reference(host: HostKernels) -> None:
    params = ChallengeParams(m=32, n=20, k=48, v=15, stages=1)
    run = run_reference(BINDING, SEED, params)
    key = run.key(0)
    a = host.generate(params.m * params.k, key, 0, params.v).reshape(params.m, params.k)
    b = host.generate(params.k * params.n, key ^ B_OFFSET, 0, params.v).reshape(params.k, -1)
    leaves = host.row_leaves(a @ b, 0, 0)
    assert leaves == run.leaves[0]
    assert host.merkle_root(leaves) == run.roots[0]


# ---- the device build ------------------------------------------------------------------------


def test_the_source_compiles_for_the_gpu_with_nvcc(tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None
    )
    if nvcc is None:
        pytest.skip("nvcc is not installed; the GPU tests compile the source with NVRTC")
    source = tmp_path / "kernels.cu"
    source.write_text(kernels.SOURCE)
    ptx = tmp_path / "kernels.ptx"
    command = [nvcc, "-ptx", "-arch=sm_90", "-Werror", "all-warnings", "-o", str(ptx), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert built.returncode == 0, built.stderr
    entries = set(re.findall(r"\.visible \.entry (\w+)\(", ptx.read_text()))
    assert entries == set(kernels.KERNEL_NAMES)


# ---- the backend against a stand-in for CuPy -------------------------------------------------


class FakeArray(np.ndarray):
    """Device memory played by host memory, with CuPy's ``.data.ptr``."""

    @property
    def data(self) -> Any:
        return types.SimpleNamespace(ptr=self.ctypes.data)


class FakeCuda:
    """Just enough of ``cupy`` for the backend, strict about what real CuPy would get wrong:
    kernel arguments must be device arrays of the pointee's dtype or NumPy scalars of the
    parameter's width, and every launch, GEMM and copy must run on a non-default stream of the
    current device."""

    def __init__(self, host: HostKernels, devices: int = 1, free_bytes: int = 40 << 30) -> None:
        self.host = host
        self.free_bytes = free_bytes
        self.launches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
        self.fail_launch: str | None = None
        self.fail_alloc = False
        self.compute_type: int | None = None
        self.local = threading.local()
        self.lock = threading.Lock()
        fake = self

        class CUDARuntimeError(RuntimeError):
            pass

        class OutOfMemoryError(MemoryError):
            pass

        class Device:
            def __init__(self, index: int | None = None) -> None:
                self.id = fake.current_device() if index is None else index
                self.compute_capability = "90"

            def __enter__(self) -> Device:
                if not 0 <= self.id < devices:
                    raise CUDARuntimeError(f"invalid device ordinal {self.id}")
                fake.stack("devices").append(self.id)
                return self

            def __exit__(self, *exc: object) -> None:
                fake.stack("devices").pop()

        class Stream:
            def __init__(self, non_blocking: bool = False) -> None:
                assert non_blocking, "runs use non-blocking streams"
                self.device = fake.current_device()
                self.ptr = id(self)

            def __enter__(self) -> Stream:
                fake.stack("streams").append(self)
                return self

            def __exit__(self, *exc: object) -> None:
                fake.stack("streams").pop()

            def synchronize(self) -> None:
                pass

        class Event:
            def __init__(self, disable_timing: bool = False) -> None:
                self.recorded = False

            def record(self, stream: Stream | None = None) -> None:
                assert stream is fake.current_stream()
                self.recorded = True

            def synchronize(self) -> None:
                assert self.recorded

        def get_device_properties(index: int) -> dict[str, Any]:
            return {
                "name": b"NVIDIA H100 80GB HBM3",
                "uuid": bytes([0x8F, 0x2A, 0x1C, 0x3E] + [index] * 12),
                "totalGlobalMem": 80 << 30,
                "multiProcessorCount": 4,
            }

        def memcpy_async(dst: int, src: int, size: int, kind: int, stream: int) -> None:
            assert kind == 2
            assert stream == fake.current_stream().ptr
            ctypes.memmove(dst, src, size)

        runtime = types.SimpleNamespace(
            CUDARuntimeError=CUDARuntimeError,
            getDeviceCount=lambda: devices,
            getDeviceProperties=get_device_properties,
            memGetInfo=lambda: (fake.free_bytes, 80 << 30),
            memcpyAsync=memcpy_async,
            memcpyDeviceToHost=2,
        )
        self.cupy = types.ModuleType("cupy")
        self.cupy.__dict__.update(
            float32=np.float32,
            int32=np.int32,
            uint8=np.uint8,
            empty=self.empty,
            asarray=lambda x: np.array(x).view(FakeArray),
            asnumpy=lambda x: np.array(x).view(np.ndarray),
            matmul=self.matmul,
            RawModule=self.raw_module,
            get_default_memory_pool=lambda: types.SimpleNamespace(free_bytes=lambda: 0),
            cuda=types.SimpleNamespace(
                runtime=runtime,
                Device=Device,
                Stream=Stream,
                Event=Event,
                get_elapsed_time=lambda start, end: 2.5,
                memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
                driver=types.SimpleNamespace(CUDADriverError=CUDARuntimeError),
                compiler=types.SimpleNamespace(CompileException=CUDARuntimeError),
            ),
            _core=types.SimpleNamespace(
                _routines_linalg=types.SimpleNamespace(
                    COMPUTE_TYPE_TF32=7,
                    get_compute_type=lambda dtype: fake.compute_type or 1,
                    set_compute_type=self.set_compute_type,
                )
            ),
        )
        self.cupyx = types.ModuleType("cupyx")
        self.cupyx.__dict__.update(empty_pinned=lambda shape, dtype: np.empty(shape, dtype))
        self.errors = types.SimpleNamespace(runtime=CUDARuntimeError, oom=OutOfMemoryError)

    def stack(self, name: str) -> list[Any]:
        if not hasattr(self.local, name):
            setattr(self.local, name, [])
        found: list[Any] = getattr(self.local, name)
        return found

    def current_device(self) -> int:
        assert self.stack("devices"), "no CUDA device is current"
        device: int = self.stack("devices")[-1]
        return device

    def current_stream(self) -> Any:
        assert self.stack("streams"), "work issued on the legacy default stream"
        stream = self.stack("streams")[-1]
        assert stream.device == self.current_device(), "a stream of another device"
        return stream

    def set_compute_type(self, dtype: Any, compute_type: int) -> None:
        assert np.dtype(dtype) == np.float32
        self.compute_type = compute_type

    def empty(self, shape: Any, dtype: Any) -> FakeArray:
        self.current_device()
        if self.fail_alloc:
            raise self.errors.oom("out of memory allocating on the fake device")
        return np.zeros(shape, dtype).view(FakeArray)

    def matmul(self, a: FakeArray, b: FakeArray, *, out: FakeArray) -> FakeArray:
        self.current_stream()
        assert all(isinstance(x, FakeArray) for x in (a, b, out))
        assert a.dtype == b.dtype == out.dtype == np.float32
        np.matmul(a.view(np.ndarray), b.view(np.ndarray), out=out.view(np.ndarray))
        return out

    def raw_module(self, *, code: str, options: tuple[str, ...] = ()) -> Any:
        assert code is kernels.SOURCE, "the backend must compile kernels.SOURCE itself"
        assert options == kernels.NVRTC_OPTIONS
        return types.SimpleNamespace(get_function=self.kernel)

    def kernel(self, name: str) -> Any:
        function = getattr(self.host.lib, name)
        params = SIGNATURES[name]

        def launch(grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]) -> None:
            self.current_stream()
            assert all(isinstance(x, int) and x > 0 for x in (*grid, *block)), (grid, block)
            assert len(args) == len(params), name
            values = []
            for arg, (kind, pointee) in zip(args, params, strict=True):
                if kind == "ptr":
                    assert isinstance(arg, FakeArray), f"{name}: pass device arrays"
                    assert arg.dtype == pointee, f"{name}: {arg.dtype} for a {pointee} pointer"
                    assert arg.flags.c_contiguous
                    values.append(arg.ctypes.data)
                else:
                    width = np.dtype(np.uint64 if kind == "u64" else np.uint32)
                    assert isinstance(arg, np.generic), f"{name}: {arg!r} is no NumPy scalar"
                    assert arg.dtype == width, f"{name}: {arg.dtype} where {width} is expected"
                    values.append(int(arg))
            if self.fail_launch == name:
                raise self.errors.runtime("cudaErrorLaunchFailure: unspecified launch failure")
            with self.lock:
                self.launches.append((name, grid, block))
            function(*values)

        return launch


@pytest.fixture(autouse=True)
def _cuda_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend sets defaults in os.environ when it imports CuPy; keep them to each test."""
    monkeypatch.setenv("CUPY_TF32", "1")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")


@pytest.fixture
def fake(host: HostKernels, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCuda]:
    cuda = FakeCuda(host, devices=2)
    monkeypatch.setitem(sys.modules, "cupy", cuda.cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cuda.cupyx)
    monkeypatch.setitem(sys.modules, "cupy_backends", None)  # no cuBLAS error type to import
    yield cuda


def clock() -> float:
    return 0.0


def test_backend_reproduces_the_frozen_vectors(fake: FakeCuda) -> None:
    backend = CupyBackend()
    devices = backend.devices()
    assert [d.index for d in devices] == [0, 1]
    assert devices[0].uuid == "GPU-8f2a1c3e-0000-0000-0000-000000000000"
    assert devices[1].name == "NVIDIA H100 80GB HBM3" and devices[1].kind == "cuda"
    run = backend.run(devices[0], BINDING, SEED, SMALL, clock=clock)
    assert [r.hex() for r in run.roots] == SMALL_ROOTS
    assert fake.compute_type == 7  # TF32 allowed for float32 GEMMs


@pytest.mark.parametrize(
    "params",
    [
        ChallengeParams(m=16, n=24, k=40, v=15, stages=3),
        ChallengeParams(m=64, n=17, k=33, v=1, stages=2),
        ChallengeParams(m=2, n=1, k=1, v=1024, stages=4),
        ChallengeParams(m=128, n=64, k=256, v=15, stages=2),
    ],
)
def test_backend_matches_the_reference_and_its_openings_verify(
    fake: FakeCuda, params: ChallengeParams
) -> None:
    backend = CupyBackend()
    device = backend.devices()[1]
    run = backend.run(device, BINDING, SEED, params, clock=clock)
    reference = run_reference(BINDING, SEED, params)
    assert run.roots == reference.roots
    assert run.leaves == reference.leaves
    assert len(run.stage_seconds) == params.stages
    sampling = SamplingParams(stages=2, rows=3, columns=2)
    samples = draw_sample(params, sampling, random.Random(5))
    openings = [o for s in samples for o in backend.open(device, run, s.stage, s.rows)]
    commitment = Commitment(BINDING, SEED, params, tuple(run.roots))
    assert verify_openings(commitment, samples, openings) > 0
    for s in samples:
        assert backend.open(device, run, s.stage, s.rows) == open_rows(reference, s.stage, s.rows)


def test_launches_use_grid_stride_limits_and_one_tree_level_each(fake: FakeCuda) -> None:
    params = ChallengeParams(m=256, n=32, k=2048, v=15, stages=1)
    backend = CupyBackend()
    backend.run(backend.devices()[0], BINDING, SEED, params, clock=clock)
    names = [name for name, _, _ in fake.launches]
    assert names.count("bl_generate") == 2
    assert names.count("bl_row_leaves_f32") == 1
    assert names.count("bl_merkle_level") == 8  # log2(256)
    for name, grid, block in fake.launches:
        if name == "bl_generate":  # 4 SMs x 32 blocks at most: the rest is the grid stride
            assert grid[0] <= 4 * cupy_device.GENERATE_BLOCKS_PER_SM and block == (256,)
        if name == "bl_row_leaves_f32":
            assert grid[0] * block[0] >= params.m


def test_two_devices_run_concurrently(fake: FakeCuda) -> None:
    backend = CupyBackend()
    params = ChallengeParams(m=32, n=32, k=64, v=15, stages=3)
    bindings = [BINDING.model_copy(update={"gpu_uuid": d.uuid}) for d in backend.devices()]
    results: dict[int, list[bytes]] = {}

    def work(index: int) -> None:
        device = backend.devices()[index]
        results[index] = backend.run(device, bindings[index], SEED, params, clock=clock).roots

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index in range(2):
        assert results[index] == run_reference(bindings[index], SEED, params).roots
    assert results[0] != results[1]


def test_a_shape_that_does_not_fit_is_a_worker_failure(fake: FakeCuda) -> None:
    fake.free_bytes = 100 << 20
    backend = CupyBackend()
    params = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=1)
    with pytest.raises(WorkerFailure, match=r"8192x8192x8192 challenge needs 0\.75 GiB") as info:
        backend.run(backend.devices()[0], BINDING, SEED, params, clock=clock)
    assert outcome_of(info.value) == Outcome.TIMEOUT


def test_out_of_memory_and_cuda_errors_are_worker_failures(fake: FakeCuda) -> None:
    backend = CupyBackend()
    device = backend.devices()[0]
    fake.fail_alloc = True
    with pytest.raises(WorkerFailure, match="OutOfMemoryError"):
        backend.run(device, BINDING, SEED, SMALL, clock=clock)
    fake.fail_alloc = False
    fake.fail_launch = "bl_row_leaves_f32"
    with pytest.raises(WorkerFailure, match=r"CUDA device 0: the challenge failed: .*launch"):
        backend.run(device, BINDING, SEED, SMALL, clock=clock)
    fake.fail_launch = None
    missing = Device(uuid="GPU-x", name="gone", kind="cuda", index=7)
    with pytest.raises(WorkerFailure, match="invalid device ordinal"):
        backend.run(missing, BINDING, SEED, SMALL, clock=clock)
    with pytest.raises(WorkerFailure, match="not a CUDA device"):
        backend.run(Device(uuid="CPU-1", name="cpu", kind="cpu"), BINDING, SEED, SMALL, clock=clock)
    assert [r.hex() for r in backend.run(device, BINDING, SEED, SMALL, clock=clock).roots] == (
        SMALL_ROOTS
    )


def test_a_missing_nvrtc_is_a_worker_failure(fake: FakeCuda) -> None:
    def no_nvrtc(*, code: str, options: tuple[str, ...] = ()) -> Any:
        raise RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: cannot open shared object")

    fake.cupy.__dict__["RawModule"] = no_nvrtc
    backend = CupyBackend()
    with pytest.raises(WorkerFailure, match=r"compiling the challenge kernels failed.*\[ctk\]"):
        backend.run(backend.devices()[0], BINDING, SEED, SMALL, clock=clock)


def test_a_run_stops_between_stages(fake: FakeCuda) -> None:
    backend = CupyBackend()
    polls: list[int] = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(Abandoned, match="before stage 2"):
        backend.run(
            backend.devices()[0], BINDING, SEED, SMALL, clock=clock, should_stop=should_stop
        )


def test_open_refuses_rows_the_device_cannot_reproduce(fake: FakeCuda) -> None:
    backend = CupyBackend()
    device = backend.devices()[0]
    run = backend.run(device, BINDING, SEED, SMALL, clock=clock)
    assert backend.open(device, run, 1, []) == []
    with pytest.raises(IndexError):
        backend.open(device, run, 3, [0])
    with pytest.raises(IndexError):
        backend.open(device, run, 0, [SMALL.m])
    run.leaves[1][4] = bytes(32)
    with pytest.raises(WorkerFailure, match="row 4 of stage 1"):
        backend.open(device, run, 1, [2, 4])
    with pytest.raises(WorkerFailure, match="stored leaves of stage 1 do not match its root"):
        backend.open(device, run, 1, [2])  # row 2 itself is fine, its path is not
    assert backend.open(device, run, 0, [2])[0].row == 2


def test_open_without_a_workspace_of_the_shape_allocates_b(fake: FakeCuda) -> None:
    backend = CupyBackend()
    device = backend.devices()[0]
    run = backend.run(device, BINDING, SEED, SMALL, clock=clock)
    backend.release(device)
    reference = run_reference(BINDING, SEED, SMALL)
    assert backend.open(device, run, 2, [7, 0]) == open_rows(reference, 2, [7, 0])


def test_bare_gemm_profile_and_device_sha256(fake: FakeCuda) -> None:
    backend = CupyBackend()
    device = backend.devices()[0]
    assert backend.bare_gemm_seconds(device, SMALL, clock=clock) == pytest.approx(0.0025)
    profile = backend.profile_stage(device, SMALL)
    assert profile.total == pytest.approx(5 * 0.0025)
    messages = [*list(NIST)[:3], b"x" * 119, b"y" * 120]
    assert backend.sha256_on_device(device, messages) == [
        hashlib.sha256(m).digest() for m in messages
    ]
    assert backend.sha256_on_device(device, []) == []


def test_devices_are_matched_to_the_nvml_inventory_by_uuid(fake: FakeCuda) -> None:
    cuda0 = "GPU-8f2a1c3e-0000-0000-0000-000000000000"
    cuda1 = "GPU-8f2a1c3e-0101-0101-0101-010101010101"
    # NVML lists the GPUs in another order than CUDA does: the UUIDs decide, not the indices
    backend = CupyBackend({0: (cuda1.upper(), "NVIDIA H100 PCIe"), 1: cuda0})
    first, second = backend.devices()
    assert (first.index, first.uuid, first.name) == (0, cuda0, "NVIDIA H100 80GB HBM3")
    assert (second.index, second.uuid, second.name) == (1, cuda1.upper(), "NVIDIA H100 PCIe")
    assert [d.index for d in CupyBackend(devices=[1]).devices()] == [1]
    with pytest.raises(ConfigError, match="CUDA device 5 does not exist"):
        CupyBackend(devices=[5]).devices()


def test_a_device_without_a_cuda_uuid_takes_the_inventory_entry_of_its_index(
    fake: FakeCuda,
) -> None:
    properties = fake.cupy.cuda.runtime.getDeviceProperties
    fake.cupy.cuda.runtime.getDeviceProperties = lambda i: {**properties(i), "uuid": bytes(16)}
    backend = CupyBackend({1: ("GPU-11111111-2222-3333-4444-555555555555", "NVIDIA A100")})
    with pytest.raises(WorkerFailure, match="CUDA device 0 reports no complete UUID"):
        backend.devices()
    (device,) = CupyBackend({1: "GPU-11111111-2222-3333-4444-555555555555"}, devices=[1]).devices()
    assert device.uuid == "GPU-11111111-2222-3333-4444-555555555555"


def test_a_uuid_cut_at_a_zero_byte_is_matched_by_prefix(fake: FakeCuda) -> None:
    # CuPy converts the C char[16] like a string, so a UUID stops at its first zero byte
    full = ["GPU-8f2a0000-0000-0000-0000-000000000000", "GPU-8f2a1c00-0101-0101-0101-010101010101"]
    cut = [bytes([0x8F, 0x2A]), bytes([0x8F, 0x2A, 0x1C])]
    properties = fake.cupy.cuda.runtime.getDeviceProperties
    fake.cupy.cuda.runtime.getDeviceProperties = lambda i: {**properties(i), "uuid": cut[i]}
    # listed in the other order by NVML: the prefixes decide
    backend = CupyBackend({0: (full[1], "B"), 1: (full[0], "A")})
    assert [(d.uuid, d.name) for d in backend.devices()] == [(full[0], "A"), (full[1], "B")]
    with pytest.raises(WorkerFailure, match="no complete UUID"):
        CupyBackend().devices()


def test_cupy_is_imported_with_tf32_and_pci_order_by_default(
    fake: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUPY_TF32")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    assert cupy_device._import_cupy() is fake.cupy
    assert os.environ["CUPY_TF32"] == "1"
    assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"  # the operator's choice stays


def test_format_uuid() -> None:
    raw = bytes(range(1, 17))
    text = "GPU-01020304-0506-0708-090a-0b0c0d0e0f10"
    assert format_uuid(raw) == text
    assert format_uuid(text.upper()) == text
    assert format_uuid("0102030405060708090a0b0c0d0e0f10") == text
    assert format_uuid(list(raw)) == text
    for bad in (None, b"", bytes(16), "GPU-zz", 42.5, b"\x01" * 15):
        assert format_uuid(bad) is None
    assert cupy_device.uuid_bytes(text) == raw and cupy_device.uuid_bytes(1.5) is None


def test_unavailable_without_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert CupyBackend.available() is False
    assert cupy_device.cupy_available() is False
    assert CupyBackend().devices() == []
    with pytest.raises(WorkerFailure, match="CuPy is not installed"):
        CupyBackend().run(
            Device(uuid="GPU-1", name="x", kind="cuda", index=0), BINDING, SEED, SMALL, clock=clock
        )


def test_unavailable_when_the_driver_is_missing(fake: FakeCuda) -> None:
    def no_driver() -> int:
        raise fake.errors.runtime("cudaErrorInsufficientDriver")

    fake.cupy.cuda.runtime.getDeviceCount = no_driver
    assert CupyBackend.available() is False
    assert CupyBackend().devices() == []


def test_importing_the_backend_does_not_import_cupy() -> None:
    code = (
        "import sys, workers.backends.cupy_backend, workers.backends.kernels; "
        "assert 'cupy' not in sys.modules, 'imported cupy'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_memory_estimates() -> None:
    params = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=1)
    assert cupy_device.stage_buffer_bytes(params) == 3 * 4 * 8192**2 + 32 * (2 * 8192 - 1)
    assert cupy_device.open_buffer_bytes(params, 16) == 4 * (8192**2 + 16 * 8192 * 3) + 128
    assert cupy_device.split_digests(bytes(range(64)) + b"x", 2) == [
        bytes(range(32)),
        bytes(range(32, 64)),
    ]
    with pytest.raises(ValueError):
        cupy_device.split_digests(bytes(40), 2)


def test_leaf_layout_is_what_the_kernel_assumes() -> None:
    # the kernel reads the leaf message as 0x00 followed by n + 2 little-endian u32 values
    stage, row, values = 5, 9, [1, -2, 3]
    message = b"\x00" + struct.pack("<II", stage, row) + np.asarray(values, "<i4").tobytes()
    assert message == b"\x00" + struct.pack("<IIiii", stage, row, *values)
    assert len(message) == 1 + 4 * (len(values) + 2)
