"""The loop-stall benchmark's world: its settings, the lag monitor, the scratch database's miners
and workers, the stub miners' server in its own process, and the daemon's clock and chain."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.stub_process import StubProcess
from byteleap.protocol.common import MAX_GPUS, MAX_WORKERS
from byteleap.scoring import ScoringParams, availability_bucket_range
from neurons.validator.store.availability import buckets_per_row

NOW = datetime(2026, 12, 5, 12, 7, 30, tzinfo=UTC)


MODEL = "NVIDIA H100 80GB HBM3"


CHALLENGES_PER_WORKER = 24


#: the lag monitor's sleep
PERIOD_S = 0.005


TARGET_MS = 50.0


#: seconds between phases, unmeasured, for the database to settle
SETTLE_S = 2.0


PARAMS = ScoringParams()


# The miners: one asyncio HTTP/1.1 server in its own process. It builds each miner's inventory
# once (a miner's own encoder: codec.encode), then answers every GET /inventory with the body of
# the hotkey the request is addressed to (btauth/1's X-Bittensor-Receiver header).
STUB_SCRIPT = r"""
import asyncio, json, sys, time
from byteleap.protocol import codec
from byteleap.protocol.miner_api.inventory import GpuSummary, InventoryResponse, WorkerSummary

hotkeys, workers, gpus = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def body(index, hotkey):
    listed = [
        WorkerSummary.model_construct(
            worker_pubkey=f"{index:08x}{w:056x}", state="idle", last_heartbeat=time.time(),
            agent_version="0.1.0", backends=["numpy", "cupy"],
            gpus=[GpuSummary.model_construct(
                uuid=f"GPU-{index:04x}{w:04x}-{g:04x}-4000-8000-{index * 65536 + w:012x}",
                name="NVIDIA H100 80GB HBM3", memory_total_mib=81559, compute_capability="9.0",
            ) for g in range(gpus)],
        )
        for w in range(workers)
    ]
    return codec.encode(InventoryResponse.model_construct(
        type="inventory_response", protocol_version=1, miner_hotkey=hotkey, workers=listed))

bodies = {hotkey: body(i, hotkey) for i, hotkey in enumerate(hotkeys)}
served = [0]

async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get("content-length", "0")))
            data = bodies.get(headers.get("x-bittensor-receiver", ""))
            if data is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            else:
                served[0] += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-byteleap-frame\r\n"
                             b"content-length: %d\r\n\r\n" % len(data))
                writer.write(data)
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    sizes = sorted({len(b) for b in bodies.values()})
    print(json.dumps({"port": server.sockets[0].getsockname()[1], "bytes": sizes}), flush=True)
    while (await asyncio.to_thread(sys.stdin.readline)).strip() == "report":
        print(json.dumps({"served": served[0]}), flush=True)
    server.close()

asyncio.run(main())
"""


@dataclass(frozen=True)
class StallSettings:
    """What to measure, and how much."""

    database_url: str
    #: miners polled, each serving the largest allowed inventory
    polled: int = 16
    workers_per_miner: int = MAX_WORKERS
    gpus_per_worker: int = MAX_GPUS
    #: the scoring network: miners, and one-GPU workers in all
    scoring_miners: int = 256
    scoring_workers: int = 8000
    quick: bool = False


def quick_settings(database_url: str) -> StallSettings:
    return StallSettings(database_url, polled=2, scoring_workers=1000, quick=True)


def hotkey(i: int) -> str:
    return f"5Bench{i:05d}"


class LagMonitor:
    """A task that sleeps :data:`PERIOD_S` and records how late it wakes, in seconds."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(PERIOD_S)
            self.lags.append(max(0.0, time.perf_counter() - started - PERIOD_S))

    async def __aenter__(self) -> LagMonitor:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(PERIOD_S * 4)  # running before the work starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    def figures(self) -> dict[str, float]:
        lags = sorted(self.lags)
        p99 = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        return {
            "samples": len(lags),
            "longest_ms": lags[-1] * 1e3,
            "p99_ms": p99 * 1e3,
            "p50_ms": statistics.median(lags) * 1e3,
            "over_target": sum(1 for lag in lags if lag * 1e3 > TARGET_MS),
        }


async def measured(work: Callable[[], Awaitable[Any]] | Awaitable[Any]) -> dict[str, Any]:
    """Run ``work`` under a lag monitor: its wall and CPU seconds and the loop's stalls."""
    cpu = time.process_time()
    async with LagMonitor() as monitor:
        started = time.perf_counter()
        await (work if isinstance(work, Awaitable) else work())
        wall = time.perf_counter() - started
    return {"wall_s": wall, "cpu_s": time.process_time() - cpu, **monitor.figures()}


