"""The miner's view of the chain: registration check, endpoint publishing, metagraph cache."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from byteleap.chain import ChainPort, Endpoint, MetagraphView
from byteleap.errors import ChainError

log = structlog.get_logger("byteleap.miner.chain")


class MetagraphCache:
    """The latest metagraph, read by the validator gate on every request."""

    def __init__(self) -> None:
        self.view: MetagraphView | None = None

    def current(self) -> MetagraphView | None:
        return self.view


async def sync_once(chain: ChainPort, hotkey: str, endpoint: Endpoint | None) -> MetagraphView:
    """Read the metagraph, insist that ``hotkey`` is registered (``NotRegistered`` otherwise) and
    publish ``endpoint`` when the chain shows another one. Serving is rate-limited on chain, so it
    is only done when it changed."""
    view = await chain.metagraph()
    me = view.require(hotkey)
    if endpoint is not None and me.axon != endpoint:
        log.info("serving_endpoint", endpoint=str(endpoint), was=str(me.axon))
        await chain.serve(endpoint.ip, endpoint.port)
    return view


async def sync_forever(
    chain: ChainPort,
    hotkey: str,
    endpoint: Endpoint | None,
    cache: MetagraphCache,
    interval_s: float,
    stop: asyncio.Event,
) -> None:
    """Refresh ``cache`` every ``interval_s`` after the start-up sync the caller already did;
    a failing chain keeps the last good view."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        if stop.is_set():
            return
        try:
            cache.view = await sync_once(chain, hotkey, endpoint)
        except ChainError as exc:
            log.warning("metagraph_sync_failed", error=exc.message)
