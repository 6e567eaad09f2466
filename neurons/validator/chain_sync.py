"""The validator's view of the metagraph: who is registered, where miners serve, which uid is
whose. Each sync is written to the store (``sync_miners``), so every other loop reads miners from
one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog

from byteleap.chain import ChainPort, MetagraphView
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import ValidatorStore

log = structlog.get_logger("byteleap.validator.chain")


class MetagraphSync:
    """Reads the metagraph and stores it; keeps the latest view for the weights' uid map."""

    def __init__(
        self,
        chain: ChainPort,
        store: ValidatorStore,
        hotkey: str,
        *,
        wall_clock: Callable[[], datetime],
        metrics: ValidatorMetrics | None = None,
    ) -> None:
        self.chain = chain
        self.store = store
        self.hotkey = hotkey
        self.wall_clock = wall_clock
        self.metrics = metrics or ValidatorMetrics()
        self.view: MetagraphView | None = None

    async def sync(self) -> MetagraphView:
        """One sync. Raises ``NotRegistered`` when this validator's hotkey is not in the
        metagraph (nothing is stored then), ``ChainError`` or ``StorageError`` on failure."""
        view = await self.chain.metagraph()
        me = view.require(self.hotkey)
        await self.store.sync_miners(self.wall_clock(), view.neurons)
        had_permit = self.view is None or self.view.is_validator(self.hotkey)
        if had_permit and not me.validator_permit:  # first sync, or the permit was just lost
            log.warning(
                "no_validator_permit",
                hotkey=self.hotkey,
                uid=me.uid,
                note="miners will refuse this validator and the chain its weights",
            )
        self.view = view
        self.metrics.miners_known.set(len(view))
        return view


__all__ = ["MetagraphSync"]
