"""Builders shared by the worker tests."""

from __future__ import annotations

from byteleap.protocol.inventory import GpuInfo, HostInfo, Inventory

MINER_HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def host() -> HostInfo:
    return HostInfo(
        hostname="gpu-host-1",
        cpu_model="Test CPU",
        cpu_count_logical=2,
        memory_total_bytes=8 << 30,
        memory_available_bytes=4 << 30,
    )


def inventory(*uuids: str) -> Inventory:
    gpus = [
        GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", uuid=uuid, memory_total_mib=81559)
        for i, uuid in enumerate(uuids)
    ]
    return Inventory(host=host(), gpus=gpus, backends=["numpy"])
