"""Inventory polls and the scoring pass with the daemon's ``BackgroundStore``, on a real database.

On PostgreSQL the poll's decoding and recording, and the whole scoring pass, run in the background
store's own process, on its own connections; on SQLite there is no background store (the daemon
keeps one connection) and only the pure work leaves the loop, for worker threads. Either way a
miner over the configured limits is refused and none of its workers reach the database.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bittensor.sp_core import Keypair

from byteleap.chain import NeuronView
from byteleap.errors import StorageError
from byteleap.protocol import codec
from byteleap.protocol.miner_api.inventory import GpuSummary, InventoryResponse, WorkerSummary
from byteleap.scoring import ScoringParams
from neurons.common.miner_client import MinerClient
from neurons.validator import poller as poller_module
from neurons.validator import weights as weights_module
from neurons.validator.background_store import BackgroundStore, worker_counts
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.poller import InventoryLimits, Poller
from neurons.validator.store import SqlStore
from neurons.validator.weights import WeightSetter

NOW = datetime(2026, 6, 1, 12, 2, tzinfo=UTC)
VALIDATOR = Keypair.create_from_seed(bytes([31]) * 32)
HONEST, GREEDY = "5MinerHonest", "5MinerGreedy"


def gpu(hotkey: str, worker: int, index: int) -> GpuSummary:
    return GpuSummary(
        uuid=f"GPU-{hotkey}-{worker}-{index}",
        name="NVIDIA H100 80GB HBM3",
        memory_total_mib=81559,
        compute_capability="9.0",
    )


def inventory(hotkey: str, shape: Sequence[int]) -> bytes:
    workers = [
        WorkerSummary(
            worker_pubkey=f"{w:064x}",
            state="idle",
            gpus=[gpu(hotkey, w, g) for g in range(n)],
            last_heartbeat=1.7e9,
        )
        for w, n in enumerate(shape)
    ]
    return codec.encode(InventoryResponse(miner_hotkey=hotkey, workers=workers))


def connect_to(bodies: dict[str, bytes]) -> Any:
    def connect(hotkey: str, base_url: str, timeout: float) -> MinerClient:
        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=bodies[hotkey])

        return MinerClient(
            VALIDATOR, hotkey, base_url, timeout=timeout, transport=httpx.MockTransport(answer)
        )

    return connect


class NoChain:
    """Every score is 0 here, so nothing is ever set on the chain."""


def spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Record the thread of every call of ``module.name`` in this process."""
    threads: list[int] = []
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return threads


async def test_polls_and_scoring_leave_the_event_loop(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = ValidatorMetrics()
    background = BackgroundStore.for_store(store, pool_size=2, metrics=metrics)
    assert (background is not None) == (store.dialect == "postgresql")
    accepted = spy(monkeypatch, poller_module, "accept_inventory")
    scored = spy(monkeypatch, weights_module, "weigh")
    await store.sync_miners(
        NOW, [NeuronView(1, HONEST, "c1", 1.0, False), NeuronView(2, GREEDY, "c2", 1.0, False)]
    )
    miners = [replace(row, endpoint="http://miner.test:8091") for row in await store.miners()]
    poller = Poller(
        store=store,
        connect=connect_to({HONEST: inventory(HONEST, [4, 4]), GREEDY: inventory(GREEDY, [4] * 3)}),
        own_hotkey="5Validator",
        max_concurrency=4,
        request_timeout_s=10.0,
        bucket_seconds=300,
        wall_clock=lambda: NOW,
        metrics=metrics,
        limits=InventoryLimits(max_workers=2, max_gpus_per_worker=8),
        off_loop=background,
    )
    setter = WeightSetter(
        store=store,
        chain=NoChain(),  # type: ignore[arg-type]
        params=ScoringParams(),
        wall_clock=lambda: NOW,
        metrics=metrics,
        off_loop=background,
    )
    try:
        summary = await poller.poll_all(miners)
        assert summary.ok == (HONEST,)
        assert summary.failed[GREEDY].startswith("inventory_limit: the inventory lists 3 workers")
        workers = await store.workers(NOW)
        assert {w.miner_hotkey for w in workers} == {HONEST}  # none of the greedy miner's
        assert sum(len(w.gpus) for w in workers) == 8
        greedy = next(m for m in await store.miners() if m.hotkey == GREEDY)
        assert greedy.last_poll_error is not None and "miners.max_workers" in greedy.last_poll_error

        vector = await setter.compute(NOW)
        assert set(vector.inputs.miners) == {HONEST, GREEDY}
        assert set(vector.result.miners) == {HONEST, GREEDY}
        # nobody was challenged: every score is 0, the submission is skipped, and stored with
        # the whole explanation (per-GPU scores included) whichever process scored it
        attempt = await setter.submit()
        assert attempt.submission.status == "skipped"
        [stored] = await store.weight_submissions()
        assert len(stored.inputs["miners"][HONEST]["gpus"]) == 8
        assert stored.inputs["uids"] == {HONEST: 1, GREEDY: 2}
        if background is not None:  # the per-GPU scores came back as compressed JSON only
            assert vector.record is not None and vector.result.miners[HONEST].gpus == ()
        else:
            assert vector.record is None and len(vector.result.miners[HONEST].gpus) == 8

        main = threading.get_ident()
        if background is not None:  # in the background process: never in this one
            assert accepted == [] and scored == []
            assert await background.run(worker_counts, NOW) == (2, 2)
        else:  # decoding in the poller's thread, scoring in a worker thread
            assert len(accepted) == 2 and len(scored) == 2
            assert main not in accepted and main not in scored
    finally:
        if background is not None:
            await background.aclose()
    if background is not None:
        with pytest.raises(StorageError, match="closed"):
            await background.run(worker_counts, NOW)
