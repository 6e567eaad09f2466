"""The CuPy backend on a real NVIDIA GPU: ``python -m pytest tests/gpu -m gpu``.

Every test here is marked ``gpu`` and skips cleanly where CuPy or a CUDA device is missing. The
oracles are the same as on the CPU: the frozen vectors, the NumPy reference prover, exact
verification and ``hashlib``. ``tests/unit/test_kernels_cpu.py`` checks the same kernel source
built for the host; these tests check the NVRTC build, cuBLAS with TF32, CuPy's streams and
copies, and real concurrency across GPUs.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from typing import Any

import numpy as np
import pytest

from byteleap.challenge.generate import B_OFFSET, matrix_a, matrix_b, splitmix_entries
from byteleap.challenge.merkle import leaf_hash, merkle_root
from byteleap.challenge.params import ChallengeParams, SamplingParams
from byteleap.challenge.reference import open_rows, run_reference
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.errors import WorkerFailure
from tests.support.vectors import (
    A0_ROW0_FIRST8,
    B0_ROW0_FIRST8,
    BINDING,
    KEY_0,
    SEED,
    SMALL,
    SMALL_ROOTS,
)
from workers.backends import kernels
from workers.backends.base import Device
from workers.backends.cupy_backend import CupyBackend
from workers.backends.cupy_device import format_uuid, uuid_bytes

pytestmark = pytest.mark.gpu

NIST = {
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq": (
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    ),
    b"a" * 1_000_000: "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
}


@pytest.fixture(scope="module")
def cp() -> Any:
    cupy = pytest.importorskip("cupy", exc_type=ImportError)
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, no device
        pytest.skip(f"no usable CUDA device: {exc}")
    if count < 1:
        pytest.skip("no CUDA device")
    return cupy


def nvml_inventory() -> dict[int, tuple[str, str]] | None:
    """index -> (uuid, name) from NVML, as the worker's inventory passes it; None without NVML."""
    try:
        import pynvml
    except ImportError:
        return None

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        found = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            found[index] = (
                text(pynvml.nvmlDeviceGetUUID(handle)),
                text(pynvml.nvmlDeviceGetName(handle)),
            )
        return found
    finally:
        pynvml.nvmlShutdown()


@pytest.fixture(scope="module")
def backend(cp: Any) -> CupyBackend:
    return CupyBackend(nvml_inventory())


@pytest.fixture(scope="module")
def device(backend: CupyBackend) -> Device:
    return backend.devices()[0]


@pytest.fixture(scope="module")
def module(cp: Any) -> Any:
    """The kernels compiled by NVRTC from exactly the backend's source."""
    with cp.cuda.Device(0):
        return cp.RawModule(code=kernels.SOURCE, options=kernels.NVRTC_OPTIONS)


def clock() -> float:
    return time.perf_counter()


def test_devices_look_like_nvml_reports_them(backend: CupyBackend) -> None:
    devices = backend.devices()
    assert devices and [d.index for d in devices] == list(range(len(devices)))
    for found in devices:
        assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", found.uuid)
        assert found.kind == "cuda" and found.memory_total_bytes


def test_devices_match_nvml(cp: Any) -> None:
    pynvml = pytest.importorskip("pynvml", exc_type=ImportError)
    inventory = nvml_inventory()
    assert inventory, "NVML lists no GPU"
    backend = CupyBackend(inventory)
    assert {d.uuid for d in backend.devices()} <= {uuid for uuid, _ in inventory.values()}
    pynvml.nvmlInit()
    try:
        for found in backend.devices():
            handle = pynvml.nvmlDeviceGetHandleByUUID(found.uuid)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            assert (uuid.decode() if isinstance(uuid, bytes) else uuid) == found.uuid
    finally:
        pynvml.nvmlShutdown()


def test_cuda_uuid_is_the_nvml_uuid_of_the_same_gpu(cp: Any) -> None:
    pynvml = pytest.importorskip("pynvml", exc_type=ImportError)
    pynvml.nvmlInit()
    try:
        compared = 0
        for index in range(int(cp.cuda.runtime.getDeviceCount())):
            raw = uuid_bytes(cp.cuda.runtime.getDeviceProperties(index).get("uuid"))
            if raw is None or len(raw) != 16:
                continue  # cut at a zero byte: matched by prefix, see test_kernels_cpu
            bus = cp.cuda.Device(index).pci_bus_id
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByPciBusId(bus))
            assert format_uuid(raw) == (uuid.decode() if isinstance(uuid, bytes) else uuid)
            compared += 1
    finally:
        pynvml.nvmlShutdown()
    if not compared:
        pytest.skip("every CUDA UUID here was cut at a zero byte")


