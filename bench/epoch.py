"""One challenge epoch at 256 miners x 100 workers x 8 GPUs: planning, storing, the dispatch spread
and the validator's CPU seconds per epoch, measured side by side in one run.

    python bench/epoch.py                  # 256 miners x 100 workers x 8 GPUs (about 2 minutes)
    python bench/epoch.py --quick          # 16 x 20 x 8 and small samples (targets not judged)
    python bench/epoch.py --skip-db        # no PostgreSQL: planning, dispatch and unit costs only
    python bench/epoch.py --json out.json  # also write the figures as JSON

SPEC 4.5 wants every idle GPU of every miner dispatched within ``epoch_spread_s`` (target 2 s).
Everything timed here is the validator's own code:

1. **Planning.** The workers are filled straight into a scratch PostgreSQL database (8 H100 SXM
   GPUs each: "NVIDIA H100 80GB HBM3", 81559 MiB, capability 9.0; each miner's endpoint is the
   stub below), read back with ``SqlStore.workers`` and planned by the real ``EpochPlanner.plan``
   with the catalogue's rates (``calibrate([])``), as ``ValidatorDaemon.plan_once`` does.
2. **Storing** and 3. **dispatch.** The real ``Challenger.run_epoch`` runs that plan with the
   real ``MinerClient`` (btauth/1 signed by a real offline validator wallet, real HTTP over
   127.0.0.1, one client per miner as the daemon's ``connect`` builds it). The store it is given
   passes ``open_challenges`` to PostgreSQL (timed) and only counts the closes (closing is
   measured per unit below). The miners are one stub HTTP server in a separate process, so its
   CPU is not the validator's; it serves every miner hotkey on one port, timestamps each request
   when its body is in (``time.monotonic``: CLOCK_MONOTONIC is shared by all processes) and,
   ``--answer-after`` seconds later (default: the challenge's expected time, when an honest
   card's commit would come), streams one ``EpochFailure("unavailable")`` record per challenge.
   An answer in time is excused; one the Challenger judges past its deadline is a timeout, so
   the timeouts count honest-timed answers lost to the validator's own dispatch.
4. **The rest of an epoch, per unit**, on samples, multiplied out to the whole epoch: checking
   one worker's commit record at the planned R (decode, the miner's signature, each GPU's worker
   signature, shape and plausibility: ``MinerClient.check_challenge_response`` and
   ``Challenger._check_commits``), ``record_commit`` and ``close_challenges`` per worker on
   PostgreSQL, one reveal per worker over HTTP (8 GPUs x r x s rows of n int32), handing each
   GPU's ``VerifyJob`` to the pool (pickling), the exact and the Merkle-only
   ``verify_openings`` per GPU at the default shape on one core, and the share ``p`` of the GPUs
   that ``VerifyBudget`` lets the pool verify exactly. CPU seconds are ``time.process_time``;
   the database's are its backends' CPU (psutil), where the server runs on this machine.

PostgreSQL comes from ``--database-url``, else ``BYTELEAP_TEST_DATABASE_URL``, else
``postgresql://postgres@127.0.0.1:5432/postgres``; a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import os
import pickle
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import asyncpg
import bittensor as bt
import httpx
import numpy as np
import psutil
import structlog
from bittensor.sp_core import Keypair
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from byteleap.challenge.generate import matrix_a, matrix_b, stage_key
from byteleap.challenge.merkle import build_levels, leaf_hash, proof
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import canonical_product
from byteleap.challenge.sizing import CalibrationSettings, ExpectedRates, calibrate
from byteleap.challenge.verify import StageSample, draw_sample
from byteleap.config.validator import ChallengeSection
from byteleap.crypto import WorkerKey
from byteleap.errors import ByteLeapError, Outcome
from byteleap.protocol import codec
from byteleap.protocol.stream import RecordReader, encode_record
from byteleap.protocol.validator_api import (
    ChallengeRequest,
    ChallengeResponse,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
    evidence_payload,
)
from byteleap.protocol.worker_link import GpuCommit, OpeningRequest, RowOpening
from byteleap.sessions.round_checks import check_commits
from byteleap.sessions.round_planner import EpochPlan, EpochPlanner, PlannedChallenge, deadline_ms
from byteleap.sessions.round_records import VerifyJob
from neurons.common.miner_client import EpochArrival, MinerClient
from neurons.validator.challenger import Challenger
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store import ChallengeOpen, ChallengeVerdict, SqlStore, open_store
from neurons.validator.store.records import GpuSnapshot, WorkerRow
from neurons.validator.verification import Verifier, verify_job
from neurons.validator.verify_budget import DEFAULT_VERIFY_S, VerifyBudget

GPU_NAME = "NVIDIA H100 80GB HBM3"
GPU_MEMORY_MIB = 81559
GPU_CAPABILITY = "9.0"
#: the challenge id of the sampled reveals (the stub answers every ``/reveal`` with one body)
REVEAL_ID = "bench-reveal"
#: bytes per read of a commit record, as a socket hands them over
CHUNK = 64 * 1024
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)
console = Console() if sys.stdout.isatty() else Console(width=150)

# The miners: one asyncio HTTP/1.1 server in its own process, for every miner hotkey. It parses
# only what it must (the request line, the headers, the EpochRequest's JSON header for the
# challenge ids) so that its own work does not delay the timestamps. Commands on stdin:
# "report" prints what it saw as one JSON line and forgets it; anything else stops it.
STUB_SCRIPT = r"""
import asyncio, json, resource, struct, sys, time
from byteleap.protocol.stream import encode_record
from byteleap.protocol.validator_api import EpochFailure

REVEAL_PATH, ANSWER_AFTER = sys.argv[1], float(sys.argv[2])
PLACEHOLDER = "c" * 32  # Challenger ids are 16 random bytes in hex
MESSAGE = "worker is busy"

def failure(cid):
    return encode_record(EpochFailure(challenge_id=cid, code="unavailable", message=MESSAGE))

TEMPLATE = failure(PLACEHOLDER)
seen = []
reveal = []

def record(cid):
    if len(cid) == len(PLACEHOLDER):  # the same bytes encode_record makes, without pydantic
        return TEMPLATE.replace(PLACEHOLDER.encode(), cid.encode(), 1)
    return failure(cid)

async def answer_epoch(writer, entry, body):
    (size,) = struct.unpack_from("<I", body, 4)
    ids = [c["challenge_id"] for c in json.loads(body[8 : 8 + size])["challenges"]]
    entry["challenges"] = len(ids)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-byteleap-records\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(max(0.0, entry["at"] + ANSWER_AFTER - time.monotonic()))
    out = bytearray()
    for cid in ids:
        one = record(cid)
        out += b"%x\r\n" % len(one) + one + b"\r\n"
    out += b"0\r\n\r\n"
    writer.write(bytes(out))
    await writer.drain()
    entry["answered"] = time.monotonic()

