"""Inventory polls: which workers each miner has, and whether they are healthy right now.

Every registered miner that serves an endpoint (except this validator itself) is asked for its
inventory, with at most ``miners.max_concurrency`` requests in flight and
``miners.request_timeout_s`` per request. A successful poll is stored with
``record_inventory`` (healthy workers count in the current availability bucket); a failed one
with ``record_poll_failure`` (the miner's workers go offline, no availability is counted).

Each successful poll is also timed (request to valid answer, on a monotonic clock): the median of
a miner's last :data:`ROUND_TRIP_SAMPLES` is its measured round trip (:meth:`Poller.round_trip_s`),
which a challenge deadline allows for (SPEC 4.5). It lives in memory only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from byteleap.errors import ByteLeapError, MalformedMessage, PeerTimeout, StorageError
from byteleap.protocol.validator_api import InventoryResponse, WorkerSummary
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import (
    GpuSnapshot,
    MinerRow,
    ValidatorStore,
    WorkerSnapshot,
)

log = structlog.get_logger("byteleap.validator.poll")

#: successful polls per miner whose durations the round-trip median is taken over
ROUND_TRIP_SAMPLES = 16


class InventoryApi(Protocol):
    async def inventory(self) -> InventoryResponse: ...

    async def aclose(self) -> None: ...


#: ``connect(miner_hotkey, base_url, timeout)`` -> a client of that miner
InventoryClientFactory = Callable[[str, str, float], InventoryApi]


@dataclass(frozen=True, slots=True)
class PollSummary:
    ok: tuple[str, ...] = ()
    #: miner hotkey -> the error stored for it
    failed: dict[str, str] = field(default_factory=dict)


def snapshot(worker: WorkerSummary) -> WorkerSnapshot:
    """The store's record of one worker the miner listed.

    The miner lists only workers whose link is up and whose heartbeats are on time, so a listed
    worker is healthy; the miner's ``last_heartbeat`` is on the miner's clock and is not compared
    with ours."""
    return WorkerSnapshot(
        worker_pubkey=worker.worker_pubkey,
        state=worker.state,
        gpus=tuple(
            GpuSnapshot(
                uuid=gpu.uuid,
                model=gpu.name,
                memory_mib=gpu.memory_total_mib,
                compute_capability=gpu.compute_capability,
            )
            for gpu in worker.gpus
        ),
        healthy=True,
    )


def pollable(miners: Sequence[MinerRow], own_hotkey: str) -> list[MinerRow]:
    """Registered miners with an endpoint, never the validator itself."""
    return [m for m in miners if m.registered and m.endpoint and m.hotkey != own_hotkey]


class Poller:
    def __init__(
        self,
        *,
        store: ValidatorStore,
        connect: InventoryClientFactory,
        own_hotkey: str,
        max_concurrency: int,
        request_timeout_s: float,
        bucket_seconds: int,
        wall_clock: Callable[[], datetime],
        metrics: ValidatorMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.connect = connect
        self.own_hotkey = own_hotkey
        self.max_concurrency = max_concurrency
        self.request_timeout_s = request_timeout_s
        self.bucket_seconds = bucket_seconds
        self.wall_clock = wall_clock
        self.metrics = metrics or ValidatorMetrics()
        self.monotonic = monotonic
        #: miner hotkey -> seconds of its last successful polls, newest last
        self._round_trips: dict[str, deque[float]] = {}

    def round_trip_s(self, miner_hotkey: str) -> float | None:
        """The median duration of the miner's last :data:`ROUND_TRIP_SAMPLES` successful polls
        (request sent to a valid inventory received); None before its first success."""
        samples = self._round_trips.get(miner_hotkey)
        return statistics.median(samples) if samples else None

    def _record_round_trip(self, miner_hotkey: str, seconds: float) -> None:
        samples = self._round_trips.get(miner_hotkey)
        if samples is None:
            samples = self._round_trips[miner_hotkey] = deque(maxlen=ROUND_TRIP_SAMPLES)
        samples.append(max(0.0, seconds))

    async def poll_all(self, miners: Sequence[MinerRow]) -> PollSummary:
        """Poll every pollable miner once."""
        gate = asyncio.Semaphore(self.max_concurrency)
        targets = pollable(miners, self.own_hotkey)
        polled = {m.hotkey for m in targets}
        for hotkey in [h for h in self._round_trips if h not in polled]:
            del self._round_trips[hotkey]  # no longer polled (deregistered, no endpoint)

        async def one(miner: MinerRow) -> tuple[str, str | None]:
            async with gate:
                return miner.hotkey, await self.poll(miner)

        results = await asyncio.gather(*(one(m) for m in targets))
        ok = tuple(hotkey for hotkey, error in results if error is None)
        failed = {hotkey: error for hotkey, error in results if error is not None}
        return PollSummary(ok, failed)

    async def poll(self, miner: MinerRow) -> str | None:
        """Poll one miner and store the result; the error stored, or None on success."""
        assert miner.endpoint is not None
        client = self.connect(miner.hotkey, miner.endpoint, self.request_timeout_s)
        error: ByteLeapError | None = None
        inventory: InventoryResponse | None = None
        try:
            started = self.monotonic()
            inventory = await asyncio.wait_for(client.inventory(), self.request_timeout_s + 1.0)
            elapsed = self.monotonic() - started
            if inventory.miner_hotkey != miner.hotkey:
                raise MalformedMessage("the inventory names another miner hotkey")
            self._record_round_trip(miner.hotkey, elapsed)
        except ByteLeapError as exc:
            error = exc
        except TimeoutError:
            error = PeerTimeout("no inventory within the request timeout")
        finally:
            await client.aclose()
        try:
            if error is None and inventory is not None:
                workers = [snapshot(w) for w in inventory.workers]
                await self.store.record_inventory(
                    self.wall_clock(), miner.hotkey, workers, bucket_seconds=self.bucket_seconds
                )
                self.metrics.polls.labels(result="ok").inc()
                return None
            assert error is not None
            text = f"{error.code}: {error.message}"[:500]
            self.metrics.polls.labels(result="failed").inc()
            log.info("poll_failed", miner=miner.hotkey, uid=miner.uid, error=text)
            await self.store.record_poll_failure(self.wall_clock(), miner.hotkey, text)
            return text
        except StorageError as exc:
            log.warning("poll_not_stored", miner=miner.hotkey, error=exc.message)
            return f"storage: {exc.message}"
        except Exception as exc:  # our bug: one miner's poll must not stop the others'
            log.exception("poll_crashed", miner=miner.hotkey)
            return f"internal: {exc!r}"


__all__ = [
    "InventoryApi",
    "InventoryClientFactory",
    "PollSummary",
    "Poller",
    "pollable",
    "snapshot",
]
