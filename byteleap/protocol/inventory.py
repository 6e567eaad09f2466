"""What a worker reports about its host and GPUs (sent in ``Register`` and some ``Heartbeat``\\ s).

The worker fills these from NVML and the OS; fields NVML or the platform may not provide are
optional. The figures are self-reported and therefore only *claims*: the compute challenge is what
proves a GPU, and a GPU's identity in the network is its NVML UUID (SPEC 2).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from byteleap.protocol.common import (
    MAX_GPUS,
    MAX_U63,
    GpuUuid,
    Name,
    NonNegFloat,
    ShortName,
    WireModel,
    distinct,
)

#: MiB counts: far beyond any device, but bounded
_Mib = Annotated[int, Field(ge=0, le=2**40)]
_Bytes = Annotated[int, Field(ge=0, le=MAX_U63)]
_Mhz = Annotated[int, Field(ge=0, le=100_000)]
_Watts = Annotated[float, Field(ge=0.0, le=100_000.0)]
_IfName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
_Version = Annotated[str, Field(max_length=64, pattern=r"^[\x21-\x7e]*$")]
_Capability = Annotated[str, Field(max_length=7, pattern=r"^[0-9]{1,3}\.[0-9]{1,3}$")]


class GpuInfo(WireModel):
    """One GPU as NVML describes it."""

    index: Annotated[int, Field(ge=0, lt=1024)]
    name: ShortName
    uuid: GpuUuid
    serial: Annotated[str, Field(max_length=64, pattern=r"^[\x20-\x7e]*$")] | None = None
    pci_bus_id: _Version | None = None
    memory_total_mib: _Mib
    memory_used_mib: _Mib | None = None
    utilization_pct: Annotated[float, Field(ge=0.0, le=100.0)] | None = None
    temperature_c: Annotated[float, Field(ge=-100.0, le=300.0)] | None = None
    power_draw_w: _Watts | None = None
    power_limit_w: _Watts | None = None
    sm_clock_mhz: _Mhz | None = None
    mem_clock_mhz: _Mhz | None = None
    #: ``"major.minor"``, e.g. ``"9.0"`` for an H100
    compute_capability: _Capability | None = None
    driver_version: _Version | None = None
    cuda_version: _Version | None = None


class DiskInfo(WireModel):
    """One mounted file system."""

    mount: Name
    total_bytes: _Bytes
    free_bytes: _Bytes


class HostInfo(WireModel):
    """The machine a worker runs on."""

    hostname: Name
    cpu_model: Name = ""
    cpu_count_physical: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    cpu_count_logical: Annotated[int, Field(ge=1, le=1_000_000)]
    load_avg: Annotated[list[NonNegFloat], Field(max_length=3)] = Field(default_factory=list)
    memory_total_bytes: _Bytes
    memory_available_bytes: _Bytes
    disks: Annotated[list[DiskInfo], Field(max_length=64)] = Field(default_factory=list)
    network_interfaces: Annotated[list[_IfName], Field(max_length=64)] = Field(default_factory=list)
    uptime_s: NonNegFloat = 0.0
    os: Name = ""
    kernel: Name = ""


class Inventory(WireModel):
    """Everything a worker reports about itself."""

    host: HostInfo
    gpus: Annotated[list[GpuInfo], Field(max_length=MAX_GPUS)]
    #: compute backends the worker can run challenges on, e.g. ``["cupy", "numpy"]``
    backends: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_.-]+$")]],
        Field(max_length=16),
    ]

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if not distinct([gpu.uuid for gpu in self.gpus]):
            raise ValueError("GPU UUIDs must be distinct")
        if not distinct([gpu.index for gpu in self.gpus]):
            raise ValueError("GPU indices must be distinct")
        return self

    def gpu(self, uuid: str) -> GpuInfo | None:
        """The GPU with this UUID, if the worker reported it."""
        return next((gpu for gpu in self.gpus if gpu.uuid == uuid), None)


__all__ = ["DiskInfo", "GpuInfo", "HostInfo", "Inventory"]