async def handle(reader, writer):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            headed = time.monotonic()
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            entry = {"path": path, "receiver": headers.get("x-bittensor-receiver"),
                     "headers_at": headed, "at": time.monotonic(), "bytes": len(body)}
            seen.append(entry)
            if path == "/epoch":
                await answer_epoch(writer, entry, body)
            elif path == "/reveal":
                if not reveal:
                    reveal.append(open(REVEAL_PATH, "rb").read())
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-byteleap-frame\r\n"
                             b"content-length: %d\r\n\r\n" % len(reveal[0]))
                writer.write(reveal[0])
                await writer.drain()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    while (await asyncio.to_thread(sys.stdin.readline)).strip() == "report":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"requests": seen, "cpu_s": usage.ru_utime + usage.ru_stime}),
              flush=True)
        seen.clear()
    server.close()

asyncio.run(main())
"""


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What to measure, and how much."""

    miners: int = 256
    workers_per_miner: int = 100
    gpus_per_worker: int = 8
    #: libpq URL of a server where a scratch database may be created; None: no database
    database_url: str | None = None
    commit_sample: int = 200
    store_sample: int = 1000
    reveal_sample: int = 12
    verify_repeats: int = 9
    #: seconds from a request's arrival to its answer; None: the challenge's expected time
    answer_after_s: float | None = None
    #: challenge parameters for the unit costs; None: what the planner sized (tests shrink it)
    unit_params: ChallengeParams | None = None
    section: ChallengeSection = field(default_factory=ChallengeSection)

    @property
    def workers(self) -> int:
        return self.miners * self.workers_per_miner

    @property
    def gpus(self) -> int:
        return self.workers * self.gpus_per_worker


def quick_settings(database_url: str | None) -> Settings:
    return Settings(
        miners=16,
        workers_per_miner=20,
        database_url=database_url,
        commit_sample=20,
        store_sample=100,
        reveal_sample=3,
        verify_repeats=3,
    )


# --------------------------------------------------------------------------- clocks