def test_frozen_vectors(backend: CupyBackend, device: Device) -> None:
    run = backend.run(device, BINDING, SEED, SMALL, clock=clock)
    assert [r.hex() for r in run.roots] == SMALL_ROOTS
    assert run.key(0) == KEY_0


def test_frozen_first_entries_on_the_device(cp: Any, module: Any) -> None:
    generate = module.get_function("bl_generate")
    with cp.cuda.Device(0):
        out = cp.empty(8, dtype=cp.float32)
        args = (np.uint64(8), np.uint64(KEY_0), np.uint64(0), np.uint64(SMALL.v))
        generate((1,), (32,), (out, *args))
        assert cp.asnumpy(out).astype(int).tolist() == A0_ROW0_FIRST8
        args = (np.uint64(8), np.uint64(KEY_0 ^ B_OFFSET), np.uint64(0), np.uint64(SMALL.v))
        generate((1,), (32,), (out, *args))
        assert cp.asnumpy(out).astype(int).tolist() == B0_ROW0_FIRST8


@pytest.mark.parametrize("start", [0, 2**32 - 1000, 2**63 - 1000, 2**64 - 1000])
@pytest.mark.parametrize("v", [1, 15, 1024])
def test_generation_kernel_at_counter_boundaries(cp: Any, module: Any, start: int, v: int) -> None:
    generate = module.get_function("bl_generate")
    count = 100_000  # several grid strides with a small grid
    counters = np.arange(count, dtype=np.uint64) + np.uint64(start)
    for key in (0, 0x7D7F97AEB493AC31, 2**64 - 1):
        with cp.cuda.Device(0):
            out = cp.empty(count, dtype=cp.float32)
            args = (np.uint64(count), np.uint64(key), np.uint64(start), np.uint64(v))
            generate((8,), (128,), (out, *args))
            got = cp.asnumpy(out)
        expected = splitmix_entries(np, counters.copy(), key, v)
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_generation_kernel_matches_the_reference_matrices(cp: Any, module: Any) -> None:
    generate = module.get_function("bl_generate")
    params = ChallengeParams(m=64, n=96, k=200, v=15, stages=1)
    key = 0x0123_4567_89AB_CDEF
    with cp.cuda.Device(0):
        a = cp.empty((params.m, params.k), dtype=cp.float32)
        b = cp.empty((params.k, params.n), dtype=cp.float32)
        count_a, count_b = np.uint64(a.size), np.uint64(b.size)
        generate((4,), (256,), (a, count_a, np.uint64(key), np.uint64(0), np.uint64(params.v)))
        key_b = np.uint64(key ^ B_OFFSET)
        generate((4,), (256,), (b, count_b, key_b, np.uint64(0), np.uint64(params.v)))
        assert np.array_equal(cp.asnumpy(a), matrix_a(np, key, params))
        assert np.array_equal(cp.asnumpy(b), matrix_b(np, key, params))


@pytest.mark.parametrize("n", [1, 3, 13, 14, 15, 16, 17, 31, 45, 46, 100, 1000])
def test_row_leaf_kernel_matches_the_reference(cp: Any, module: Any, n: int) -> None:
    rows = 70
    rng = np.random.default_rng(n)
    matrix = rng.integers(-(2**31), 2**31, size=(rows, n), dtype=np.int64).astype(np.int32)
    leaves_i32 = module.get_function("bl_row_leaves_i32")
    leaves_f32 = module.get_function("bl_row_leaves_f32")
    exact = rng.integers(-(2**24) + 1, 2**24, size=(rows, n)).astype(np.int32)
    with cp.cuda.Device(0):
        out = cp.zeros(32 * rows, dtype=cp.uint8)
        args = (np.uint64(rows), np.uint64(n), np.uint32(5), np.uint32(40))
        leaves_i32((3,), (32,), (cp.asarray(matrix), *args, out))
        got_i32 = cp.asnumpy(out).tobytes()
        leaves_f32((3,), (32,), (cp.asarray(exact.astype(np.float32)), *args, out))
        got_f32 = cp.asnumpy(out).tobytes()
    for r in range(rows):
        assert got_i32[32 * r : 32 * r + 32] == leaf_hash(5, 40 + r, matrix[r].tobytes())
        assert got_f32[32 * r : 32 * r + 32] == leaf_hash(5, 40 + r, exact[r].tobytes())


