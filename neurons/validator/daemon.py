"""``byteleap-validator run``: every loop of the validator in one asyncio process.

Start-up order, so an operator sees problems before anything is sent:

1. the store is opened (and migrated when ``database.auto_upgrade``) by the caller;
2. challenges a previous run left in flight are closed as excused (a restart loses nothing);
3. the metagraph is read: an unregistered hotkey stops the validator with ``NotRegistered``
   (exit code 3) before any miner is contacted;
4. the metrics endpoint and the loops start.

The loops (each on its own interval, each surviving its own failures):

- **metagraph** every ``chain.sync_interval_s`` -> ``store.sync_miners``;
- **poll** every ``miners.poll_interval_s``: inventory of every miner -> availability;
- **epochs**: at a start drawn from the CSPRNG (``challenge.interval_s`` x a random factor in
  ``[1 - jitter, 1 + jitter]`` after the previous one) every idle, challengeable GPU of every
  miner is challenged at once (:mod:`neurons.validator.planner`); each epoch runs as its own
  task, sized from the expected throughputs calibrated on this validator's own verified
  results (:mod:`byteleap.challenge.sizing`);
- **weights** every ``scoring.weights_check_interval_s``: when the schedule says the block is
  due, score and submit (and refresh the per-miner lease revenue gauge);
- **receipts** every ``leases.receipt_poll_interval_s``: every miner's new usage receipts (any
  validator's) are fetched, checked and stored for the lease score
  (:mod:`neurons.validator.receipts`);
- **prune** hourly (retention), and a database ping for the latency gauge.
- **leases** every ``min(10 s, leases.receipt_interval_s)``: expiries, hourly receipts and
  worker loss (``LeaseManager.tick``); with ``api.enabled`` the renter API is served too.

Shutdown (SIGINT/SIGTERM) stops the loops, gives running challenges a bounded time to finish,
cancels the rest and closes them as excused, then closes the verifier pool, chain and store.

The challenge timer runs on the daemon's event loop, so no poll or scoring work may block it for
long (SPEC 5.5: 50 ms). On PostgreSQL a
:class:`~neurons.validator.background_store.BackgroundStore` (a process with an event loop and
a small connection pool of its own) runs what is CPU-heavy there: decoding and recording each
inventory, the ``workers()`` read after a poll round (it resolves GPU ownership), and the whole
scoring pass (``scoring_inputs`` and ``compute_weights``). On SQLite, where the daemon keeps a
single connection, decoding and ``compute_weights`` still run in worker threads, and the store's
own work stays on the loop. After start-up the daemon's heap is frozen out of the cyclic
collector (:func:`freeze_startup_heap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import structlog
from prometheus_client import start_http_server

from byteleap.chain import ChainPort, NotRegistered
from byteleap.config import ValidatorConfig
from byteleap.errors import ByteLeapError, ConfigError
from byteleap.sessions.round_planner import EpochPlan, EpochPlanner
from daemonkit.signals import run_daemon
from neurons.common.miner_client import MinerClient
from neurons.validator.background_store import BackgroundStore, worker_counts
from neurons.validator.chain_sync import MetagraphSync
from neurons.validator.challenger import Challenger, ChallengeResult, EpochReport
from neurons.validator.epochs import EpochRunner, stopped_after
from neurons.validator.leasing.manager import LeaseManager
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.poller import InventoryLimits, Poller, PollSummary
from neurons.validator.receipts import CollectionSummary, ReceiptClientFactory, ReceiptCollector
from neurons.validator.renter import RenterApiSettings, create_renter_app
from neurons.validator.renter.server import RenterApiServer
from neurons.validator.store.leases import LeaseStore
from neurons.validator.store.receipts import ReceiptStore
from neurons.validator.store.records import ValidatorStore
from neurons.validator.timed_store import TimedStore
from neurons.validator.verification import VerifierPool
from neurons.validator.weights import WeightSetter, record_lease_revenue, weights_loop

log = structlog.get_logger("byteleap.validator")

#: seconds running challenges get to finish at shutdown before they are cancelled
SHUTDOWN_GRACE_S = 10.0
#: seconds a stopping validator gets in all (renter API, running challenges, pools, store)
#: before its main task is cancelled; a second SIGINT/SIGTERM exits at once
DRAIN_S = 60.0
PRUNE_INTERVAL_S = 3600.0
PING_INTERVAL_S = 30.0


T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def freeze_startup_heap() -> None:
    """Collect once, then keep everything start-up allocated (modules, classes, the config:
    some 180,000 objects) out of every later collection (``gc.freeze``).

    A full collection stops every thread, the event loop's included, for as long as it takes to
    visit every tracked object: over the start-up heap alone 100 to 160 ms. Frozen, a collection
    visits only what the loops keep alive. Called once by :func:`run_validator`, after start-up."""
    gc.collect()
    gc.freeze()


class ValidatorDaemon:
    """The validator's loops around one store and one chain port (both opened by the caller)."""

    def __init__(
        self,
        cfg: ValidatorConfig,
        *,
        signer: Any,
        hotkey: str,
        store: ValidatorStore,
        chain: ChainPort,
        metrics: ValidatorMetrics | None = None,
        rng: random.Random | None = None,
        wall_clock: Callable[[], datetime] = utc_now,
        connect: Callable[[str, str, float], MinerClient] | None = None,
        verifier: VerifierPool | None = None,
        on_challenge: Callable[[ChallengeResult], None] | None = None,
        receipts: ReceiptStore | None = None,
        leases: LeaseStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.hotkey = hotkey
        self.metrics = metrics or ValidatorMetrics()
        if hasattr(store, "claim_expiry"):  # the SQL store's side of scoring.claim_expiry_days
            store.claim_expiry = cfg.scoring.to_params().claim_expiry
        self.store: ValidatorStore = TimedStore(store, self.metrics)
        self.chain = chain
        self.wall_clock = wall_clock

        def miner_client(miner_hotkey: str, base_url: str, timeout: float) -> MinerClient:
            return MinerClient(signer, miner_hotkey, base_url, timeout=timeout)

        self.connect: Callable[[str, str, float], MinerClient] = connect or miner_client
        # a poll round builds a client for every miner at once; each would load the CA bundle
        # into a TLS context of its own (about 20 ms of the loop's time), so they share one
        tls = httpx.create_ssl_context()

        def poll_client(miner_hotkey: str, base_url: str, timeout: float) -> MinerClient:
            transport = httpx.AsyncHTTPTransport(verify=tls)
            return MinerClient(signer, miner_hotkey, base_url, timeout=timeout, transport=transport)

        poll_connect: Callable[[str, str, float], MinerClient] = connect or poll_client
        self.verifier = verifier or VerifierPool(cfg.challenge.verifier_processes)
        self.sync = MetagraphSync(
            chain, self.store, hotkey, wall_clock=wall_clock, metrics=self.metrics
        )
        #: where polls and scoring do their heavy work (PostgreSQL only; see the module's doc)
        self.background = BackgroundStore.for_store(
            store, pool_size=cfg.database.pool_size, metrics=self.metrics
        )
        self.poller = Poller(
            store=self.store,
            connect=poll_connect,
            own_hotkey=hotkey,
            max_concurrency=cfg.miners.max_concurrency,
            request_timeout_s=cfg.miners.request_timeout_s,
            bucket_seconds=cfg.scoring.bucket_minutes * 60,
            wall_clock=wall_clock,
            metrics=self.metrics,
            limits=InventoryLimits(cfg.miners.max_workers, cfg.miners.max_gpus_per_worker),
            off_loop=self.background,
        )
        self.weights = WeightSetter(
            store=self.store,
            chain=chain,
            params=cfg.scoring.to_params(),
            wall_clock=wall_clock,
            metrics=self.metrics,
            off_loop=self.background,
        )
        # the collected receipts live with the store (SqlStore.receipts); a store without them
        # (a test double) runs no collection
        receipt_store = receipts if receipts is not None else getattr(store, "receipts", None)
        self.collector: ReceiptCollector | None = None
        self.receipt_store = receipt_store if isinstance(receipt_store, ReceiptStore) else None
        if isinstance(receipt_store, ReceiptStore):
            min_stake = cfg.leases.min_receipt_validator_stake
            receipt_store.min_validator_stake = min_stake  # the scoring side of the same rule
            receipt_store.max_prices = dict(cfg.leases.max_prices)
            receipt_store.lease_window = cfg.scoring.to_params().lease_window
            receipt_connect: ReceiptClientFactory = self.connect
            self.collector = ReceiptCollector(
                miners=self.store,
                receipts=receipt_store,
                connect=receipt_connect,
                own_hotkey=hotkey,
                netuid=cfg.chain.netuid,
                max_concurrency=cfg.miners.max_concurrency,
                request_timeout_s=cfg.miners.request_timeout_s,
                wall_clock=wall_clock,
                min_validator_stake=min_stake,
                metrics=self.metrics,
            )
        # leases sold to renters live with the store too (SqlStore.leases); without them the
        # validator sells nothing and serves no renter API
        lease_store = leases if leases is not None else getattr(store, "leases", None)
        self.lease_store = lease_store if isinstance(lease_store, LeaseStore) else None
        self.lease_manager: LeaseManager | None = None
        if self.lease_store is not None:
            self.lease_manager = LeaseManager(
                leases=self.lease_store,
                store=self.store,
                section=cfg.leases,
                netuid=cfg.chain.netuid,
                validator_hotkey=hotkey,
                connect=self.connect,
                request_timeout_s=cfg.miners.request_timeout_s,
                wall_clock=wall_clock,
                cpu_workers=cfg.challenge.cpu_workers,
            )
        #: the renter API's server while :meth:`serve` runs (``api.enabled``)
        self.renter_api: RenterApiServer | None = None
        self.challenger = Challenger(
            store=self.store,
            connect=self.connect,
            verifier=self.verifier,
            section=cfg.challenge,
            metrics=self.metrics,
            wall_clock=wall_clock,
            known_lease=lambda key: self.epochs.knows_lease(key),
        )
        self.epochs = EpochRunner(
            cfg,
            store=self.store,
            # epoch starts must be unpredictable: the operating system's CSPRNG unless a test
            # passes a seeded one
            planner=EpochPlanner(cfg.challenge, rng or random.SystemRandom()),
            challenger=self.challenger,
            poller=self.poller,
            metrics=self.metrics,
            wall_clock=wall_clock,
            lease_store=self.lease_store,
            receipt_store=self.receipt_store,
            on_challenge=on_challenge,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Close what a previous run left in flight, then insist on registration."""
        closed = await self.store.close_in_flight(self.wall_clock(), "validator restarted")
        if closed:
            log.info("in_flight_closed", challenges=closed, outcome="excused")
        view = await self.sync.sync()  # NotRegistered stops us here
        me = view.require(self.hotkey)
        log.info(
            "registered",
            hotkey=self.hotkey,
            uid=me.uid,
            netuid=view.netuid,
            validator_permit=me.validator_permit,
            neurons=len(view),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """:meth:`start`, then :meth:`serve`."""
        try:
            await self.start()
        except BaseException:
            await self.shutdown()
            raise
        await self.serve(stop)

    async def serve(self, stop: asyncio.Event) -> None:
        """Run every loop until ``stop`` is set, then shut down."""
        cfg = self.cfg
        loops = [
            self._loop("metagraph", cfg.chain.sync_interval_s, self._sync_metagraph, stop, True),
            self._loop("poll", cfg.miners.poll_interval_s, self._poll, stop),
            self.epochs.loop(stop),
            self._loop("prune", PRUNE_INTERVAL_S, self._prune, stop),
            self._loop("receipts", cfg.leases.receipt_poll_interval_s, self._receipts, stop),
            self._loop("db_ping", PING_INTERVAL_S, self._ping, stop),
            weights_loop(
                self.weights,
                self.chain,
                stop,
                interval_blocks=cfg.scoring.weights_interval_blocks,
                check_interval_s=cfg.scoring.weights_check_interval_s,
            ),
        ]
        if self.lease_manager is not None:
            manager = self.lease_manager
            loops.append(self._loop("leases", manager.tick_interval_s, manager.tick, stop))
        try:
            await self.start_renter_api()
        except BaseException:
            await self.shutdown()
            raise
        tasks = [asyncio.create_task(loop) for loop in loops]
        log.info("validator_started", hotkey=self.hotkey)
        try:
            await stop.wait()
        finally:
            log.info("validator_stopping")
            if self.renter_api is not None:
                await self.renter_api.stop()
                self.renter_api = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.shutdown()

    async def start_renter_api(self) -> None:
        """Serve the renter API on ``api.host:api.port`` when it is enabled and leases can be
        stored; a port that cannot be bound raises ``ConfigError``."""
        api = self.cfg.api
        if not api.enabled or self.lease_manager is None or self.lease_store is None:
            return
        app = create_renter_app(
            store=self.lease_store,
            manager=self.lease_manager,
            settings=RenterApiSettings(
                max_body_bytes=api.max_body_bytes,
                rate_limit_per_minute=api.rate_limit_per_minute,
                rate_limit_burst=api.rate_limit_burst,
            ),
        )
        server = RenterApiServer(app, api.host, api.port)
        await server.start()
        self.renter_api = server

    async def shutdown(self) -> None:
        """Finish or cancel running challenges (closing the cancelled ones as excused), then
        release the verifier, chain and store."""
        running = list(self.epochs.running)
        if running:
            _, pending = await asyncio.wait(running, timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                with contextlib.suppress(ByteLeapError):
                    closed = await self.store.close_in_flight(
                        self.wall_clock(), "validator stopped"
                    )
                    log.info("in_flight_closed", challenges=closed, outcome="excused")
        await self.challenger.aclose()
        if self.background is not None:
            await self.background.aclose()
        await asyncio.to_thread(self.verifier.close)
        with contextlib.suppress(Exception):
            await self.chain.close()

    # ------------------------------------------------------------------ loops

    async def _loop(
        self,
        name: str,
        interval_s: float,
        step: Callable[[], Awaitable[None]],
        stop: asyncio.Event,
        wait_first: bool = False,
    ) -> None:
        """Run ``step`` every ``interval_s`` until ``stop``; a failing step is logged, counted
        and retried at the next interval, never fatal."""
        if wait_first and await stopped_after(stop, interval_s):
            return
        while not stop.is_set():
            self.metrics.rounds.labels(loop=name).inc()
            try:
                await step()
            except ByteLeapError as exc:
                self.metrics.loop_errors.labels(loop=name, code=exc.code).inc()
                log.warning("loop_failed", loop=name, code=exc.code, error=exc.message)
            except Exception:
                self.metrics.loop_errors.labels(loop=name, code="internal").inc()
                log.exception("loop_crashed", loop=name)
            if await stopped_after(stop, interval_s):
                return

    async def _sync_metagraph(self) -> None:
        try:
            await self.sync.sync()
        except NotRegistered as exc:
            log.error("deregistered", error=exc.message)
            raise

    async def poll_once(self) -> PollSummary:
        """Poll every miner once and refresh the worker gauges."""
        miners = await self.store.miners()
        summary = await self.poller.poll_all(miners)
        now = self.wall_clock()
        if self.background is not None:  # workers() resolves GPU ownership over every GPU
            known, online = await self.background.run(worker_counts, now)
        else:
            known, online = await worker_counts(self.store, now)
        self.metrics.workers_known.set(known)
        self.metrics.workers_online.set(online)
        log.debug("polled", ok=len(summary.ok), failed=len(summary.failed))
        return summary

    async def plan_once(self) -> EpochPlan:
        """What an epoch starting now would challenge; nothing is dispatched."""
        return await self.epochs.plan_once()

    async def challenge_round(self) -> list[ChallengeResult]:
        """Plan an epoch now and run it to its end (devnet and tests use this; the daemon's
        loop starts epochs at random times without waiting for them)."""
        report = await self.run_epoch(await self.plan_once())
        return list(report.results)

    async def run_epoch(self, plan: EpochPlan) -> EpochReport:
        return await self.epochs.run_epoch(plan)

    async def _poll(self) -> None:
        await self.poll_once()

    async def collect_receipts(self) -> CollectionSummary:
        """Fetch, check and store every miner's new receipts once."""
        if self.collector is None:
            return CollectionSummary()
        return await self.collector.collect_all()

    async def _receipts(self) -> None:
        await self.collect_receipts()

    def record_lease_revenue(self, inputs: Mapping[str, Any]) -> None:
        """Per-miner lease revenue of the scoring just done (the stored explanation)."""
        record_lease_revenue(self.metrics, inputs)

    async def _prune(self) -> None:
        database = self.cfg.database
        deleted = await self.store.prune(
            self.wall_clock(),
            retention=timedelta(days=database.retention_days),
            availability_retention=timedelta(hours=database.availability_retention_hours),
        )
        if any(deleted.values()):
            log.info("pruned", **deleted)

    async def _ping(self) -> None:
        self.metrics.db_ping_seconds.set(await self.store.ping())


def run_validator(
    cfg: ValidatorConfig,
    wallet: Any,
    chain_factory: Callable[[], Awaitable[ChainPort]],
    store_factory: Callable[[], Awaitable[ValidatorStore]],
) -> None:
    """Run until SIGINT/SIGTERM (the first stops gracefully within :data:`DRAIN_S`, a second
    exits at once). ``wallet`` is a bittensor wallet whose hotkey signs."""

    async def main(stop: asyncio.Event) -> None:
        store = await store_factory()
        try:
            chain = await chain_factory()
            metrics = ValidatorMetrics()
            daemon = ValidatorDaemon(
                cfg,
                signer=wallet,
                hotkey=wallet.hotkey.ss58_address,
                store=store,
                chain=chain,
                metrics=metrics,
            )
            try:
                await daemon.start()
            except BaseException:
                await daemon.shutdown()
                raise
            freeze_startup_heap()
            if cfg.metrics.enabled:
                try:
                    start_http_server(
                        cfg.metrics.port, addr=cfg.metrics.host, registry=metrics.registry
                    )
                except OSError as exc:
                    await daemon.shutdown()
                    raise ConfigError(
                        f"cannot serve metrics on {cfg.metrics.host}:{cfg.metrics.port}: {exc}",
                        key="metrics.port",
                    ) from None
            await daemon.serve(stop)
        finally:
            await store.close()

    started = time.monotonic()
    run_daemon(main, drain_s=DRAIN_S)
    log.info("validator_stopped", ran_s=round(time.monotonic() - started, 1))


__all__ = [
    "ValidatorDaemon",
    "freeze_startup_heap",
    "run_validator",
    "utc_now",
]
