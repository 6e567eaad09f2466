"""The daemon's side of challenge epochs: when each starts, what it is planned on (the workers,
the calibrated expected throughputs, the miners' round trips, the leases this validator knows
of) and which epochs are still running. Each epoch itself is an
:class:`~byteleap.sessions.epoch_round.EpochRound`, driven by the
:class:`~neurons.validator.challenger.Challenger`; the plan is the pure
:class:`~byteleap.sessions.round_planner.EpochPlanner`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from byteleap.aliases import WorkerRef
from byteleap.challenge.sizing import (
    CalibrationSettings,
    ExpectedRates,
    SampleWindow,
    calibrate,
)
from byteleap.config import ValidatorConfig
from byteleap.errors import ByteLeapError, Outcome
from byteleap.hardware import identify
from byteleap.sessions.round_planner import EpochPlan, EpochPlanner
from neurons.validator.challenger import Challenger, ChallengeResult, EpochReport
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.poller import Poller
from neurons.validator.store.leases import LeaseStore
from neurons.validator.store.receipts import ReceiptStore
from neurons.validator.store.records import ValidatorStore

log = structlog.get_logger("byteleap.validator")


class EpochRunner:
    """Plans epochs at the drawn start times and runs each as its own task."""

    def __init__(
        self,
        cfg: ValidatorConfig,
        *,
        store: ValidatorStore,
        planner: EpochPlanner,
        challenger: Challenger,
        poller: Poller,
        metrics: ValidatorMetrics,
        wall_clock: Callable[[], datetime],
        lease_store: LeaseStore | None = None,
        receipt_store: ReceiptStore | None = None,
        on_challenge: Callable[[ChallengeResult], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.planner = planner
        self.challenger = challenger
        self.poller = poller
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.lease_store = lease_store
        self.receipt_store = receipt_store
        self.on_challenge = on_challenge
        #: workers under a lease this validator knows of: its own, and those its receipts show
        #: running (refreshed at every plan); only they may answer "busy" or "leased"
        self.known_leases: frozenset[WorkerRef] = frozenset()
        #: running epochs and the workers each one holds
        self.running: dict[asyncio.Task[None], frozenset[WorkerRef]] = {}
        #: the latest calibration (for ``scores --explain`` and the metrics)
        self.rates: ExpectedRates | None = None
        #: verified throughputs that calibrate: seeded at start, then fed by every epoch
        self.samples = SampleWindow(timedelta(hours=cfg.challenge.calibration_hours))
        self._samples_seeded = False

    def knows_lease(self, key: WorkerRef) -> bool:
        return key in self.known_leases

    async def seed_samples(self) -> int:
        """Load the calibration window's verified throughputs once (start-up); later epochs
        add theirs as they close."""
        now = self.wall_clock()
        since = now - timedelta(hours=self.cfg.challenge.calibration_hours)
        for s in await self.store.verified_throughputs(since):
            model_id = identify(s.gpu_uuid, s.gpu_model).model_id
            self.samples.add(s.dispatched_at or now, s.miner_hotkey, model_id, s.throughput_flops)
        self._samples_seeded = True
        return len(self.samples)

    def record_samples(self, result: ChallengeResult) -> None:
        """Feed one closed challenge's verified throughputs to the calibration."""
        planned = result.planned
        for verdict in result.verdicts:
            identity = planned.identities.get(verdict.gpu_uuid)
            if verdict.throughput_flops is None or identity is None:
                continue
            if verdict.outcome is Outcome.VERIFIED:
                self.samples.add(
                    verdict.closed_at, planned.miner_hotkey, identity.model_id,
                    verdict.throughput_flops,
                )  # fmt: skip

    async def expected_rates(self) -> ExpectedRates:
        """Each model's expected throughput, calibrated on this validator's verified results."""
        section = self.cfg.challenge
        if not self._samples_seeded:
            await self.seed_samples()
        rates = calibrate(
            self.samples.samples(self.wall_clock()),
            CalibrationSettings(
                cpu_expected_flops=section.cpu_expected_flops,
                unknown_flops=section.unknown_flops,
                percentile=section.calibration_percentile,
                min_miners=section.calibration_min_miners,
                min_samples=section.calibration_min_samples,
                floor=section.calibration_floor,
            ),
        )
        for model_id, rate in rates.rates.items():
            self.metrics.expected_flops.labels(model=model_id).set(rate.expected_flops)
        self.rates = rates
        return rates

    async def refresh_known_leases(self, now: datetime) -> frozenset[WorkerRef]:
        """The workers under a lease this validator knows of: its own pending or active leases,
        and every lease its collected receipts show running."""
        held: set[WorkerRef] = set()
        if self.lease_store is not None:
            held |= await self.lease_store.held_workers()
        if self.receipt_store is not None:
            for interval in await self.receipt_store.lease_intervals(now):
                if interval.end is None or interval.end > now:
                    held.add((interval.miner_hotkey, interval.worker_id))
        self.known_leases = frozenset(held)
        return self.known_leases

    async def plan_once(self) -> EpochPlan:
        """What an epoch starting now would challenge (counting skips in the metrics); nothing
        is dispatched."""
        now = self.wall_clock()
        workers = await self.store.workers(now)
        leased = await self.refresh_known_leases(now)
        rates = await self.expected_rates()
        trips = {
            m.hotkey: trip
            for m in await self.store.miners()
            if (trip := self.poller.round_trip_s(m.hotkey)) is not None
        }
        in_flight = frozenset().union(*self.running.values()) if self.running else frozenset()
        plan = self.planner.plan(
            workers, rates=rates, round_trips=trips, in_flight=in_flight, leased=leased
        )
        for reason in plan.skipped.values():
            self.metrics.challenge_skips.labels(reason=reason.value).inc()
        self.metrics.unverifiable_gpus.set(len(plan.unverifiable))
        for (miner, worker, uuid), why in plan.unverifiable.items():
            log.info("gpu_unverifiable", miner=miner, worker=worker[:16], gpu=uuid, reason=why)
        return plan

    async def run_epoch(self, plan: EpochPlan) -> EpochReport:
        report = await self.challenger.run_epoch(plan)
        for result in report.results:
            self.record_samples(result)
            if self.on_challenge is not None:
                self.on_challenge(result)
        return report

    async def loop(self, stop: asyncio.Event) -> None:
        """Start an epoch at every drawn start time until ``stop``; each epoch runs as its own
        task, so a slow one never delays the next start."""
        next_at = self.planner.first_epoch_at(self.wall_clock())
        while not stop.is_set():
            wait = (next_at - self.wall_clock()).total_seconds()
            if wait > 0:
                if await stopped_after(stop, min(wait, self.cfg.challenge.plan_interval_s)):
                    return
                continue
            next_at = self.planner.next_epoch_at(next_at)
            if next_at <= self.wall_clock():  # we fell behind (a long pause): start afresh
                next_at = self.planner.next_epoch_at(self.wall_clock())
            self.metrics.rounds.labels(loop="epoch").inc()
            try:
                plan = await self.plan_once()
            except ByteLeapError as exc:
                self.metrics.loop_errors.labels(loop="epoch", code=exc.code).inc()
                log.warning("loop_failed", loop="epoch", code=exc.code, error=exc.message)
                continue
            except Exception:
                self.metrics.loop_errors.labels(loop="epoch", code="internal").inc()
                log.exception("loop_crashed", loop="epoch")
                continue
            if not plan.challenges:
                continue
            task = asyncio.create_task(self._epoch(plan))
            self.running[task] = frozenset(p.key for p in plan.challenges)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.pop(task, None)

    async def _epoch(self, plan: EpochPlan) -> None:
        try:
            await self.run_epoch(plan)
        except Exception:  # Challenger.run_epoch already turns every failure into verdicts
            log.exception("epoch_task_crashed", workers=len(plan.challenges))


async def stopped_after(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop``; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


__all__ = ["EpochRunner", "stopped_after"]