@dataclass
class Cost:
    """Wall seconds, this process's CPU seconds and the database backends' CPU seconds."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    db_cpu_s: float | None = None


class DbCpu:
    """CPU seconds of the PostgreSQL backends serving the scratch database (psutil), when the
    server runs on this machine; ``None`` otherwise."""

    def __init__(self, admin: asyncpg.Connection | None, database: str | None) -> None:
        self.admin, self.database = admin, database

    async def sample(self) -> dict[int, float] | None:
        if self.admin is None:
            return None
        pids = await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
        )
        out: dict[int, float] = {}
        for row in pids:
            try:
                times = psutil.Process(row["pid"]).cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
            out[row["pid"]] = times.user + times.system
        return out

    @staticmethod
    def spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
        if before is None or after is None:
            return None
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Meter:
    """``async with meter.measure() as cost:`` fills ``cost`` when the block ends."""

    def __init__(self, db: DbCpu) -> None:
        self.db = db

    def measure(self) -> _Measured:
        return _Measured(self.db)


class _Measured:
    def __init__(self, db: DbCpu) -> None:
        self.db, self.cost = db, Cost()

    async def __aenter__(self) -> Cost:
        self._db = await self.db.sample()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self.cost

    async def __aexit__(self, *exc: object) -> None:
        self.cost.wall_s = time.perf_counter() - self._wall
        self.cost.cpu_s = time.process_time() - self._cpu
        self.cost.db_cpu_s = DbCpu.spent(self._db, await self.db.sample())


# --------------------------------------------------------------------------- the network


@dataclass(frozen=True)
class Miner:
    uid: int
    keypair: Keypair

    @property
    def hotkey(self) -> str:
        return str(self.keypair.ss58_address)


def make_miners(count: int) -> list[Miner]:
    return [
        Miner(i, Keypair.create_from_seed(hashlib.sha256(b"bench-miner-%d" % i).digest()))
        for i in range(count)
    ]


def worker_pubkey(index: int) -> str:
    return hashlib.sha256(b"bench-worker-%d" % index).hexdigest()


def gpu_uuid(worker: int, gpu: int) -> str:
    return f"GPU-{worker:08x}-bench-{gpu}"


def network(settings: Settings, miners: Sequence[Miner], endpoint: str) -> list[WorkerRow]:
    """Every worker, as ``SqlStore.workers`` returns them (for the runs without a database)."""
    out = []
    for miner in miners:
        for w in range(settings.workers_per_miner):
            index = miner.uid * settings.workers_per_miner + w
            gpus = tuple(
                GpuSnapshot(gpu_uuid(index, g), GPU_NAME, GPU_MEMORY_MIB, GPU_CAPABILITY)
                for g in range(settings.gpus_per_worker)
            )
            out.append(
                WorkerRow(miner.hotkey, miner.uid, endpoint, worker_pubkey(index), "idle", True,
                          NOW, gpus)
            )  # fmt: skip
    return out


async def fill(dsn: str, settings: Settings, miners: Sequence[Miner], endpoint: str) -> None:
    """The miners, workers and GPUs, copied straight into the tables (not an ingest rate)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "miners",
            records=[(m.hotkey, m.uid, f"cold{m.uid}", 100.0, False, endpoint, True, NOW, NOW)
                     for m in miners],
            columns=["hotkey", "uid", "coldkey", "stake", "validator_permit", "endpoint",
                     "registered", "first_synced", "last_synced"],
        )  # fmt: skip
        workers, gpus = [], []
        for miner in miners:
            for w in range(settings.workers_per_miner):
                index = miner.uid * settings.workers_per_miner + w
                pubkey = worker_pubkey(index)
                workers.append((miner.hotkey, pubkey, "idle", True, NOW, NOW))
                gpus += [
                    (gpu_uuid(index, g), miner.hotkey, pubkey, GPU_NAME, GPU_MEMORY_MIB,
                     GPU_CAPABILITY, NOW, NOW, True)
                    for g in range(settings.gpus_per_worker)
                ]  # fmt: skip
        await conn.copy_records_to_table(
            "workers", records=workers,
            columns=["miner_hotkey", "worker_pubkey", "state", "online", "first_seen",
                     "last_seen"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "gpus", records=gpus,
            columns=["gpu_uuid", "miner_hotkey", "worker_pubkey", "model", "memory_mib",
                     "compute_capability", "first_seen", "last_seen", "present"],
        )  # fmt: skip
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


class Stub:
    """The miners' stub server (``STUB_SCRIPT``) in its own process."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    async def start(cls, reveal_path: Path, answer_after_s: float) -> Stub:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STUB_SCRIPT, str(reveal_path), repr(answer_after_s),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )  # fmt: skip
        assert process.stdout is not None
        first = json.loads(await process.stdout.readline())
        return cls(process, int(first["port"]))

    async def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"report\n")
        await self.process.stdin.drain()
        return dict(json.loads(await self.process.stdout.readline()))

    async def stop(self) -> None:
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.write(b"stop\n")
            try:
                await self.process.stdin.drain()
                await asyncio.wait_for(self.process.wait(), 10)
            except (TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()


def make_wallet(root: Path) -> bt.Wallet:
    """A real bittensor wallet, created offline, unencrypted."""
    wallet = bt.Wallet("bench-validator", "default", path=str(root))
    wallet.create_new_coldkey(use_password=False, suppress=True)
    wallet.create_new_hotkey(use_password=False, suppress=True)
    return wallet


# --------------------------------------------------------------------------- the epoch


@dataclass
class DispatchLog:
    """What the validator side saw of each miner's ``POST /epoch``, on ``time.monotonic``."""

    #: the Challenger's clock start for the miner (read just before it calls ``epoch``)
    started: dict[str, float] = field(default_factory=dict)
    #: when the request was handed to the HTTP transport, and when its response headers came
    sent: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: when the miner's last record was completely received
    last_record: dict[str, float] = field(default_factory=dict)
    records: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    #: seconds spent in the ``connect`` factory (building each miner's client)
    connect_s: float = 0.0


class TimedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport (an SSL context each, as an ``httpx.AsyncClient`` makes it), noting
    when each ``/epoch`` request is handed over and when its response headers are in."""

    def __init__(self, log: DispatchLog, miner: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.log, self.miner = log, miner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        handed = time.monotonic()
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/epoch"):
            self.log.sent[self.miner] = (handed, time.monotonic())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class ProbedClient:
    """A real :class:`MinerClient` for the Challenger, noting what its epoch stream did."""

    def __init__(self, client: MinerClient, log: DispatchLog) -> None:
        self.client, self.log = client, log

    def prepare_epoch(self, request: EpochRequest, *, wait_s: float) -> object:
        return self.client.prepare_epoch(request, wait_s=wait_s)

    async def epoch(
        self,
        request: EpochRequest,
        *,
        wait_s: float,
        clock: Callable[[], float],
        prepared: object = None,
    ) -> AsyncIterator[EpochArrival]:
        miner = self.client.miner_hotkey
        self.log.started[miner] = time.monotonic()
        async for arrival in self.client.epoch(
            request,
            wait_s=wait_s,
            clock=clock,
            prepared=prepared,  # type: ignore[arg-type]
        ):
            self.log.records += 1
            self.log.last_record[miner] = arrival.at
            if isinstance(arrival.result, ByteLeapError):
                self.log.failures[arrival.result.code] += 1
            yield arrival

    async def reveal(self, request: OpeningsRequest) -> OpeningsResponse:
        return await self.client.reveal(request)

    async def aclose(self) -> None:
        await self.client.aclose()


class EpochStore:
    """The store ``run_epoch`` is given: ``open_challenges`` goes to PostgreSQL when there is
    one (timed); commits and closes are only counted (measured per unit elsewhere)."""

    def __init__(self, store: SqlStore | None, meter: Meter) -> None:
        self.store, self.meter = store, meter
        self.opened: list[ChallengeOpen] = []
        self.open_cost: Cost | None = None
        self.outcomes: Counter[str] = Counter()
        self.commits = 0

    async def open_challenges(self, challenges: Sequence[ChallengeOpen]) -> None:
        self.opened = list(challenges)
        if self.store is not None:
            async with self.meter.measure() as cost:
                await self.store.open_challenges(challenges)
            self.open_cost = cost

    async def record_commit(self, *args: object) -> None:
        self.commits += 1

    async def close_challenges(self, verdicts: Sequence[ChallengeVerdict]) -> None:
        self.outcomes.update(v.outcome.value for v in verdicts)

    async def challenge(self, challenge_id: str) -> list[object]:
        return []


class LogCount:
    """A structlog processor that counts events by name (the logs themselves are rendered as
    the daemon renders them, to /dev/null, so their cost is counted)."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()

    def __call__(
        self, _logger: object, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.events[str(event.get("event"))] += 1
        return event


@contextmanager
def daemon_logs() -> Iterator[LogCount]:
    """structlog as the daemon configures it (JSON at INFO), written to /dev/null so that the
    logs cost what they cost; the events are counted by name. The old set-up is restored."""
    counted = LogCount()
    saved = structlog.get_config()
    with open(os.devnull, "w") as devnull:
        structlog.configure(
            processors=[
                counted,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(20),  # INFO
            logger_factory=structlog.PrintLoggerFactory(file=devnull),
            cache_logger_on_first_use=False,
        )
        try:
            yield counted
        finally:
            structlog.configure(**saved)


def spread(values: Sequence[float]) -> float:
    return max(values) - min(values) if values else 0.0


def catalogue_rates(section: ChallengeSection) -> ExpectedRates:
    """The expected rates before the network has verified anything: the catalogue's."""
    return calibrate(
        [],
        CalibrationSettings(
            cpu_expected_flops=section.cpu_expected_flops,
            unknown_flops=section.unknown_flops,
            percentile=section.calibration_percentile,
            min_miners=section.calibration_min_miners,
            floor=section.calibration_floor,
        ),
    )


def expected_seconds(settings: Settings) -> float:
    """The expected time of this network's challenges (every worker is the same), planned for
    one worker alone."""
    one = replace(settings, miners=1, workers_per_miner=1)
    plan = EpochPlanner(settings.section, random.Random(0)).plan(
        network(one, make_miners(1), "http://127.0.0.1:1"),
        rates=catalogue_rates(settings.section),
    )
    return plan.challenges[0].sizing.expected_s


async def plan_epoch(
    settings: Settings, store: SqlStore | None, meter: Meter, miners: Sequence[Miner], url: str
) -> tuple[EpochPlan, dict[str, Any]]:
    section = settings.section
    out: dict[str, Any] = {"read_s": None, "read_cpu_s": None, "read_db_cpu_s": None}
    if store is not None:
        async with meter.measure() as read:
            workers = await store.workers(NOW)
        out.update(read_s=read.wall_s, read_cpu_s=read.cpu_s, read_db_cpu_s=read.db_cpu_s)
    else:
        workers = network(settings, miners, url)
    rates = catalogue_rates(section)
    planner = EpochPlanner(section, random.Random(1))
    wall, cpu = time.perf_counter(), time.process_time()
    plan = planner.plan(workers, rates=rates)
    out.update(
        plan_s=time.perf_counter() - wall, plan_cpu_s=time.process_time() - cpu,
        listed_workers=len(workers), planned_workers=len(plan.challenges), planned_gpus=plan.gpus,
        skipped=len(plan.skipped),
    )  # fmt: skip
    return plan, out


async def dispatch(
    settings: Settings,
    plan: EpochPlan,
    epoch_store: EpochStore,
    stub: Stub,
    wallet: bt.Wallet,
) -> dict[str, Any]:
    """``Challenger.run_epoch`` against the stub; the figures of its dispatch."""
    log = DispatchLog()

    def connect(miner_hotkey: str, base_url: str, timeout: float) -> ProbedClient:
        begun = time.perf_counter()
        transport = TimedTransport(log, miner_hotkey)
        client = MinerClient(wallet, miner_hotkey, base_url, timeout=timeout, transport=transport)
        log.connect_s += time.perf_counter() - begun
        return ProbedClient(client, log)

    first_reading: list[float] = []

    def monotonic() -> float:
        """The Challenger's clock; its first reading is the epoch's start (``epoch_t0``), from
        which every deadline runs."""
        now = time.monotonic()
        if not first_reading:
            first_reading.append(now)
        return now

    verifier = Verifier(settings.section.verifier_processes)  # no commit, so never started
    challenger = Challenger(
        store=epoch_store,  # type: ignore[arg-type]
        connect=connect,
        verifier=verifier,
        section=settings.section,
        metrics=ValidatorMetrics(),
        wall_clock=lambda: datetime.now(UTC),
        monotonic=monotonic,
        # the stub answers "unavailable" as a cheap stand-in for a commit: as if a lease we
        # know of explained it, so an answer in time is excused and a late one is a timeout
        known_lease=lambda _key: True,
    )
    stub_before = (await stub.report())["cpu_s"]  # its start-up is not the epoch's
    try:
        with daemon_logs() as counted:
            wall, cpu = time.perf_counter(), time.process_time()
            report = await challenger.run_epoch(plan)
            epoch_wall, epoch_cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await challenger.aclose()
        verifier.close()
    seen = await stub.report()
    epochs = [r for r in seen["requests"] if r["path"] == "/epoch"]
    arrived = {r["receiver"]: r["at"] for r in epochs}
    opened = epoch_store.open_cost or Cost()
    sends = [s[0] for s in log.sent.values()]
    epoch_t0 = first_reading[0] if first_reading else time.monotonic()
    lag = [arrived[m] - log.started[m] for m in arrived if m in log.started]
    since_epoch = [at - epoch_t0 for at in arrived.values()]
    first_send = min(sends) if sends else epoch_t0
    answered = [r["answered"] - r["at"] for r in epochs if "answered" in r]
    sizing = plan.challenges[0].sizing
    return {
        "miners": len(plan.by_miner()),
        "requests_arrived": len(epochs),
        "distinct_receivers": len(arrived),
        "challenges_in_requests": sum(r.get("challenges", 0) for r in epochs),
        "request_bytes": sum(r["bytes"] for r in epochs),
        "records_received": log.records,
        "record_codes": dict(log.failures),
        "verdicts": dict(epoch_store.outcomes),
        "answer_after_s": statistics.median(answered) if answered else None,
        "expected_s": sizing.expected_s,
        "deadline_s": sizing.deadline_s,
        # the Challenger's own figure (metric byteleap_validator_epoch_spread_seconds)
        "challenger_spread_s": report.spread_s,
        "send_spread_s": spread(sends),
        "arrival_spread_s": spread(list(arrived.values())),
        "epoch_start_to_first_send_s": first_send - epoch_t0,
        "epoch_start_to_arrival_median_s": statistics.median(since_epoch) if lag else None,
        "epoch_start_to_last_arrival_s": max(since_epoch) if since_epoch else None,
        "lag_median_s": statistics.median(lag) if lag else None,
        "lag_max_s": max(lag) if lag else None,
        "connect_s": log.connect_s,
        "first_send_to_last_record_s": (max(log.last_record.values()) - first_send)
        if log.last_record
        else None,
        "run_epoch_wall_s": epoch_wall - opened.wall_s,
        "run_epoch_cpu_s": epoch_cpu - opened.cpu_s,
        "stub_cpu_s": seen["cpu_s"] - stub_before,
        "log_events": dict(counted.events),
        "verify_fraction": report.verify_fraction,
    }


# --------------------------------------------------------------------------- unit costs


def unit_planned(planned: PlannedChallenge, params: ChallengeParams | None) -> PlannedChallenge:
    if params is None:
        return planned
    return replace(planned, sizing=replace(planned.sizing, params=params))


def commit_of(
    planned: PlannedChallenge,
    opened: ChallengeOpen,
    key: WorkerKey,
    miner: Miner,
    validator_hotkey: str,
    rng: random.Random,
) -> tuple[ChallengeRequest, bytes]:
    """One worker's commit record as a miner streams it (real signatures, random roots)."""
    params = planned.params
    gpus = [
        GpuCommit.create(key, opened.challenge_id, uuid, rng.randbytes(32 * params.stages))
        for uuid in planned.gpu_uuids
    ]
    payload = evidence_payload(
        challenge_id=opened.challenge_id, validator_hotkey=validator_hotkey,
        miner_hotkey=miner.hotkey, worker_pubkey=key.public_key, seed=opened.seed,
        params=params, gpus=gpus,
    )  # fmt: skip
    response = ChallengeResponse(
        challenge_id=opened.challenge_id, miner_hotkey=miner.hotkey,
        worker_pubkey=key.public_key.hex(), gpus=gpus,
        miner_signature=bytes(miner.keypair.sign(payload)),
    )  # fmt: skip
    request = ChallengeRequest(
        challenge_id=opened.challenge_id, worker_pubkey=key.public_key.hex(),
        gpu_uuids=list(planned.gpu_uuids), seed=opened.seed, params=params,
        deadline_ms=deadline_ms(planned.sizing),
    )  # fmt: skip
    return request, encode_record(response)


def check_commit(
    challenger: Challenger,
    client: MinerClient,
    planned: PlannedChallenge,
    request: ChallengeRequest,
    record: bytes,
) -> None:
    """What the validator does with one commit record: decode it from the stream, check the
    miner's signature (``MinerClient.epoch``), then every GPU's (``check_commits``)."""
    reader = RecordReader(client.max_response_bytes, 1)
    records = []
    for at in range(0, len(record), CHUNK):
        records += reader.feed(record[at : at + CHUNK])
    reader.finish()
    (response,) = records
    assert isinstance(response, ChallengeResponse)
    client.check_challenge_response(request, response)
    verdicts, roots, _ = check_commits(
        planned,
        request.challenge_id,
        request.seed,
        response,
        planned.sizing.expected_s,
        impossible_factor=challenger.section.impossible_throughput_factor,
        now=challenger.wall_clock(),
    )
    assert not verdicts and len(roots) == len(planned.gpu_uuids), verdicts


def honest_openings(
    binding: Binding,
    seed: bytes,
    params: ChallengeParams,
    samples: Sequence[StageSample],
    rng: random.Random,
) -> tuple[tuple[bytes, ...], list[tuple[int, int, bytes, bytes]]]:
    """Roots and openings whose sampled rows are honest and whose other rows were never
    computed: the verifier cannot tell (that is the point of sampling), and its cost does not
    depend on them. Stages in order, so a sampled stage keys off its final previous root."""
    roots = [rng.randbytes(32) for _ in range(params.stages)]
    openings = []
    for sample in samples:
        t = sample.stage
        key = stage_key(seed, binding, t, roots[t - 1] if t else None)
        b = matrix_b(np, key, params)
        a = np.vstack([matrix_a(np, key, params, range(r, r + 1)) for r in sample.rows])
        product = canonical_product(a, b)
        del b
        leaves = [rng.randbytes(32) for _ in range(params.m)]
        for i, row in enumerate(sample.rows):
            leaves[row] = leaf_hash(t, row, product[i].tobytes())
        levels = build_levels(leaves)
        roots[t] = levels[-1][0]
        openings += [
            (t, row, product[i].tobytes(), b"".join(proof(levels, row)))
            for i, row in enumerate(sample.rows)
        ]
    return tuple(roots), openings


def jobs_of(
    planned: PlannedChallenge,
    seed: bytes,
    roots: tuple[bytes, ...],
    samples: Sequence[StageSample],
    revealed: OpeningsResponse,
    entries: bool,
) -> list[VerifyJob]:
    """The pool's jobs for one worker's reveal, built as ``Challenger._verify`` builds them."""
    return [
        VerifyJob(
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=bytes.fromhex(planned.worker_pubkey),
            gpu_uuid=uuid,
            seed=seed,
            params=planned.params,
            roots=roots,
            samples=tuple(samples),
            openings=tuple(
                (o.stage, o.row, o.values, o.proof) for o in revealed.openings if o.gpu_uuid == uuid
            ),
            entries=entries,
        )
        for uuid in planned.gpu_uuids
    ]


def one_core(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn`` pinned to one core."""
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    walls, cpus = [], []
    try:
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    finally:
        os.sched_setaffinity(0, affinity)
    return statistics.median(walls), statistics.median(cpus)


async def per_call(
    meter: Meter, calls: Sequence[Callable[[], Any]], in_flight: int
) -> dict[str, float | None]:
    """``calls`` with ``in_flight`` at once: seconds per call (wall, ours, the database's)."""
    gate = asyncio.Semaphore(in_flight)

    async def one(call: Callable[[], Any]) -> None:
        async with gate:
            await call()

    async with meter.measure() as cost:
        await asyncio.gather(*(one(c) for c in calls))
    n = max(1, len(calls))
    return {
        "wall_ms": cost.wall_s / n * 1e3,
        "cpu_ms": cost.cpu_s / n * 1e3,
        "db_cpu_ms": None if cost.db_cpu_s is None else cost.db_cpu_s / n * 1e3,
    }


async def unit_costs(
    settings: Settings,
    plan: EpochPlan,
    opened: Sequence[ChallengeOpen],
    store: SqlStore | None,
    meter: Meter,
    stub: Stub,
    reveal_path: Path,
    wallet: bt.Wallet,
    miners: Sequence[Miner],
) -> dict[str, Any]:
    section = settings.section
    rng = random.Random(7)
    by_worker = {(o.miner_hotkey, o.worker_pubkey): o for o in opened}
    by_hotkey = {m.hotkey: m for m in miners}
    validator_hotkey = str(wallet.hotkey.ss58_address)
    sample = list(plan.challenges[: max(settings.commit_sample, settings.store_sample)])
    params = unit_planned(sample[0], settings.unit_params).params
    out: dict[str, Any] = {
        "m": params.m, "n": params.n, "k": params.k, "stages": params.stages,
        "gpus_per_worker": len(sample[0].gpu_uuids),
        "sample_stages": section.sampling.stages, "sample_rows": section.sampling.rows,
        "sample_columns": section.sampling.columns,
    }  # fmt: skip

    # --- commit records: decode, the miner's signature, each GPU's checks
    challenger = Challenger(
        store=None,  # type: ignore[arg-type]
        connect=None,  # type: ignore[arg-type]
        verifier=None,  # type: ignore[arg-type]
        section=section,
        wall_clock=lambda: datetime.now(UTC),
    )
    clients: dict[str, MinerClient] = {}
    records = []
    for planned in sample[: settings.commit_sample]:
        key = WorkerKey.from_seed(hashlib.sha256(planned.worker_pubkey.encode()).digest())
        signed = unit_planned(replace(planned, worker_pubkey=key.public_key.hex()), params)
        miner = by_hotkey[planned.miner_hotkey]
        if miner.hotkey not in clients:
            clients[miner.hotkey] = MinerClient(wallet, miner.hotkey, stub.url)
        request, record = commit_of(
            signed, by_worker[planned.key], key, miner, validator_hotkey, rng
        )
        records.append((clients[miner.hotkey], signed, request, record))
    wall, cpu = time.perf_counter(), time.process_time()
    for client, signed, request, record in records:
        check_commit(challenger, client, signed, request, record)
    n = len(records)
    out.update(
        commit_sample=n, commit_record_bytes=statistics.mean(len(r[3]) for r in records),
        commit_check_wall_ms=(time.perf_counter() - wall) / n * 1e3,
        commit_check_cpu_ms=(time.process_time() - cpu) / n * 1e3,
    )  # fmt: skip
    for client in clients.values():
        await client.aclose()

    # --- record_commit and close_challenges on PostgreSQL, one worker a call
    out["store"] = None
    if store is not None:
        half = max(1, min(settings.store_sample, len(sample)) // 2)
        chosen = [by_worker[p.key] for p in sample[: 2 * half]]
        shared = [rng.randbytes(32) for _ in range(chosen[0].params.stages)]
        roots_of = [(o, dict.fromkeys(o.gpu_uuids, shared)) for o in chosen]
        committed_at = datetime.now(UTC)
        figures: dict[str, Any] = {"sample": 2 * half}
        pool = store.engine.pool.size()  # type: ignore[attr-defined]
        figures["pool_size"] = pool
        for label, part, limit in (("one", roots_of[:half], 1), ("pool", roots_of[half:], pool)):
            figures[f"record_{label}"] = await per_call(
                meter,
                [functools.partial(store.record_commit, o.challenge_id, committed_at, r)
                 for o, r in part],
                limit,
            )  # fmt: skip
        closed_at = datetime.now(UTC)

        def verdicts(o: ChallengeOpen) -> list[ChallengeVerdict]:
            return [
                ChallengeVerdict(o.challenge_id, u, closed_at, Outcome.VERIFIED,
                                 throughput_flops=3e14, elapsed_s=5.0, verify_s=0.03,
                                 checked_entries=256)
                for u in o.gpu_uuids
            ]  # fmt: skip

        async def close(o: ChallengeOpen) -> None:
            await store.close_challenges(verdicts(o))

        for label, part, limit in (("one", roots_of[:half], 1), ("pool", roots_of[half:], pool)):
            figures[f"close_{label}"] = await per_call(
                meter, [functools.partial(close, o) for o, _ in part], limit
            )
        out["store"] = figures

    # --- one reveal per worker over HTTP, and the exact / Merkle-only checks per GPU
    planned = unit_planned(sample[0], settings.unit_params)
    item = by_worker[sample[0].key]
    samples = draw_sample(params, section.sampling, rng)
    binding = Binding(
        miner_hotkey=planned.miner_hotkey, worker_pubkey=bytes.fromhex(planned.worker_pubkey),
        gpu_uuid=planned.gpu_uuids[0],
    )  # fmt: skip
    built = time.perf_counter()
    roots, honest = honest_openings(binding, item.seed, params, samples, rng)
    out["honest_build_s"] = time.perf_counter() - built
    openings = [
        RowOpening(gpu_uuid=uuid, stage=t, row=row, values=values, proof=path)
        for uuid in planned.gpu_uuids
        for t, row, values, path in honest
    ]
    body = codec.encode(OpeningsResponse(challenge_id=REVEAL_ID, openings=openings))
    await asyncio.to_thread(reveal_path.write_bytes, body)
    reveal_request = OpeningsRequest(
        challenge_id=REVEAL_ID, worker_pubkey=planned.worker_pubkey,
        openings=[OpeningRequest(gpu_uuid=uuid, stage=s.stage, rows=list(s.rows))
                  for uuid in planned.gpu_uuids for s in samples],
    )  # fmt: skip
    out["reveal_response_bytes"] = len(body)
    out["reveal_request_bytes"] = len(codec.encode(reveal_request))
    revealed = None
    async with MinerClient(
        wallet, planned.miner_hotkey, stub.url, timeout=section.reveal_timeout_s
    ) as client:
        await client.reveal(reveal_request)  # the connection, once
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(settings.reveal_sample):
            revealed = await client.reveal(reveal_request)
        n = settings.reveal_sample
        out.update(
            reveal_sample=n, reveal_wall_ms=(time.perf_counter() - wall) / n * 1e3,
            reveal_cpu_ms=(time.process_time() - cpu) / n * 1e3,
        )  # fmt: skip
    await stub.report()  # forget the reveals
    assert revealed is not None
    assert len(revealed.openings) == len(planned.gpu_uuids) * sum(len(s.rows) for s in samples)

    # handing the jobs to the pool: pickled here, unpickled in the pool process
    jobs = jobs_of(planned, item.seed, roots, samples, revealed, entries=False)
    frames = [ForkingPickler.dumps(job) for job in jobs]
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(3):
        frames = [ForkingPickler.dumps(job) for job in jobs]
    out["pickle_ms"] = (time.process_time() - cpu) / (3 * len(jobs)) * 1e3
    cpu = time.process_time()
    for _ in range(3):
        for frame in frames:
            pickle.loads(frame)
    out["unpickle_ms"] = (time.process_time() - cpu) / (3 * len(jobs)) * 1e3
    out["job_bytes"] = statistics.mean(len(f) for f in frames)

    exact = replace(jobs[0], entries=True)
    first = verify_job(exact)
    assert first.verified and first.checked_entries > 0, first
    assert all(verify_job(job).verified for job in jobs)  # Merkle paths of every GPU
    repeats = settings.verify_repeats
    out["exact_wall_ms"], out["exact_cpu_ms"] = (
        x * 1e3 for x in one_core(lambda: verify_job(exact), repeats)
    )
    out["merkle_wall_ms"], out["merkle_cpu_ms"] = (
        x * 1e3 for x in one_core(lambda: verify_job(jobs[0]), repeats)
    )
    out["checked_entries"] = first.checked_entries
    out["verify_repeats"] = repeats

    budget = VerifyBudget(
        processes=section.verifier_processes, epoch_s=section.interval_s,
        utilization=section.verify_utilization,
    )  # fmt: skip
    out["budget"] = {
        "processes": budget.processes,
        "epoch_s": budget.epoch_s,
        "utilization": budget.utilization,
        "default_verify_ms": DEFAULT_VERIFY_S * 1e3,
        "default_capacity": budget.capacity,
        "default_fraction": budget.fraction(settings.gpus),
    }
    budget.mean_verify_s = out["exact_wall_ms"] / 1e3  # what observe() converges to
    out["budget"].update(capacity=budget.capacity, fraction=budget.fraction(settings.gpus))
    return out


# --------------------------------------------------------------------------- one epoch, added up


def epoch_totals(settings: Settings, f: dict[str, Any]) -> dict[str, Any]:
    """The per-unit costs multiplied out to one epoch, by where they run."""
    units, planning, dispatched = f["units"], f["planning"], f["dispatch"]
    storing, store = f["storing"], units["store"]
    workers, gpus = settings.workers, settings.gpus
    p = units["budget"]["fraction"]
    rows: list[dict[str, Any]] = []

    def add(where: str, what: str, cpu_s: float | None, per: str = "", unit_ms: Any = None,
            count: float | None = None) -> None:  # fmt: skip
        rows.append({"where": where, "what": what, "per": per, "unit_ms": unit_ms,
                     "count": count, "cpu_s": cpu_s})  # fmt: skip

    loop = "validator process"
    if planning["read_cpu_s"] is not None:
        add(loop, "read the workers (SqlStore.workers)", planning["read_cpu_s"])
    add(loop, "plan the epoch (EpochPlanner.plan)", planning["plan_cpu_s"])
    if storing is not None:
        add(loop, "store every challenge (open_challenges)", storing["cpu_s"])
    add(loop, "dispatch, and the answers' verdicts (run_epoch, failure records)",
        dispatched["run_epoch_cpu_s"])  # fmt: skip
    per_worker = [
        ("check a commit record (decode, 1 + 8 signatures, shape, plausibility)",
         units["commit_check_cpu_ms"]),
        ("reveal: request, receive over HTTP, decode", units["reveal_cpu_ms"]),
    ]  # fmt: skip
    if store is not None:
        per_worker.insert(1, ("record_commit", store["record_one"]["cpu_ms"]))
        per_worker.append(("close_challenges", store["close_one"]["cpu_ms"]))
    for what, ms in per_worker:
        add(loop, what, ms * workers / 1e3, "worker", ms, workers)
    add(loop, "hand each GPU's VerifyJob to the pool (pickle)", units["pickle_ms"] * gpus / 1e3,
        "GPU", units["pickle_ms"], gpus)  # fmt: skip
    pool = "verifier pool"
    add(pool, "receive each VerifyJob (unpickle)", units["unpickle_ms"] * gpus / 1e3, "GPU",
        units["unpickle_ms"], gpus)  # fmt: skip
    add(pool, "Merkle-only check (entries=False)", units["merkle_cpu_ms"] * (1 - p) * gpus / 1e3,
        "GPU", units["merkle_cpu_ms"], (1 - p) * gpus)  # fmt: skip
    add(pool, f"exact check (p = {p:.3f})", units["exact_cpu_ms"] * p * gpus / 1e3, "GPU",
        units["exact_cpu_ms"], p * gpus)  # fmt: skip
    db = "PostgreSQL"
    if store is not None and storing is not None:
        add(db, "read the workers", planning["read_db_cpu_s"])
        add(db, "open_challenges", storing["db_cpu_s"])
        for what, key in (("record_commit", "record_one"), ("close_challenges", "close_one")):
            ms = store[key]["db_cpu_ms"]
            add(db, what, None if ms is None else ms * workers / 1e3, "worker", ms, workers)
    epoch_s = settings.section.interval_s
    cores = os.cpu_count() or 1
    sums = {}
    for where in (loop, pool, db):
        known = [r["cpu_s"] for r in rows if r["where"] == where and r["cpu_s"] is not None]
        sums[where] = sum(known) if known else None
    total = sum(v for v in sums.values() if v is not None)
    commit_bytes = units["commit_record_bytes"] * workers
    reveal_bytes = units["reveal_response_bytes"] * workers
    sent_bytes = dispatched["request_bytes"] + units["reveal_request_bytes"] * workers
    slack = dispatched["deadline_s"] - dispatched["expected_s"]
    pool_s = sums[pool] or 0.0
    return {
        "rows": rows,
        "validator_process_cpu_s": sums[loop],
        "pool_cpu_s": sums[pool],
        "database_cpu_s": sums[db],
        "total_cpu_s": total,
        "epoch_s": epoch_s,
        "cores": cores,
        "validator_process_core_share": (sums[loop] or 0.0) / epoch_s,
        "pool_share": pool_s / (settings.section.verifier_processes * epoch_s),
        "pool_budgeted_share": settings.section.verify_utilization,
        "pool_busy_s": pool_s / settings.section.verifier_processes,
        "machine_share": total / (epoch_s * cores),
        "commit_bytes": commit_bytes,
        "reveal_bytes": reveal_bytes,
        "received_bytes": commit_bytes + reveal_bytes,
        "sent_bytes": sent_bytes,
        "received_gbit_s": (commit_bytes + reveal_bytes) * 8 / epoch_s / 1e9,
        "commit_window_s": slack,
        "commit_window_gbit_s": commit_bytes * 8 / slack / 1e9 if slack > 0 else None,
    }


# --------------------------------------------------------------------------- the run


async def scratch_database(dsn: str) -> str:
    name = f"byteleap_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def measure(settings: Settings) -> dict[str, Any]:
    """The whole benchmark: an epoch, its unit costs, and the two multiplied out."""
    figures: dict[str, Any] = {
        "scale": {"miners": settings.miners, "workers_per_miner": settings.workers_per_miner,
                  "gpus_per_worker": settings.gpus_per_worker, "workers": settings.workers,
                  "gpus": settings.gpus},
        "cores": os.cpu_count(),
    }  # fmt: skip
    miners = make_miners(settings.miners)
    with tempfile.TemporaryDirectory(prefix="byteleap-bench-epoch-") as tmp:
        root = Path(tmp)
        wallet = make_wallet(root / "wallets")
        reveal_path = root / "reveal.frame"
        answer_after = settings.answer_after_s
        if answer_after is None:
            answer_after = expected_seconds(settings)
        stub = await Stub.start(reveal_path, answer_after)
        store: SqlStore | None = None
        admin: asyncpg.Connection | None = None
        name = dsn = None
        try:
            if settings.database_url is not None:
                dsn = make_url(settings.database_url).set(drivername="postgresql")
                dsn_text = dsn.render_as_string(hide_password=False)
                try:
                    name = await scratch_database(dsn_text)
                except (OSError, asyncpg.PostgresError) as exc:  # no server: no storing figures
                    console.print(f"[yellow]no PostgreSQL ({exc}); storing is not measured[/]")
                    figures["database_error"] = str(exc)
                    dsn = None
            if dsn is not None and name is not None:
                db_url = dsn.set(drivername="postgresql+asyncpg", database=name)
                store = await open_store(db_url.render_as_string(hide_password=False),
                                         auto_upgrade=True)  # fmt: skip
                scratch = dsn.set(database=name).render_as_string(hide_password=False)
                started = time.perf_counter()
                await fill(scratch, settings, miners, stub.url)
                figures["fill_s"] = time.perf_counter() - started
                admin = await asyncpg.connect(scratch)
                figures["server_version"] = await admin.fetchval("SHOW server_version")
                if not is_local(dsn_text):
                    await admin.close()
                    admin = None
            meter = Meter(DbCpu(admin, name))
            plan, figures["planning"] = await plan_epoch(settings, store, meter, miners, stub.url)
            epoch_store = EpochStore(store, meter)
            figures["dispatch"] = await dispatch(settings, plan, epoch_store, stub, wallet)
            cost = epoch_store.open_cost
            figures["storing"] = (
                None if cost is None
                else {"rows": plan.gpus, "wall_s": cost.wall_s, "cpu_s": cost.cpu_s,
                      "db_cpu_s": cost.db_cpu_s}
            )  # fmt: skip
            figures["units"] = await unit_costs(
                settings, plan, epoch_store.opened, store, meter, stub, reveal_path, wallet,
                miners,
            )  # fmt: skip
        finally:
            await stub.stop()
            if admin is not None:
                await admin.close()
            if store is not None:
                await store.close()
            if dsn is not None and name is not None:
                await drop_database(dsn.render_as_string(hide_password=False), name)
    figures["epoch"] = epoch_totals(settings, figures)
    return figures


def is_local(url: str) -> bool:
    return make_url(url).host in (None, "", "localhost", "127.0.0.1", "::1")


# --------------------------------------------------------------------------- the tables


def s(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} s"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.3f} ms"


def gb(value: float) -> str:
    return f"{value / 1e9:,.1f} GB"


def report(figures: dict[str, Any]) -> None:
    sc, p, d = figures["scale"], figures["planning"], figures["dispatch"]
    st, u, e = figures["storing"], figures["units"], figures["epoch"]
    scale = (
        f"{sc['miners']} miners x {sc['workers_per_miner']} workers x {sc['gpus_per_worker']} "
        f"GPUs = {sc['workers']:,} workers, {sc['gpus']:,} GPUs; {figures['cores']} cores"
    )
    table = Table(title=f"Planning and storing one epoch: {scale}")
    table.add_column("measurement")
    table.add_column("wall", justify="right")
    table.add_column("validator CPU", justify="right")
    table.add_column("database CPU", justify="right")
    if p["read_s"] is not None:
        table.add_row(f"SqlStore.workers: {p['listed_workers']:,} workers read back",
                      s(p["read_s"]), s(p["read_cpu_s"]), s(p["read_db_cpu_s"]))  # fmt: skip
    table.add_row(
        f"EpochPlanner.plan: {p['planned_workers']:,} challenges, {p['planned_gpus']:,} GPUs "
        f"({p['skipped']} skipped)", s(p["plan_s"]), s(p["plan_cpu_s"]), "",
    )  # fmt: skip
    if st is not None:
        table.add_row(f"open_challenges: {st['rows']:,} GPU rows in one call", s(st["wall_s"]),
                      s(st["cpu_s"]), s(st["db_cpu_s"]))  # fmt: skip
    else:
        table.add_row("open_challenges", "not measured (no database)", "", "")
    console.print(table)

    table = Table(title=f"Dispatch: Challenger.run_epoch to {d['miners']} miners (stub process)")
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_column("target", justify="right")
    table.add_row("requests arrived / distinct miner hotkeys",
                  f"{d['requests_arrived']} / {d['distinct_receivers']}", "")  # fmt: skip
    table.add_row("challenges in them / records received back",
                  f"{d['challenges_in_requests']:,} / {d['records_received']:,}", "")  # fmt: skip
    table.add_row("[bold]arrival spread at the miners[/] (first to last request in)",
                  f"[bold]{s(d['arrival_spread_s'], 3)}[/]", "<= 2 s")  # fmt: skip
    table.add_row("send spread (first to last request handed to HTTP)",
                  s(d["send_spread_s"], 3), "")  # fmt: skip
    table.add_row("Challenger's spread (its metric: first to last clock start)",
                  s(d["challenger_spread_s"], 3), "")  # fmt: skip
    table.add_row("epoch start (deadline clock) to the first send",
                  s(d["epoch_start_to_first_send_s"], 3), "")  # fmt: skip
    table.add_row("epoch start to a request's arrival, median / max",
                  f"{s(d['epoch_start_to_arrival_median_s'], 3)} / "
                  f"{s(d['epoch_start_to_last_arrival_s'], 3)}", "")  # fmt: skip
    table.add_row("a miner's clock start to its request's arrival, median / max",
                  f"{s(d['lag_median_s'], 3)} / {s(d['lag_max_s'], 3)}", "")  # fmt: skip
    table.add_row(f"building the {d['miners']} clients (connect)", s(d["connect_s"], 3), "")
    table.add_row(
        f"first send to the last record received (answers {s(d['answer_after_s'])} after "
        "each arrival)", s(d["first_send_to_last_record_s"], 3), "",
    )  # fmt: skip
    verdicts = ", ".join(f"{k} {v:,}" for k, v in sorted(d["verdicts"].items()))
    table.add_row(
        f"verdicts of those honest-timed answers (expected {s(d['expected_s'])}, deadline "
        f"{s(d['deadline_s'])} from the epoch start)", verdicts, "no timeout",
    )  # fmt: skip
    table.add_row("run_epoch after storing: wall / validator CPU",
                  f"{s(d['run_epoch_wall_s'])} / {s(d['run_epoch_cpu_s'])}", "")  # fmt: skip
    table.add_row("stub (miners) CPU, its own process", s(d["stub_cpu_s"]), "")
    console.print(table)

    shape = (
        f"{u['m']} x {u['n']} x {u['k']}, R = {u['stages']:,}, r = {u['sample_stages']}, "
        f"s = {u['sample_rows']}, e = {u['sample_columns']}"
    )
    table = Table(title=f"Per unit, on samples ({shape})")
    table.add_column("measurement")
    table.add_column("wall", justify="right")
    table.add_column("validator CPU", justify="right")
    table.add_column("database CPU", justify="right")
    table.add_row(
        f"check one worker's commit record ({u['commit_record_bytes'] / 1e3:,.0f} kB; "
        f"{u['commit_sample']} workers)", ms(u["commit_check_wall_ms"]),
        ms(u["commit_check_cpu_ms"]), "",
    )  # fmt: skip
    store = u["store"]
    if store is not None:
        for op in ("record", "close"):
            name = "record_commit" if op == "record" else "close_challenges"
            for mode, how in (("one", "1 at a time"), ("pool", f"{store['pool_size']} in flight")):
                r = store[f"{op}_{mode}"]
                table.add_row(f"{name}, one worker ({store['sample'] // 2} calls, {how})",
                              ms(r["wall_ms"]), ms(r["cpu_ms"]), ms(r["db_cpu_ms"]))  # fmt: skip
    table.add_row(
        f"one reveal over HTTP ({u['reveal_response_bytes'] / 2**20:,.1f} MiB; "
        f"{u['reveal_sample']} reveals)", ms(u["reveal_wall_ms"]), ms(u["reveal_cpu_ms"]), "",
    )  # fmt: skip
    table.add_row(f"pickle / unpickle one GPU's VerifyJob ({u['job_bytes'] / 2**20:,.2f} MiB)",
                  "", f"{ms(u['pickle_ms'])} / {ms(u['unpickle_ms'])}", "")  # fmt: skip
    table.add_row(f"exact verification, one GPU, one core ({u['checked_entries']} entries)",
                  ms(u["exact_wall_ms"]), ms(u["exact_cpu_ms"]), "")  # fmt: skip
    table.add_row("Merkle-only verification, one GPU, one core", ms(u["merkle_wall_ms"]),
                  ms(u["merkle_cpu_ms"]), "")  # fmt: skip
    b = u["budget"]
    table.add_row(
        f"VerifyBudget({b['processes']} processes, {b['epoch_s']:g} s, {b['utilization']:g}): "
        f"GPUs verified exactly per epoch, p", "",
        f"{b['capacity']:,.0f}, p = {b['fraction']:.3f}",
        f"(at its starting {b['default_verify_ms']:g} ms: {b['default_capacity']:,.0f}, "
        f"p = {b['default_fraction']:.3f})",
    )  # fmt: skip
    console.print(table)

    table = Table(title=f"CPU seconds per {e['epoch_s']:g}-s epoch at {scale}")
    table.add_column("where")
    table.add_column("component")
    table.add_column("per unit", justify="right")
    table.add_column("units", justify="right")
    table.add_column("CPU s per epoch", justify="right")
    for r in e["rows"]:
        per = "" if r["unit_ms"] is None else f"{ms(r['unit_ms'])} / {r['per']}"
        count = "" if r["count"] is None else f"{r['count']:,.0f}"
        table.add_row(r["where"], r["what"], per, count, s(r["cpu_s"], 1))
    table.add_row(
        "[bold]validator process[/]", "one event loop: share of one core", "", "",
        f"[bold]{s(e['validator_process_cpu_s'], 1)}[/] = "
        f"{e['validator_process_core_share']:.0%}",
    )  # fmt: skip
    table.add_row(
        "[bold]verifier pool[/]",
        f"share of its processes (budgeted {e['pool_budgeted_share']:.0%}); busy per epoch",
        "", "", f"[bold]{s(e['pool_cpu_s'], 1)}[/] = {e['pool_share']:.0%}; "
        f"{s(e['pool_busy_s'], 0)}",
    )  # fmt: skip
    table.add_row("PostgreSQL", "its backends", "", "", s(e["database_cpu_s"], 1))
    table.add_row(
        "[bold]total[/]", f"share of this machine's {e['cores']} cores", "", "",
        f"[bold]{s(e['total_cpu_s'], 1)}[/] = {e['machine_share']:.0%}",
    )  # fmt: skip
    console.print(table)

    table = Table(title="Bytes per epoch at the validator")
    table.add_column("measurement")
    table.add_column("figure", justify="right")
    table.add_row("commit records received", gb(e["commit_bytes"]))
    table.add_row("reveals received", gb(e["reveal_bytes"]))
    table.add_row(
        f"received in all: average over {e['epoch_s']:g} s",
        f"{gb(e['received_bytes'])}: {e['received_gbit_s']:,.1f} Gbit/s",
    )  # fmt: skip
    window = e["commit_window_gbit_s"]
    table.add_row(
        f"commits, if all arrive within the deadline slack ({s(e['commit_window_s'])})",
        "n/a" if window is None else f"{window:,.1f} Gbit/s",
    )  # fmt: skip
    table.add_row("requests sent (epoch and reveal requests)", gb(e["sent_bytes"]))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BYTELEAP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server where a scratch database may be created (libpq URL)",
    )
    parser.add_argument("--skip-db", action="store_true", help="no database: no storing figures")
    parser.add_argument("--miners", type=int, help="default 256 (--quick: 16)")
    parser.add_argument("--workers-per-miner", type=int, help="default 100 (--quick: 20)")
    parser.add_argument(
        "--answer-after", type=float, help="seconds from a request to its answer (default: the "
        "challenge's expected time)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="16 x 20 x 8, small samples")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    url = None if args.skip_db else args.database_url
    settings = quick_settings(url) if args.quick else Settings(database_url=url)
    overrides: dict[str, Any] = {"answer_after_s": args.answer_after}
    if args.miners:
        overrides["miners"] = args.miners
    if args.workers_per_miner:
        overrides["workers_per_miner"] = args.workers_per_miner
    settings = replace(settings, **overrides)
    figures = asyncio.run(measure(settings))
    figures["quick"] = args.quick
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
