"""What a reported GPU is: the model catalogue and device identity (SPEC 4.5).

The validator sizes challenges, sets deadlines, judges impossible throughput and keys prices by
the canonical model id that :func:`identify` gives a device, never by the free-form name a
worker reports, so no spelling of a name can choose its own figures.
"""

from __future__ import annotations

from byteleap.hardware.catalogue import (
    CATALOGUE,
    CPU_MODEL,
    CPU_UUID_PREFIX,
    EXACT_FORMATS,
    MEMORY_HIGH_PERCENT,
    MEMORY_LOW_PERCENT,
    NVML_EXAMPLES,
    TERA,
    UNKNOWN,
    DeviceIdentity,
    GpuModel,
    identify,
    match_model,
    max_dense_tf32,
    max_exact_peak,
    normalise,
    price_key,
    slowest_backend_flops,
)

__all__ = [
    "CATALOGUE",
    "CPU_MODEL",
    "CPU_UUID_PREFIX",
    "EXACT_FORMATS",
    "MEMORY_HIGH_PERCENT",
    "MEMORY_LOW_PERCENT",
    "NVML_EXAMPLES",
    "TERA",
    "UNKNOWN",
    "DeviceIdentity",
    "GpuModel",
    "identify",
    "match_model",
    "max_dense_tf32",
    "max_exact_peak",
    "normalise",
    "price_key",
    "slowest_backend_flops",
]
