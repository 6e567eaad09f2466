"""The epoch benchmark's planning and dispatch: the validator's real planner, Challenger and
MinerClient driven against the stub miners, with every request's send and arrival timed."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import bittensor as bt
import httpx
import structlog

from bench.epoch_meter import Cost, Meter
from bench.epoch_world import (
    NOW,
    EpochMiner,
    EpochSettings,
    EpochStub,
    make_miners,
    network,
)
from byteleap.challenge.sizing import CalibrationSettings, ExpectedRates, calibrate
from byteleap.config.challenge import ChallengeSection
from byteleap.errors import ByteLeapError
from byteleap.protocol.miner_api.challenges import (
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.sessions.round_planner import EpochPlan, EpochPlanner
from neurons.common.miner_client import EpochArrival, MinerClient
from neurons.validator.challenger import Challenger
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store import ChallengeOpen, ChallengeVerdict, SqlStore
from neurons.validator.verification import VerifierPool


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


def expected_seconds(settings: EpochSettings) -> float:
    """The expected time of this network's challenges (every worker is the same), planned for
    one worker alone."""
    one = replace(settings, miners=1, workers_per_miner=1)
    plan = EpochPlanner(settings.section, random.Random(0)).plan(
        network(one, make_miners(1), "http://127.0.0.1:1"),
        rates=catalogue_rates(settings.section),
    )
    return plan.challenges[0].sizing.expected_s


async def plan_epoch(
    settings: EpochSettings,
    store: SqlStore | None,
    meter: Meter,
    miners: Sequence[EpochMiner],
    url: str,
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
    settings: EpochSettings,
    plan: EpochPlan,
    epoch_store: EpochStore,
    stub: EpochStub,
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

    verifier = VerifierPool(settings.section.verifier_processes)  # no commit, so never started
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
