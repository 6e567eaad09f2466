"""Pick the compute backend the config asks for."""

from __future__ import annotations

from byteleap.errors import ConfigError
from byteleap.protocol.inventory import GpuInfo, Inventory
from workers.backends.base import ComputeBackend
from workers.backends.numpy_backend import NumpyBackend


def cpu_name(inventory: Inventory) -> str:
    return inventory.host.cpu_model or "unknown"


def choose_backend(
    choice: str,
    worker_pubkey: bytes,
    inventory: Inventory,
    devices: list[int] | None = None,
    *,
    pace_flops: float | None = None,
) -> ComputeBackend:
    """``auto`` uses CuPy when a CUDA GPU is usable and NumPy otherwise. ``pace_flops``
    (``compute.pace_flops``, development only) paces the NumPy device; CuPy is never paced."""
    if choice in ("auto", "cupy"):
        from workers.backends.cupy_backend import CupyBackend

        if CupyBackend.available():
            names = {gpu.index: (gpu.uuid, gpu.name) for gpu in inventory.gpus}
            return CupyBackend(devices=devices, nvml=names)
        if choice == "cupy":
            raise ConfigError(
                "no usable CUDA GPU (is cupy-cuda12x installed and a driver loaded?)",
                key="compute.backend",
            )
    return NumpyBackend.for_worker(worker_pubkey, cpu_name(inventory), pace_flops=pace_flops)


#: NVML indices are small; the CPU pseudo-device takes the top of the range so it never collides
CPU_DEVICE_INDEX = 1023


def advertise_devices(inventory: Inventory, backend: ComputeBackend) -> Inventory:
    """The inventory with the backend's CPU device listed among the GPUs.

    A CPU-class worker (development, devnet) has no NVML GPU, but validators challenge devices by
    UUID, so its CPU appears in ``gpus`` under its per-worker ``CPU-...`` UUID."""
    listed = {gpu.uuid for gpu in inventory.gpus}
    extra = [
        GpuInfo(
            index=CPU_DEVICE_INDEX,
            name=device.name[:64],
            uuid=device.uuid,
            memory_total_mib=inventory.host.memory_total_bytes // (1024 * 1024),
        )
        for device in backend.devices()
        if device.kind == "cpu" and device.uuid not in listed
    ]
    if not extra:
        return inventory.model_copy(update={"backends": [backend.name]})
    return inventory.model_copy(
        update={"gpus": [*inventory.gpus, *extra], "backends": [backend.name]}
    )
