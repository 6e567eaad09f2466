"""``compute.pace_flops``: a paced NumPy device takes at least FLOP / pace seconds per challenge.

The devnet sets it on every worker so that a CPU shared by a dozen processes behaves like one
simulated GPU of a fixed speed; without it nothing sleeps.
"""

from __future__ import annotations

import threading
import time

import pytest

from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import run_reference
from byteleap.config import WorkerConfig, validate_config
from byteleap.crypto import WorkerKey
from byteleap.errors import ConfigError
from byteleap.protocol.inventory import HostInfo, Inventory
from workers.backends.base import Abandoned
from workers.backends.numpy_backend import NumpyBackend
from workers.backends.select import choose_backend

PARAMS = ChallengeParams(m=32, n=32, k=32, v=15, stages=4)
SEED = bytes(range(32))
KEY = WorkerKey.from_seed(bytes([3]) * 32)
BINDING = Binding(
    miner_hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
    worker_pubkey=KEY.public_key,
    gpu_uuid="CPU-test",
)


class FakeTime:
    """A clock that only sleeping moves (computing takes no time on it)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def backend(pace_flops: float | None, fake: FakeTime | None = None) -> NumpyBackend:
    device = NumpyBackend.for_worker(KEY.public_key, "Test CPU").devices()[0]
    if fake is None:
        return NumpyBackend(device, threads=1, pace_flops=pace_flops)
    return NumpyBackend(device, threads=1, pace_flops=pace_flops, sleep=fake.sleep)


def test_a_paced_run_takes_at_least_flops_over_pace_in_real_time() -> None:
    paced = backend(PARAMS.flops / 0.3)  # the whole run: at least 0.3 s
    device = paced.devices()[0]
    began = time.perf_counter()
    run = paced.run(device, BINDING, SEED, PARAMS, clock=time.perf_counter)
    elapsed = time.perf_counter() - began
    assert elapsed >= 0.3
    assert elapsed < 3.0  # it sleeps for the rest, no more
    # pacing changes the timing only, never the result
    assert run.roots == run_reference(BINDING, SEED, PARAMS, clock=time.perf_counter).roots
    assert sum(run.stage_seconds) >= 0.3 - 0.01  # the stage timings show the pace too


def test_each_stage_ends_on_the_pace_and_sleeps_make_up_for_slow_compute() -> None:
    fake = FakeTime()
    pace = PARAMS.flops / 2.0  # 0.5 s per stage
    paced = backend(pace, fake)
    run = paced.run(paced.devices()[0], BINDING, SEED, PARAMS, clock=fake.clock)
    assert fake.now == pytest.approx(100.0 + 2.0)
    assert run.stage_seconds == pytest.approx([0.5] * 4)
    assert all(s <= 0.05 + 1e-9 for s in fake.sleeps)  # short slices: a stop is seen quickly


def test_without_a_pace_nothing_sleeps() -> None:
    fake = FakeTime()
    unpaced = backend(None, fake)
    assert unpaced.pace_flops is None
    unpaced.run(unpaced.devices()[0], BINDING, SEED, PARAMS, clock=fake.clock)
    assert fake.sleeps == []
    assert fake.now == 100.0


def test_a_stop_is_honoured_while_pacing() -> None:
    paced = backend(PARAMS.flops / 30.0)  # 30 s if nobody stops it
    stop = threading.Event()
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    began = time.perf_counter()
    try:
        with pytest.raises(Abandoned, match="pacing"):
            paced.run(
                paced.devices()[0],
                BINDING,
                SEED,
                PARAMS,
                clock=time.perf_counter,
                should_stop=stop.is_set,
            )
    finally:
        timer.cancel()
    assert time.perf_counter() - began < 2.0


def test_a_pace_must_be_positive() -> None:
    device = NumpyBackend.for_worker(KEY.public_key, "Test CPU").devices()[0]
    with pytest.raises(ValueError, match="positive"):
        NumpyBackend(device, pace_flops=0.0)


def test_the_worker_config_takes_a_pace_for_numpy_and_refuses_it_with_cupy() -> None:
    assert WorkerConfig().compute.pace_flops is None
    numpy = validate_config(WorkerConfig, {"compute": {"backend": "numpy", "pace_flops": 1e7}})
    assert numpy.compute.pace_flops == 1e7
    auto = validate_config(WorkerConfig, {"compute": {"pace_flops": 2e9}})
    assert auto.compute.pace_flops == 2e9
    with pytest.raises(ConfigError, match=r"compute\.pace_flops") as refused:
        validate_config(WorkerConfig, {"compute": {"backend": "cupy", "pace_flops": 1e7}})
    assert "cupy" in str(refused.value)
    with pytest.raises(ConfigError, match="pace_flops"):
        validate_config(WorkerConfig, {"compute": {"backend": "numpy", "pace_flops": 0}})


def test_the_numpy_backend_chosen_from_the_config_is_paced() -> None:
    inventory = Inventory(
        host=HostInfo(
            hostname="h",
            cpu_model="Test CPU",
            cpu_count_logical=2,
            memory_total_bytes=8 << 30,
            memory_available_bytes=4 << 30,
        ),
        gpus=[],
        backends=["numpy"],
    )
    chosen = choose_backend("numpy", KEY.public_key, inventory, pace_flops=5e6)
    assert isinstance(chosen, NumpyBackend) and chosen.pace_flops == 5e6
    plain = choose_backend("numpy", KEY.public_key, inventory)
    assert isinstance(plain, NumpyBackend) and plain.pace_flops is None
