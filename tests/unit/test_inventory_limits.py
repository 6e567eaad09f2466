"""Bounded inventories (SPEC 5.5): the protocol refuses an oversized inventory while decoding, the
poller refuses one over its configured limits without recording any of it, and a poll decodes
away from the event loop.

Timing figures belong in docs/benchmarks.md (``bench/loop_stall.py``); the one timing assertion
here is loose (200 ms) and only says that the loop kept running while a large inventory was
decoded.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bittensor.sp_core import Keypair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byteleap.config import ValidatorConfig
from byteleap.errors import MalformedMessage
from byteleap.protocol import codec
from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_INVENTORY_BYTES,
    MAX_WORKERS,
    inventory_max_bytes,
)
from byteleap.protocol.miner_api.inventory import GpuSummary, InventoryResponse, WorkerSummary
from neurons.common.miner_client import MinerClient
from neurons.validator import poller as poller_module
from neurons.validator.poller import InventoryLimits, Poller, accept_inventory
from neurons.validator.store.records import MinerRow, WorkerSnapshot

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HOTKEY = "5MinerUnderTest"
VALIDATOR = Keypair.create_from_seed(bytes([21]) * 32)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def gpu(worker: int, index: int) -> GpuSummary:
    return GpuSummary.model_construct(
        uuid=f"GPU-{worker:08x}-{index:04x}-4000-8000-000000000000",
        name="NVIDIA H100 80GB HBM3",
        memory_total_mib=81559,
        compute_capability="9.0",
    )


def worker(index: int, gpus: int) -> WorkerSummary:
    """A worker as a miner reports it; built without validation, so it may break the limits."""
    return WorkerSummary.model_construct(
        worker_pubkey=f"{index:064x}",
        state="idle",
        gpus=[gpu(index, g) for g in range(gpus)],
        last_heartbeat=1.7e9,
        agent_version="0.1.0",
        backends=["numpy", "cupy"],
    )


def inventory(shape: Sequence[int], hotkey: str = HOTKEY) -> InventoryResponse:
    """One worker per entry of ``shape``, with that many GPUs (not validated)."""
    return InventoryResponse.model_construct(
        type="inventory_response",
        protocol_version=1,
        miner_hotkey=hotkey,
        workers=[worker(i, n) for i, n in enumerate(shape)],
    )


def frame(shape: Sequence[int]) -> bytes:
    return codec.encode(inventory(shape))


# --------------------------------------------------------------------------- the protocol


def test_the_limits_fit_the_codec() -> None:
    assert inventory_max_bytes(MAX_WORKERS, MAX_GPUS) == MAX_INVENTORY_BYTES
    # the JSON-header cap never refuses what the limits allow
    assert MAX_INVENTORY_BYTES <= codec.PREFIX_BYTES + codec.MAX_HEADER_BYTES
    assert ValidatorConfig().miners.max_inventory_bytes == MAX_INVENTORY_BYTES
    # ... and lower limits read less
    assert inventory_max_bytes(8, 8) < inventory_max_bytes(8, 16) < MAX_INVENTORY_BYTES


def test_an_inventory_at_the_protocol_limits_decodes_within_its_byte_limit() -> None:
    data = frame([MAX_GPUS] * MAX_WORKERS)
    # a miner's real inventory at the limits leaves room in the byte budget for longer names
    assert len(data) < 0.7 * MAX_INVENTORY_BYTES
    decoded = codec.decode(data, codec.MINER_RESPONSE, max_bytes=MAX_INVENTORY_BYTES)
    assert isinstance(decoded, InventoryResponse)
    assert len(decoded.workers) == MAX_WORKERS
    assert all(len(w.gpus) == MAX_GPUS for w in decoded.workers)


@FAST
@given(extra=st.integers(1, 64), gpus=st.integers(0, 2))
def test_decoding_refuses_too_many_workers(extra: int, gpus: int) -> None:
    data = frame([gpus] * (MAX_WORKERS + extra))
    with pytest.raises(MalformedMessage, match=f"at most {MAX_WORKERS} items"):
        codec.decode(data, codec.MINER_RESPONSE, max_bytes=codec.VALIDATOR_API_MAX_BYTES)


@FAST
@given(
    shape=st.lists(st.integers(0, MAX_GPUS), min_size=1, max_size=6),
    where=st.integers(0, 5),
    extra=st.integers(1, 48),
)
def test_decoding_refuses_a_worker_with_too_many_gpus(
    shape: list[int], where: int, extra: int
) -> None:
    shape[where % len(shape)] = MAX_GPUS + extra
    with pytest.raises(MalformedMessage, match=f"at most {MAX_GPUS} items"):
        codec.decode(frame(shape), codec.MINER_RESPONSE, max_bytes=MAX_INVENTORY_BYTES)


@FAST
@given(shape=st.lists(st.integers(0, MAX_GPUS), max_size=8))
def test_decoding_accepts_every_inventory_within_the_limits(shape: list[int]) -> None:
    decoded = codec.decode(frame(shape), codec.MINER_RESPONSE, max_bytes=MAX_INVENTORY_BYTES)
    assert isinstance(decoded, InventoryResponse)
    assert [len(w.gpus) for w in decoded.workers] == shape


# --------------------------------------------------------------------------- the poller


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


def miner_row(hotkey: str = HOTKEY) -> MinerRow:
    return MinerRow(1, hotkey, "5Cold", 1.0, False, "http://miner.test:8091", True, NOW)


def http_miner(body: bytes, status: int = 200) -> Any:
    """``connect`` for the poller: a real :class:`MinerClient` whose transport answers every
    request with ``body``."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, content=body, headers={"content-type": "application/x-byteleap-frame"}
        )

    def connect(hotkey: str, base_url: str, timeout: float) -> MinerClient:
        return MinerClient(
            VALIDATOR, hotkey, base_url, timeout=timeout, transport=httpx.MockTransport(answer)
        )

    return connect


