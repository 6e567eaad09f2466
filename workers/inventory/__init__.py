"""The worker's hardware inventory: its GPUs (NVML) and its host (psutil), as the protocol's
:class:`~byteleap.protocol.inventory.Inventory`.

* :func:`collect_inventory` returns the inventory and the warnings of everything that could not be
  read; :func:`collect_inventory_report` adds whether the GPUs are healthy (for heartbeats).
* :mod:`.gpus` reads NVML, :mod:`.host` reads the OS, :mod:`.render` prints tables and JSON and
  holds the ``byteleap-worker inventory`` command.

Nothing here raises because of the hardware: a missing driver, a lost GPU or an unreadable field
degrades the report and adds a warning (``docs/worker-inventory.md``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from byteleap.protocol.inventory import GpuInfo, Inventory
from workers.inventory.gpus import GpuScan, NvmlSession, load_nvml, scan_gpus
from workers.inventory.host import collect_host
from workers.inventory.render import inventory_command, render_table, render_warnings, to_json


@dataclass(frozen=True)
class InventoryReport:
    """An inventory, the warnings collected on the way, and the GPU scan behind it."""

    inventory: Inventory
    warnings: tuple[str, ...]
    gpu_scan: GpuScan

    @property
    def healthy(self) -> bool:
        """NVML works, every GPU it counts answered with its identity, and none is lost.

        A host without NVML (CPU-only, or the driver is not loaded) is never healthy in this sense;
        a host where NVML counts zero GPUs is.
        """
        return self.gpu_scan.healthy


def default_backends(gpus: tuple[GpuInfo, ...] | list[GpuInfo]) -> list[str]:
    """The compute backends a worker can offer: ``cupy`` when it has GPUs and CuPy is installed,
    and ``numpy`` always."""
    if gpus and importlib.util.find_spec("cupy") is not None:
        return ["cupy", "numpy"]
    return ["numpy"]


def collect_inventory_report(
    *,
    nvml: ModuleType | NvmlSession | None,
    backends: list[str] | None,
    ps: Any = None,
    cpuinfo: Path = Path("/proc/cpuinfo"),
) -> InventoryReport:
    """Scan the GPUs and the host; never raises because of the hardware.

    ``nvml`` is the ``pynvml`` module (see :func:`~workers.inventory.gpus.load_nvml`), a stand-in
    with the same surface, an open :class:`NvmlSession` (a long-running worker keeps one, so NVML
    is initialised once and not on every report), or ``None`` for a host without NVML.
    ``backends=None`` means :func:`default_backends`. ``ps`` and ``cpuinfo`` are for tests.

    Raises ``pydantic.ValidationError`` only for malformed ``backends`` names (a caller's bug).
    """
    scan = nvml.scan() if isinstance(nvml, NvmlSession) else scan_gpus(nvml)
    host, host_warnings = collect_host(ps=ps, cpuinfo=cpuinfo)
    inventory = Inventory(
        host=host,
        gpus=list(scan.gpus),
        backends=default_backends(scan.gpus) if backends is None else list(backends),
    )
    return InventoryReport(
        inventory=inventory, warnings=(*scan.warnings, *host_warnings), gpu_scan=scan
    )


def collect_inventory(
    *,
    nvml: ModuleType | NvmlSession | None,
    backends: list[str] | None,
) -> tuple[Inventory, list[str]]:
    """This worker's :class:`Inventory` and the warnings of what could not be read.

    See :func:`collect_inventory_report` for the arguments; it also says whether the GPUs are
    healthy.
    """
    report = collect_inventory_report(nvml=nvml, backends=backends)
    return report.inventory, list(report.warnings)


__all__ = [
    "GpuScan",
    "InventoryReport",
    "NvmlSession",
    "collect_host",
    "collect_inventory",
    "collect_inventory_report",
    "default_backends",
    "inventory_command",
    "load_nvml",
    "render_table",
    "render_warnings",
    "scan_gpus",
    "to_json",
]
