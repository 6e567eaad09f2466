"""``byteleap-miner run``: the worker hub, the validator API and the chain sync in one process.

Start-up order matters for operators: the chain is read first, so an unregistered hotkey stops the
miner with a clear message before any port is opened. Shutdown (SIGINT/SIGTERM) stops the API,
closes worker links with "going away", and stops the chain sync, within :data:`DRAIN_S`; a second
signal exits at once (:mod:`daemonkit.signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server

import byteleap
from byteleap.chain import ChainPort, Endpoint
from byteleap.config import MinerConfig
from daemonkit.http import EmbeddedServer
from daemonkit.signals import run_daemon
from neurons.miner.api import create_app
from neurons.miner.auth import ValidatorGate
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.chain_sync import MetagraphCache, sync_forever, sync_once
from neurons.miner.hub import WorkerHub
from neurons.miner.hub_metrics import HubMetrics
from neurons.miner.store import MinerStore

log = structlog.get_logger("byteleap.miner")

#: seconds a stopping miner gets to close its API, worker links and chain sync
DRAIN_S = 30.0
#: of which open validator requests get this many
API_GRACEFUL_S = 10


def public_endpoint(cfg: MinerConfig) -> Endpoint | None:
    """The ``ip:port`` validators should call; None when it cannot be derived (not served)."""
    wildcard = ("0.0.0.0", "::")  # noqa: S104 (a comparison, not a bind)
    ip = cfg.api.external_ip or (cfg.api.host if cfg.api.host not in wildcard else None)
    if ip is None:
        return None
    return Endpoint(str(ip), cfg.api.external_port or cfg.api.port)


@dataclass
class MinerDaemon:
    cfg: MinerConfig
    hotkey: str
    signer: Callable[[bytes], bytes]
    chain: ChainPort

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.cfg
        endpoint = public_endpoint(cfg)
        cache = MetagraphCache()
        cache.view = await sync_once(self.chain, self.hotkey, endpoint)  # NotRegistered stops us
        log.info(
            "registered",
            hotkey=self.hotkey,
            netuid=cfg.chain.netuid,
            endpoint=str(endpoint) if endpoint else None,
        )

        registry = CollectorRegistry()
        # StorageError stops the start-up, naming the file
        store = await asyncio.to_thread(MinerStore, cfg.database_file)
        authorized = AuthorizedKeys.from_config(cfg.workers)
        hub = WorkerHub(cfg.workers, authorized, self.hotkey, metrics=HubMetrics(registry))
        await hub.start()
        gate = ValidatorGate(
            self.hotkey,
            metagraph_source=cache.current,
            min_stake=cfg.api.min_validator_stake,
            # the operator's own hotkey may read its miner (`byteleap-miner workers`)
            allowed={*cfg.api.allowed_validators, self.hotkey},
        )
        app = create_app(
            miner_hotkey=self.hotkey,
            signer=self.signer,
            gate=gate,
            workers=hub,
            config=cfg.api,
            version=byteleap.__version__,
            store=store,
            netuid=cfg.chain.netuid,
            receipt_skew_s=cfg.leases.receipt_clock_skew_s,
            receipt_retention_s=cfg.leases.receipt_retention_days * 86_400.0,
        )
        api = EmbeddedServer(
            app,
            cfg.api.host,
            cfg.api.port,
            name="validator API",
            key="api.port",
            graceful_s=API_GRACEFUL_S,
        )
        try:
            if cfg.metrics.enabled:
                start_http_server(cfg.metrics.port, addr=cfg.metrics.host, registry=registry)
            await api.start()
        except BaseException:
            await hub.stop()
            await asyncio.to_thread(store.close)
            await self.chain.close()
            raise

        sync_task = asyncio.create_task(
            sync_forever(self.chain, self.hotkey, endpoint, cache, cfg.chain.sync_interval_s, stop)
        )
        log.info("miner_started", workers_port=hub.port, api_port=api.port)
        try:
            await stop.wait()
        finally:
            log.info("miner_stopping")
            await api.stop()
            await hub.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sync_task, timeout=5)
            sync_task.cancel()
            await asyncio.to_thread(store.close)
            await self.chain.close()


def run_miner(
    cfg: MinerConfig, wallet: Any, chain_factory: Callable[[], Awaitable[ChainPort]]
) -> None:
    """Run until SIGINT/SIGTERM (the first stops gracefully within :data:`DRAIN_S`, a second
    exits at once). ``wallet`` is a bittensor wallet whose hotkey signs."""

    async def main(stop: asyncio.Event) -> None:
        chain = await chain_factory()
        daemon = MinerDaemon(cfg, wallet.hotkey.ss58_address, wallet.hotkey.sign, chain)
        await daemon.run(stop)

    started = time.monotonic()
    run_daemon(main, drain_s=DRAIN_S)
    log.info("miner_stopped", ran_s=round(time.monotonic() - started, 1))
