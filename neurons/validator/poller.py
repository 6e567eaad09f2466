"""Inventory polls: which workers each miner has, and whether they are healthy right now.

Every registered miner that serves an endpoint (except this validator itself) is asked for its
inventory, with at most ``miners.max_concurrency`` requests in flight and
``miners.request_timeout_s`` per request. A successful poll is stored with
``record_inventory`` (healthy workers count in the current availability bucket); a failed one
with ``record_poll_failure`` (the miner's workers go offline, no availability is counted).

Each successful poll is also timed (request to valid answer, on a monotonic clock): the median of
a miner's last :data:`ROUND_TRIP_SAMPLES` is its measured round trip (:meth:`Poller.round_trip_s`),
which a challenge deadline allows for (SPEC 4.5). It lives in memory only.

**Bounds** (SPEC 5.5). An inventory lists at most ``miners.max_workers`` workers of at most
``miners.max_gpus_per_worker`` GPUs each (defaults: the protocol's ``MAX_WORKERS`` and
``MAX_GPUS``), in a body of at most :func:`~byteleap.protocol.common.inventory_max_bytes` of those
two. A body over the byte limit is refused while it is read (``too_large``), one over the
protocol's counts while it is decoded (``malformed``), one over this validator's lower counts as
:class:`InventoryOverLimit` (``inventory_limit``): each is a failed poll, stored with its reason,
and nothing of that inventory is recorded.

**Off the event loop.** The challenge timer shares the daemon's event loop, so a poll keeps only
its network I/O there. With an :class:`OffLoop` (the daemon's background store, a process of its
own, on PostgreSQL) the body goes there as bytes, and decoding it, checking it, building the
store's snapshots and ``record_inventory`` all run there (:func:`record_inventory_frame`).
Without one (SQLite, tests) decoding, checking and the snapshots (:func:`accept_inventory`) run
in one worker thread, and only ``record_inventory`` runs on the loop.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Protocol

import structlog

from byteleap.errors import (
    ByteLeapError,
    MalformedMessage,
    PeerTimeout,
    ProtocolError,
    StorageError,
)
from byteleap.protocol import codec
from byteleap.protocol.common import MAX_GPUS, MAX_WORKERS, inventory_max_bytes
from byteleap.protocol.miner_api.inventory import InventoryResponse, WorkerSummary
from neurons.common.miner_client import MinerClient
from neurons.validator.background_store import OffLoop
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


class InventoryOverLimit(ProtocolError):
    """The inventory lists more workers, or a worker more GPUs, than this validator accepts
    (``miners.max_workers``, ``miners.max_gpus_per_worker``); nothing of it is recorded."""

    code = "inventory_limit"


@dataclass(frozen=True, slots=True)
class InventoryLimits:
    """What this validator accepts from one miner: the protocol maxima or lower."""

    max_workers: int = MAX_WORKERS
    max_gpus_per_worker: int = MAX_GPUS

    def __post_init__(self) -> None:
        if not 1 <= self.max_workers <= MAX_WORKERS:
            raise ValueError(f"max_workers must be in 1..{MAX_WORKERS}")
        if not 1 <= self.max_gpus_per_worker <= MAX_GPUS:
            raise ValueError(f"max_gpus_per_worker must be in 1..{MAX_GPUS}")

    @property
    def max_bytes(self) -> int:
        """The largest inventory body read."""
        return inventory_max_bytes(self.max_workers, self.max_gpus_per_worker)


#: an error answer's body is decoded on the event loop only up to this size: an ``ApiError`` frame
#: is at most a few kilobytes, so a larger body cannot be one (and stands for its status alone)
MAX_ERROR_BODY = 64 * 1024


def check_limits(inventory: InventoryResponse, limits: InventoryLimits) -> None:
    """Raise :class:`InventoryOverLimit` when ``inventory`` is over this validator's limits."""
    if len(inventory.workers) > limits.max_workers:
        raise InventoryOverLimit(
            f"the inventory lists {len(inventory.workers)} workers; this validator accepts at "
            f"most {limits.max_workers} per miner (miners.max_workers)"
        )
    for worker in inventory.workers:
        if len(worker.gpus) > limits.max_gpus_per_worker:
            raise InventoryOverLimit(
                f"worker {worker.worker_pubkey[:16]}... lists {len(worker.gpus)} GPUs; this "
                f"validator accepts at most {limits.max_gpus_per_worker} per worker "
                "(miners.max_gpus_per_worker)"
            )