def test_merkle_kernel_matches_the_reference(cp: Any, module: Any) -> None:
    level = module.get_function("bl_merkle_level")
    m = 1024
    leaves = [hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(m)]
    with cp.cuda.Device(0):
        nodes = cp.zeros(32 * kernels.node_slots(m), dtype=cp.uint8)
        nodes[: 32 * m] = cp.asarray(np.frombuffer(b"".join(leaves), dtype=np.uint8))
        for src, dst, count in kernels.merkle_plan(m):
            args = (nodes, np.uint64(src), np.uint64(dst), np.uint64(count))
            level((max(1, count // 64 + 1),), (64,), args)
        root = cp.asnumpy(nodes[-32:]).tobytes()
    assert root == merkle_root(leaves)


def test_device_sha256_nist_vectors(backend: CupyBackend, device: Device) -> None:
    messages = list(NIST)
    assert [d.hex() for d in backend.sha256_on_device(device, messages)] == list(NIST.values())
    rng = random.Random(11)
    lengths = [55, 56, 63, 64, 65, 119, 120, *range(0, 300, 7)]
    boundary = [rng.randbytes(n) for n in lengths]
    got = backend.sha256_on_device(device, boundary)
    assert got == [hashlib.sha256(m).digest() for m in boundary]


@pytest.mark.parametrize(
    "params",
    [
        ChallengeParams(m=16, n=24, k=40, v=15, stages=3),
        ChallengeParams(m=64, n=17, k=33, v=1, stages=2),
        ChallengeParams(m=32, n=100, k=15, v=1024, stages=2),
        ChallengeParams(m=512, n=300, k=1000, v=15, stages=2),
        ChallengeParams(m=256, n=256, k=65536, v=15, stages=1),  # partial sums near 2**24
    ],
    ids=lambda p: f"{p.m}x{p.n}x{p.k}v{p.v}",
)
def test_roots_equal_the_numpy_reference(
    backend: CupyBackend, device: Device, params: ChallengeParams
) -> None:
    run = backend.run(device, BINDING, SEED, params, clock=clock)
    reference = run_reference(BINDING, SEED, params, threads=4)
    assert run.roots == reference.roots
    assert run.leaves == reference.leaves


def test_openings_verify_and_equal_the_reference(backend: CupyBackend, device: Device) -> None:
    params = ChallengeParams(m=1024, n=520, k=768, v=15, stages=5)
    run = backend.run(device, BINDING, SEED, params, clock=clock)
    reference = run_reference(BINDING, SEED, params, threads=4)
    assert run.roots == reference.roots
    samples = draw_sample(params, SamplingParams(), random.Random(1))
    openings = [o for s in samples for o in backend.open(device, run, s.stage, s.rows)]
    commitment = Commitment(BINDING, SEED, params, tuple(run.roots))
    assert verify_openings(commitment, samples, openings) == 4 * 16 * 4
    for s in samples:
        assert backend.open(device, run, s.stage, s.rows) == open_rows(reference, s.stage, s.rows)


def test_tf32_is_allowed_for_float32_gemms(cp: Any, backend: CupyBackend, device: Device) -> None:
    backend.run(device, BINDING, SEED, SMALL, clock=clock)
    with cp.cuda.Device(device.index):
        capability = int(cp.cuda.Device().compute_capability)
    if capability < 80:
        pytest.skip("TF32 needs compute capability 8.0")
    linalg = cp._core._routines_linalg
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32


def test_bare_gemm_and_stage_profile(backend: CupyBackend, device: Device) -> None:
    params = ChallengeParams(m=2048, n=2048, k=2048, v=15, stages=1)
    seconds = backend.bare_gemm_seconds(device, params, clock=clock)
    assert 0 < seconds < 5
    profile = backend.profile_stage(device, params)
    assert profile.gemm > 0 and profile.hash_rows > 0 and profile.total > profile.gemm


def test_a_shape_that_does_not_fit_is_refused(cp: Any, device: Device) -> None:
    greedy = CupyBackend(memory_margin_bytes=1 << 50)
    with pytest.raises(WorkerFailure, match="GiB"):
        greedy.run(device, BINDING, SEED, SMALL, clock=clock)


def test_two_devices_concurrently(cp: Any, backend: CupyBackend) -> None:
    devices = backend.devices()
    if len(devices) < 2:
        pytest.skip("needs two GPUs")
    params = ChallengeParams(m=2048, n=2048, k=2048, v=15, stages=3)
    bindings = {d.uuid: BINDING.model_copy(update={"gpu_uuid": d.uuid}) for d in devices}
    roots: dict[str, list[bytes]] = {}
    errors: list[BaseException] = []

    def work(found: Device) -> None:
        try:
            roots[found.uuid] = backend.run(
                found, bindings[found.uuid], SEED, params, clock=clock
            ).roots
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for found in devices:
        assert (
            roots[found.uuid] == run_reference(bindings[found.uuid], SEED, params, threads=8).roots
        )
