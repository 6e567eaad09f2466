"""What the miner tells validators about itself: ``/health`` and ``/inventory``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from byteleap.protocol.miner_api.inventory import HealthResponse, InventoryResponse
from neurons.miner.ports import WorkerDirectory


@dataclass
class InventoryService:
    miner_hotkey: str
    workers: WorkerDirectory
    clock: Callable[[], float]
    version: str
    started: float

    def health(self) -> HealthResponse:
        connected = self.workers.connected()
        return HealthResponse(
            status="ok" if connected > 0 else "degraded",
            miner_hotkey=self.miner_hotkey,
            version=self.version,
            workers_connected=min(connected, 4096),
            uptime_s=max(0.0, self.clock() - self.started),
        )

    def inventory(self) -> InventoryResponse:
        return InventoryResponse(miner_hotkey=self.miner_hotkey, workers=self.workers.summaries())


__all__ = ["InventoryService"]