async def fill(dsn: str, settings: StallSettings, endpoint: str) -> None:
    """256 miners (the first ``polled`` serving ``endpoint``) with one-GPU workers, a week of
    hourly availability rows and a day of closed challenges, straight in SQL."""
    first, stop = availability_bucket_range(NOW, PARAMS)
    per_row = buckets_per_row(PARAMS.bucket_seconds)
    lo, hi = first // per_row, (stop - 1) // per_row
    full = (1 << per_row) - 1
    now = f"'{NOW.isoformat()}'::timestamptz"
    ones = "01" * per_row
    miners, workers = settings.scoring_miners, settings.scoring_workers
    statements = [
        f"""INSERT INTO miners (hotkey, uid, coldkey, stake, validator_permit, endpoint,
                registered, first_synced, last_synced)
            SELECT '5Bench' || lpad(i::text, 5, '0'), i, 'cold' || i, 100, false,
                CASE WHEN i < {settings.polled} THEN '{endpoint}' END, true, {now}, {now}
            FROM generate_series(0, {miners - 1}) AS i""",
        f"""INSERT INTO workers (id, miner_hotkey, worker_pubkey, state, online, first_seen,
                last_seen)
            SELECT i + 1, '5Bench' || lpad((i % {miners})::text, 5, '0'),
                'f' || lpad(to_hex(i), 63, '0'), 'idle', true, {now} - interval '200 hours', {now}
            FROM generate_series(0, {workers - 1}) AS i""",
        f"""INSERT INTO gpus (gpu_uuid, miner_hotkey, worker_pubkey, model, memory_mib,
                first_seen, last_seen, present)
            SELECT 'GPU-' || lpad(to_hex(w.id - 1), 8, '0') || '-fill', w.miner_hotkey,
                w.worker_pubkey, '{MODEL}', 81559, w.first_seen, {now}, true
            FROM workers w""",
        f"""INSERT INTO availability (worker_id, bucket_seconds, period, online_mask,
                online_count, gpu_buckets, seen_mask, max_gpus, bucket_gpus, seen_gpus)
            SELECT w.id, {PARAMS.bucket_seconds}, p.period, {full}, {per_row}, {per_row},
                {full}, 1, '{ones}', '{ones}'
            FROM workers w CROSS JOIN generate_series({lo}, {hi}) AS p(period)""",
        f"""INSERT INTO challenges (challenge_id, gpu_uuid, miner_hotkey, worker_pubkey,
                gpu_model, m, n, k, v, stages, seed, dispatched_at, deadline_at, committed_at,
                roots, closed_at, status, outcome, failure, throughput_flops, elapsed_s)
            SELECT 'c' || g.gpu_uuid || '-' || s.i, g.gpu_uuid, g.miner_hotkey, g.worker_pubkey,
                g.model, 8192, 8192, 8192, 15, 64, '\\x00'::bytea,
                {now} - s.i * interval '1 hour', {now} - s.i * interval '1 hour',
                {now} - s.i * interval '1 hour', NULL, {now} - s.i * interval '1 hour', 'closed',
                CASE WHEN (s.i + length(g.gpu_uuid)) % 20 = 0 THEN 'timeout' ELSE 'verified' END,
                NULL, 4.0e14, 1.4
            FROM gpus g CROSS JOIN generate_series(0, {CHALLENGES_PER_WORKER - 1}) AS s(i)""",
        "SELECT setval(pg_get_serial_sequence('workers', 'id'), (SELECT max(id) FROM workers))",
    ]
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for sql in statements:
                await conn.execute(sql)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


class StallStub(StubProcess):
    """The miners' stub server (``STUB_SCRIPT``) in its own process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, sizes: list[int]) -> None:
        super().__init__(process, port)
        self.sizes = sizes

    @classmethod
    async def start(cls, settings: StallSettings) -> StallStub:
        hotkeys = [hotkey(i) for i in range(settings.polled)]
        process, first = await cls.spawn(
            STUB_SCRIPT, json.dumps(hotkeys),
            str(settings.workers_per_miner), str(settings.gpus_per_worker),
        )  # fmt: skip
        return cls(process, int(first["port"]), list(first["bytes"]))

    async def served(self) -> int:
        return int((await self.ask_report())["served"])


class NoChain:
    """Neither a poll nor a scoring pass talks to the chain."""

    async def close(self) -> None:
        return None


class StallClock:
    """The daemon's wall clock: each poll round is a bucket of its own."""

    def __init__(self) -> None:
        self.now = NOW - timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now

    def next_bucket(self) -> None:
        self.now += timedelta(seconds=PARAMS.bucket_seconds)
