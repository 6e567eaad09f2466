"""The inventory for people (rich tables) and for programs (JSON), and the
``byteleap-worker inventory [--json]`` command built on them."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from byteleap.protocol.inventory import GpuInfo, HostInfo, Inventory
from workers.inventory.gpus import load_nvml

_GIB = 2**30
_MISSING = "-"


def _or_missing(value: object, unit: str = "", fmt: str = "{}") -> str:
    return _MISSING if value is None else fmt.format(value) + unit


def _bytes(count: int) -> str:
    return f"{count / _GIB:,.1f} GiB"


def _gpu_memory(gpu: GpuInfo) -> str:
    used = _MISSING if gpu.memory_used_mib is None else f"{gpu.memory_used_mib:,}"
    return f"{used} / {gpu.memory_total_mib:,} MiB"


def _power(gpu: GpuInfo) -> str:
    if gpu.power_draw_w is None and gpu.power_limit_w is None:
        return _MISSING
    draw = _or_missing(gpu.power_draw_w, fmt="{:.0f}")
    limit = _or_missing(gpu.power_limit_w, fmt="{:.0f}")
    return f"{draw} / {limit} W"


def _clocks(gpu: GpuInfo) -> str:
    if gpu.sm_clock_mhz is None and gpu.mem_clock_mhz is None:
        return _MISSING
    return f"{_or_missing(gpu.sm_clock_mhz)} / {_or_missing(gpu.mem_clock_mhz)} MHz"


def gpu_table(gpus: Iterable[GpuInfo]) -> Table:
    """One row per GPU."""
    rows = list(gpus)
    title = "GPUs"
    versions = [
        f"{label} {value}"
        for label, value in (
            ("driver", rows[0].driver_version if rows else None),
            ("CUDA", rows[0].cuda_version if rows else None),
        )
        if value
    ]
    if versions:
        title += f" ({', '.join(versions)})"
    table = Table(title=escape(title), title_justify="left")
    for column in ("#", "name", "UUID", "memory used/total", "util", "temp", "power"):
        table.add_column(column, no_wrap=column in {"UUID", "name"})
    for column in ("SM/mem clock", "CC", "PCI bus", "serial"):
        table.add_column(column)
    for gpu in rows:
        table.add_row(
            str(gpu.index),
            escape(gpu.name),
            escape(gpu.uuid),
            _gpu_memory(gpu),
            _or_missing(gpu.utilization_pct, " %", "{:.0f}"),
            _or_missing(gpu.temperature_c, " °C", "{:.0f}"),
            _power(gpu),
            _clocks(gpu),
            escape(_or_missing(gpu.compute_capability)),
            escape(_or_missing(gpu.pci_bus_id)),
            escape(_or_missing(gpu.serial)),
        )
    return table


def host_table(host: HostInfo, backends: Iterable[str] = ()) -> Table:
    """The host as name/value rows."""
    table = Table(title="Host", title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    cpus = f"{host.cpu_count_logical} logical"
    if host.cpu_count_physical is not None:
        cpus += f", {host.cpu_count_physical} physical"
    memory = f"{_bytes(host.memory_available_bytes)} available of {_bytes(host.memory_total_bytes)}"
    rows = [
        ("hostname", host.hostname or _MISSING),
        ("OS", host.os or _MISSING),
        ("kernel", host.kernel or _MISSING),
        ("CPU", host.cpu_model or _MISSING),
        ("CPUs", cpus),
        ("load average", " ".join(f"{v:.2f}" for v in host.load_avg) or _MISSING),
        ("memory", memory),
        ("uptime", _uptime(host.uptime_s)),
        ("network", ", ".join(host.network_interfaces) or _MISSING),
    ]
    rows.extend(
        (f"disk {disk.mount}", f"{_bytes(disk.free_bytes)} free of {_bytes(disk.total_bytes)}")
        for disk in host.disks
    )
    backend_list = ", ".join(backends)
    if backend_list:
        rows.append(("backends", backend_list))
    for name, value in rows:
        table.add_row(name, escape(value))
    return table


def _uptime(seconds: float) -> str:
    minutes = int(seconds) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h {minutes}m"


def render_table(inventory: Inventory, console: Console) -> None:
    """Print the GPUs and the host as rich tables."""
    if inventory.gpus:
        console.print(gpu_table(inventory.gpus))
    else:
        console.print("[bold]GPUs:[/bold] none reported (CPU-only inventory)")
    console.print(host_table(inventory.host, inventory.backends))


def render_warnings(warnings: Iterable[str], console: Console) -> None:
    """One yellow line per warning."""
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)


def to_json(inventory: Inventory) -> str:
    """The inventory as the wire model's JSON (``Inventory.model_validate_json`` reads it back)."""
    return inventory.model_dump_json(indent=2)


_REAL_NVML: Any = object()


def inventory_command(
    json_output: bool,
    *,
    nvml: ModuleType | None = _REAL_NVML,
    backends: list[str] | None = None,
    console: Console | None = None,
    err_console: Console | None = None,
) -> int:
    """``byteleap-worker inventory [--json]``: collect with the real ``pynvml`` and print.

    Tables (or JSON, with ``json_output``) go to ``console`` (stdout), warnings to ``err_console``
    (stderr), so ``--json`` output can be piped. Returns 0 whenever an inventory was printed, also
    a degraded one (the warnings say what is missing); 1 when collecting failed unexpectedly.
    ``nvml``, ``backends`` and the consoles are for tests and embedding.
    """
    from workers.inventory import collect_inventory_report  # the package imports this module

    out = console or Console()
    err = err_console or Console(stderr=True)
    try:
        module = load_nvml() if nvml is _REAL_NVML else nvml
        report = collect_inventory_report(nvml=module, backends=backends)
    except Exception as exc:
        err.print(f"[red]error:[/red] collecting the inventory failed: {escape(repr(exc))}")
        return 1
    render_warnings(report.warnings, err)
    if json_output:
        out.out(to_json(report.inventory), highlight=False)
    else:
        render_table(report.inventory, out)
    return 0


__all__ = [
    "gpu_table",
    "host_table",
    "inventory_command",
    "render_table",
    "render_warnings",
    "to_json",
]