def accept_inventory(
    answer: InventoryResponse | bytes, miner_hotkey: str, limits: InventoryLimits
) -> list[WorkerSnapshot]:
    """The CPU work of one poll, never on the event loop: decode the miner's answer (when it is
    still a frame), check that it names the polled miner and is within ``limits``, and build the
    store's snapshots. Raises the ``ByteLeapError`` the poll fails with."""
    if isinstance(answer, bytes):
        message = codec.decode(answer, codec.MINER_RESPONSE, max_bytes=limits.max_bytes)
        if not isinstance(message, InventoryResponse):
            raise MalformedMessage(f"expected inventory_response, got {message.type}")
        inventory = message
    else:
        inventory = answer
    if inventory.miner_hotkey != miner_hotkey:
        raise MalformedMessage("the inventory names another miner hotkey")
    check_limits(inventory, limits)
    return [snapshot(w) for w in inventory.workers]


async def record_inventory_frame(
    store: ValidatorStore,
    body: bytes,
    miner_hotkey: str,
    limits: InventoryLimits,
    now: datetime,
    bucket_seconds: int,
) -> None:
    """A background-store job: :func:`accept_inventory` on a frame, then ``record_inventory``;
    an inventory that is refused records nothing."""
    workers = accept_inventory(body, miner_hotkey, limits)
    await store.record_inventory(now, miner_hotkey, workers, bucket_seconds=bucket_seconds)


async def fetch_inventory(client: InventoryApi, max_bytes: int) -> InventoryResponse | bytes:
    """Ask one miner for its inventory. A :class:`MinerClient` answers with the frame as received
    (read up to ``max_bytes``; signed request, transport and error answers as ``MinerClient``
    has them), so that decoding it can leave the event loop; any other client (a test's) with
    its model."""
    if not isinstance(client, MinerClient):
        return await client.inventory()
    client.max_response_bytes = min(client.max_response_bytes, max_bytes)
    status, body = await client._send(client._build_request("GET", "/inventory", None))
    if not 200 <= status < 300:
        raise client._error_for(status, body if len(body) <= MAX_ERROR_BODY else b"")
    return body


#: the thread that decodes inventories when no :class:`OffLoop` is given: one, so that polls in
#: flight never put more than one thread beside the event loop in the queue for the GIL
_DECODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byteleap-inventory")


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
        limits: InventoryLimits | None = None,
        off_loop: OffLoop | None = None,
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
        self.limits = limits or InventoryLimits()
        #: where decoding and recording run; None: decoding in a worker thread, recording on
        #: this loop's store
        self.off_loop = off_loop
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
        answer: InventoryResponse | bytes | None = None
        elapsed = 0.0
        try:
            started = self.monotonic()
            answer = await asyncio.wait_for(
                fetch_inventory(client, self.limits.max_bytes), self.request_timeout_s + 1.0
            )
            elapsed = self.monotonic() - started
        except ByteLeapError as exc:
            error = exc
        except TimeoutError:
            error = PeerTimeout("no inventory within the request timeout")
        finally:
            await client.aclose()
        try:
            if error is None and answer is not None:
                try:
                    await self._accept_and_record(answer, miner.hotkey, elapsed)
                except StorageError:
                    raise
                except ByteLeapError as exc:
                    error = exc
                else:
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

    async def _accept_and_record(
        self, answer: InventoryResponse | bytes, miner_hotkey: str, elapsed: float
    ) -> None:
        """Decode and check the answer away from this event loop, then record it; the round
        trip counts once the answer is known to be valid."""
        now, bucket_seconds = self.wall_clock(), self.bucket_seconds
        if self.off_loop is not None and isinstance(answer, bytes):
            try:
                await self.off_loop.run(
                    record_inventory_frame, answer, miner_hotkey, self.limits, now, bucket_seconds
                )
            except StorageError:  # valid, but not stored: our side's failure
                self._record_round_trip(miner_hotkey, elapsed)
                raise
            self._record_round_trip(miner_hotkey, elapsed)
            return
        loop = asyncio.get_running_loop()
        work = partial(accept_inventory, answer, miner_hotkey, self.limits)
        workers = await loop.run_in_executor(_DECODER, work)
        self._record_round_trip(miner_hotkey, elapsed)
        await self.store.record_inventory(now, miner_hotkey, workers, bucket_seconds=bucket_seconds)


__all__ = [
    "InventoryApi",
    "InventoryClientFactory",
    "InventoryLimits",
    "InventoryOverLimit",
    "PollSummary",
    "Poller",
    "accept_inventory",
    "check_limits",
    "fetch_inventory",
    "pollable",
    "record_inventory_frame",
    "snapshot",
]
