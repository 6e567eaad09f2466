"""The inventory poller's measured round trip per miner, on a fake clock, and the compute
capability it passes from the miner's inventory to the store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from byteleap.errors import PeerUnavailable
from byteleap.protocol.miner_api.inventory import GpuSummary, InventoryResponse, WorkerSummary
from neurons.validator.poller import ROUND_TRIP_SAMPLES, Poller
from neurons.validator.store.records import MinerRow, WorkerSnapshot

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
PUBKEY = "cd" * 32


def miner(uid: int, *, endpoint: str | None = "http://10.0.0.1:8091") -> MinerRow:
    return MinerRow(uid, f"5Miner{uid}", "5Cold", 1.0, False, endpoint, True, NOW)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeStore:
    inventories: list[tuple[str, list[WorkerSnapshot]]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    async def record_inventory(
        self,
        now: datetime,
        miner_hotkey: str,
        workers: Sequence[WorkerSnapshot],
        *,
        bucket_seconds: int,
    ) -> None:
        self.inventories.append((miner_hotkey, list(workers)))

    async def record_poll_failure(self, now: datetime, miner_hotkey: str, error: str) -> None:
        self.failures.append((miner_hotkey, error))


class FakeMiner:
    """A miner's inventory endpoint whose answers take ``delays[hotkey]`` seconds of the clock
    (the next one each call), or fail when ``failing`` names it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: dict[str, list[float]] = {}
        self.failing: set[str] = set()
        self.claimed_hotkey: dict[str, str] = {}

    def connect(self, hotkey: str, base_url: str, timeout: float) -> FakeMiner.Client:
        return FakeMiner.Client(self, hotkey)

    @dataclass
    class Client:
        owner: FakeMiner
        hotkey: str

        async def inventory(self) -> InventoryResponse:
            delays = self.owner.delays.get(self.hotkey, [])
            self.owner.clock.now += delays.pop(0) if delays else 0.0
            if self.hotkey in self.owner.failing:
                raise PeerUnavailable("connection refused")
            gpu = GpuSummary(
                uuid="GPU-1", name="NVIDIA H100", memory_total_mib=81559, compute_capability="9.0"
            )
            worker = WorkerSummary(
                worker_pubkey=PUBKEY, state="idle", gpus=[gpu], last_heartbeat=1.7e9
            )
            hotkey = self.owner.claimed_hotkey.get(self.hotkey, self.hotkey)
            return InventoryResponse(miner_hotkey=hotkey, workers=[worker])

        async def aclose(self) -> None:
            return None


def poller(
    store: FakeStore, miners: FakeMiner, clock: FakeClock, *, concurrency: int = 4
) -> Poller:
    return Poller(
        store=store,  # type: ignore[arg-type]
        connect=miners.connect,
        own_hotkey="5Validator",
        max_concurrency=concurrency,
        request_timeout_s=5.0,
        bucket_seconds=300,
        wall_clock=lambda: NOW,
        monotonic=clock,
    )


async def test_round_trip_is_the_median_of_the_last_successful_polls() -> None:
    clock = FakeClock()
    miners = FakeMiner(clock)
    store = FakeStore()
    polls = poller(store, miners, clock)
    a, b = miner(1), miner(2)
    assert polls.round_trip_s(a.hotkey) is None  # never polled

    miners.delays[a.hotkey] = [0.2, 0.1, 0.9]
    miners.delays[b.hotkey] = [0.05]
    for _ in range(3):
        await polls.poll(a)
    await polls.poll(b)
    assert polls.round_trip_s(a.hotkey) == pytest.approx(0.2)  # median of 0.2, 0.1, 0.9
    assert polls.round_trip_s(b.hotkey) == pytest.approx(0.05)

    # a failed poll adds nothing, and an inventory naming another miner is a failure too
    miners.failing.add(a.hotkey)
    miners.delays[a.hotkey] = [30.0]
    assert await polls.poll(a) is not None
    miners.failing.clear()
    miners.claimed_hotkey[a.hotkey] = "5Impostor"
    miners.delays[a.hotkey] = [40.0]
    assert await polls.poll(a) is not None
    del miners.claimed_hotkey[a.hotkey]
    assert polls.round_trip_s(a.hotkey) == pytest.approx(0.2)

    # only the last ROUND_TRIP_SAMPLES count: the early, fast polls age out
    miners.delays[a.hotkey] = [1.0] * ROUND_TRIP_SAMPLES
    for _ in range(ROUND_TRIP_SAMPLES - 1):
        await polls.poll(a)
    # 0.9 and 15 polls of 1.0 (0.2 and 0.1 aged out): the median is 1.0
    assert polls.round_trip_s(a.hotkey) == pytest.approx(1.0)
    miners.delays[a.hotkey] = [3.0] * (ROUND_TRIP_SAMPLES // 2 + 1)
    for _ in range(ROUND_TRIP_SAMPLES // 2 + 1):
        await polls.poll(a)
    assert polls.round_trip_s(a.hotkey) == pytest.approx(3.0)  # 9 of 3.0, 7 of 1.0


async def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    clock = FakeClock()
    miners = FakeMiner(clock)
    polls = poller(FakeStore(), miners, clock)
    a = miner(1)
    miners.delays[a.hotkey] = [0.1, 0.4, 0.2, 10.0]
    for _ in range(4):
        await polls.poll(a)
    assert polls.round_trip_s(a.hotkey) == pytest.approx(0.3)


async def test_miners_no_longer_polled_are_forgotten() -> None:
    clock = FakeClock()
    miners = FakeMiner(clock)
    # one poll at a time: the fake clock is shared, so overlapping polls would time each other
    polls = poller(FakeStore(), miners, clock, concurrency=1)
    a, b = miner(1), miner(2)
    miners.delays = {a.hotkey: [0.3], b.hotkey: [0.4]}
    summary = await polls.poll_all([a, b])
    assert set(summary.ok) == {a.hotkey, b.hotkey}
    assert polls.round_trip_s(a.hotkey) == pytest.approx(0.3)
    assert polls.round_trip_s(b.hotkey) == pytest.approx(0.4)

    # b lost its endpoint: it is not polled any more, and its round trip goes
    miners.delays = {a.hotkey: [0.5], b.hotkey: [0.5]}
    await polls.poll_all([a, miner(2, endpoint=None)])
    assert polls.round_trip_s(a.hotkey) == pytest.approx(0.4)  # median of 0.3 and 0.5
    assert polls.round_trip_s(b.hotkey) is None
    # nor does one that left the metagraph keep its round trip
    await polls.poll_all([])
    assert polls.round_trip_s(a.hotkey) is None


async def test_the_store_gets_each_gpus_compute_capability() -> None:
    clock = FakeClock()
    store = FakeStore()
    polls = poller(store, FakeMiner(clock), clock)
    assert await polls.poll(miner(1)) is None
    [(hotkey, [worker])] = store.inventories
    assert hotkey == "5Miner1"
    [gpu] = worker.gpus
    assert (gpu.uuid, gpu.model, gpu.compute_capability) == ("GPU-1", "NVIDIA H100", "9.0")