def make_poller(store: FakeStore, connect: Any, limits: InventoryLimits | None = None) -> Poller:
    return Poller(
        store=store,  # type: ignore[arg-type]
        connect=connect,
        own_hotkey="5Validator",
        max_concurrency=4,
        request_timeout_s=10.0,
        bucket_seconds=300,
        wall_clock=lambda: NOW,
        limits=limits,
    )


@pytest.mark.parametrize(
    ("shape", "limits", "what"),
    [
        ([2, 2, 2], InventoryLimits(max_workers=2), "3 workers; this validator accepts at most 2"),
        ([2, 5, 1], InventoryLimits(max_gpus_per_worker=4), "5 GPUs; this validator accepts at"),
    ],
)
async def test_a_miner_over_the_configured_limits_is_refused_and_nothing_is_recorded(
    shape: list[int], limits: InventoryLimits, what: str
) -> None:
    store = FakeStore()
    polls = make_poller(store, http_miner(frame(shape)), limits)
    error = await polls.poll(miner_row())
    assert error is not None and error.startswith("inventory_limit: ")
    assert what in error
    assert store.inventories == []  # not one of its workers
    assert store.failures == [(HOTKEY, error)]
    assert polls.round_trip_s(HOTKEY) is None  # a refused answer is not a valid one

    # within the same limits the same miner is recorded whole
    fits = [min(n, limits.max_gpus_per_worker) for n in shape][: limits.max_workers]
    polls = make_poller(store, http_miner(frame(fits)), limits)
    assert await polls.poll(miner_row()) is None
    [(hotkey, workers)] = store.inventories
    assert hotkey == HOTKEY
    assert [len(w.gpus) for w in workers] == fits


async def test_a_body_over_the_byte_limit_is_refused_while_it_is_read() -> None:
    limits = InventoryLimits(max_workers=4, max_gpus_per_worker=2)
    body = frame([2] * 4)
    assert len(body) <= limits.max_bytes
    padded = body + b" " * (limits.max_bytes - len(body) + 1)
    store = FakeStore()
    error = await make_poller(store, http_miner(padded), limits).poll(miner_row())
    assert error is not None and error.startswith("too_large: ")
    assert store.inventories == []
    assert [hotkey for hotkey, _ in store.failures] == [HOTKEY]


async def test_an_inventory_over_the_protocol_limits_fails_the_poll_as_malformed() -> None:
    store = FakeStore()
    polls = make_poller(store, http_miner(frame([MAX_GPUS + 1])))
    error = await polls.poll(miner_row())
    assert error is not None and error.startswith("malformed: ")
    assert store.inventories == []


async def test_a_miner_error_body_is_decoded_off_the_loop_too() -> None:
    body = codec.encode(codec.api_error_for(MalformedMessage("no")))
    store = FakeStore()
    error = await make_poller(store, http_miner(body, status=400)).poll(miner_row())
    assert error is not None and error.startswith("malformed: miner: ")
    assert store.inventories == []


def test_accept_inventory_checks_the_hotkey_before_the_limits() -> None:
    body = frame([1] * 3)
    with pytest.raises(MalformedMessage, match="another miner hotkey"):
        accept_inventory(body, "5SomebodyElse", InventoryLimits(max_workers=1))
    assert len(accept_inventory(body, HOTKEY, InventoryLimits())) == 3


async def test_a_large_error_body_is_not_decoded_and_stands_for_its_status() -> None:
    # an ApiError frame is a few kilobytes: anything larger is judged by its status alone
    body = codec.encode(codec.api_error_for(MalformedMessage("x" * 1000))) + b" " * 70_000
    store = FakeStore()
    error = await make_poller(store, http_miner(body, status=503)).poll(miner_row())
    assert error is not None and error.startswith("link: HTTP 503 without an ApiError body")


async def test_a_poll_decodes_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A moderately large inventory (512 workers x 16 GPUs, about 1.2 MB) through a real
    MinerClient: decoding and checking it runs in another thread, and a lag monitor on the loop
    never waits long (bound kept loose: timings are the benchmark's business)."""
    body = frame([MAX_GPUS] * 512)
    threads: list[int] = []
    accept = poller_module.accept_inventory

    def spy(*args: Any) -> list[WorkerSnapshot]:
        threads.append(threading.get_ident())
        return accept(*args)

    monkeypatch.setattr(poller_module, "accept_inventory", spy)
    store = FakeStore()
    polls = make_poller(store, http_miner(body))
    lags: list[float] = []
    done = asyncio.Event()

    async def monitor() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    # as the daemon does after start-up: a full collection over this test process's heap (every
    # test module, hypothesis, ...) would stop every thread, whichever one triggered it
    gc.collect()
    gc.freeze()
    watcher = asyncio.create_task(monitor())
    await asyncio.sleep(0.02)
    try:
        for _ in range(3):
            assert await polls.poll(miner_row()) is None
    finally:
        done.set()
        await watcher
        gc.unfreeze()
    assert threads and threading.get_ident() not in threads
    assert len(store.inventories) == 3
    assert sum(len(w.gpus) for w in store.inventories[0][1]) == 512 * MAX_GPUS
    assert max(lags) < 0.2, f"the loop was blocked for {max(lags) * 1000:.0f} ms"
