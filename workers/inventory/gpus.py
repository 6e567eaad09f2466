"""The GPUs of this host, read through NVML (``pynvml`` from the ``nvidia-ml-py`` package).

Every field of every device is read on its own. NVML answers ``NOT_SUPPORTED`` for serial numbers
on consumer boards, ``NO_PERMISSION`` inside some containers, ``GPU_IS_LOST`` for a board that fell
off the bus: such an error leaves that one field ``None`` and adds a warning, and every other field
and every other device is still reported. Two fields have no "unknown" spelling in the wire model:

* the UUID is the GPU's identity in the network (SPEC 2), so a device without a readable, valid
  UUID is skipped with a warning rather than reported under an invented identity;
* ``name`` falls back to ``"unknown"`` and ``memory_total_mib`` to ``0``, so a half-readable GPU
  still shows up, but never claims a model or memory it may not have.

Without an NVML library, or when ``nvmlInit`` fails (no driver, library not found), the scan is
empty with one clear warning: the worker then reports a CPU-only inventory. Nothing here raises.

The NVML module is injected (:class:`NvmlSession` and :func:`scan_gpus` take it as an argument),
so tests run the same code against ``tests/fake_nvml.py``; :func:`load_nvml` imports the real one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from byteleap.protocol.common import MAX_GPUS
from byteleap.protocol.inventory import GpuInfo

MIB = 2**20

#: NVML error names after which a device cannot be trusted to answer anything any more
LOST_ERRORS = ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_RESET_REQUIRED", "NVML_ERROR_GPU_NOT_FOUND")

#: device indices GpuInfo accepts are below this
MAX_DEVICE_INDEX = 1024

#: fields GpuInfo requires, and what a device reports when NVML cannot read them
GPU_FALLBACKS: Mapping[str, object] = {"name": "unknown", "memory_total_mib": 0}

_M = TypeVar("_M", bound=BaseModel)


def load_nvml() -> ModuleType | None:
    """The real ``pynvml`` module, or ``None`` when ``nvidia-ml-py`` is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


# --------------------------------------------------------------------------- helpers


def as_text(value: object) -> str:
    """A string NVML returned, as ``str``: older ``pynvml`` releases return ``bytes``."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    return str(value).replace("\x00", "").strip()


def as_int(value: object) -> int:
    """An integer NVML returned (a Python ``int`` or a ctypes value); refuses bools and floats."""
    inner = getattr(value, "value", value)  # a ctypes c_uint that slipped through
    if isinstance(inner, bool) or not isinstance(inner, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return int(inner)


def as_float(value: object) -> float:
    """An integer NVML returned, as ``float``."""
    return float(as_int(value))


def describe_error(nvml: Any, exc: BaseException) -> str:
    """``NVML_ERROR_NOT_SUPPORTED (3): Not Supported`` for an NVMLError, the type and text else.

    ``str()`` of a real NVMLError may call back into the library (``nvmlErrorString``), which can
    fail in turn; this never raises.
    """
    code = getattr(exc, "value", None)
    try:
        text = str(exc)
    except Exception:
        text = ""
    if not isinstance(code, int) or isinstance(code, bool):
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    name = error_name(nvml, code)
    head = f"{name} ({code})" if name else f"NVML error {code}"
    return f"{head}: {text}" if text and text != name else head


def error_name(nvml: Any, code: int) -> str | None:
    """The ``NVML_ERROR_*`` constant of ``nvml`` whose value is ``code``."""
    for attribute in dir(nvml):
        if attribute.startswith("NVML_ERROR_") and getattr(nvml, attribute, None) == code:
            return attribute
    return None


def _lost_codes(nvml: Any) -> frozenset[int]:
    codes = (getattr(nvml, name, None) for name in LOST_ERRORS)
    return frozenset(code for code in codes if isinstance(code, int))


def validate_leniently(
    model: type[_M],
    data: dict[str, object],
    *,
    fallbacks: Mapping[str, object],
    label: str,
    warnings: list[str],
) -> _M | None:
    """``model.model_validate(data)``, dropping what the model refuses instead of failing.

    A rejected optional field gets its default (``None``, ``""``, ``[]``), a rejected required
    field in ``fallbacks`` gets its fallback; each adds a warning. Returns ``None`` (with a
    warning) when a required field without a fallback is rejected.
    """
    data = dict(data)
    rejected: list[str] = []
    for _ in range(len(model.model_fields) + 1):
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            rejected = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        progress = False
        for name in rejected:
            field = model.model_fields.get(name)
            if name in fallbacks and data.get(name) != fallbacks[name]:
                replacement = fallbacks[name]
            elif field is not None and not field.is_required():
                replacement = field.get_default(call_default_factory=True)
                if data.get(name) == replacement:
                    continue
            else:
                continue
            shown = repr(data.get(name))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            warnings.append(f"{label}: {name} {shown} is malformed or out of range")
            data[name] = replacement
            progress = True
        if not progress:
            break
    warnings.append(f"{label}: skipped: its {', '.join(rejected) or 'data'} cannot be reported")
    return None


# --------------------------------------------------------------------------- field readers

Reader = Callable[[Any, Any], dict[str, object]]


def _name(nvml: Any, handle: Any) -> dict[str, object]:
    return {"name": as_text(nvml.nvmlDeviceGetName(handle)) or GPU_FALLBACKS["name"]}


def _serial(nvml: Any, handle: Any) -> dict[str, object]:
    return {"serial": as_text(nvml.nvmlDeviceGetSerial(handle)) or None}


def _pci(nvml: Any, handle: Any) -> dict[str, object]:
    info = nvml.nvmlDeviceGetPciInfo(handle)
    return {"pci_bus_id": as_text(info.busId) or None}


def _memory(nvml: Any, handle: Any) -> dict[str, object]:
    info = nvml.nvmlDeviceGetMemoryInfo(handle)
    return {
        "memory_total_mib": as_int(info.total) // MIB,
        "memory_used_mib": as_int(info.used) // MIB,
    }


def _utilization(nvml: Any, handle: Any) -> dict[str, object]:
    return {"utilization_pct": as_float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)}


def _temperature(nvml: Any, handle: Any) -> dict[str, object]:
    value = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
    return {"temperature_c": as_float(value)}


def _power_draw(nvml: Any, handle: Any) -> dict[str, object]:
    return {"power_draw_w": as_int(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0}  # mW


def _power_limit(nvml: Any, handle: Any) -> dict[str, object]:
    return {"power_limit_w": as_int(nvml.nvmlDeviceGetEnforcedPowerLimit(handle)) / 1000.0}


def _sm_clock(nvml: Any, handle: Any) -> dict[str, object]:
    return {"sm_clock_mhz": as_int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))}


def _mem_clock(nvml: Any, handle: Any) -> dict[str, object]:
    return {"mem_clock_mhz": as_int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))}


def _compute_capability(nvml: Any, handle: Any) -> dict[str, object]:
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return {"compute_capability": f"{as_int(major)}.{as_int(minor)}"}


#: (what the warning calls it, reader) for every per-device field after the UUID
DEVICE_READERS: tuple[tuple[str, Reader], ...] = (
    ("name", _name),
    ("serial", _serial),
    ("PCI bus id", _pci),
    ("memory", _memory),
    ("utilisation", _utilization),
    ("temperature", _temperature),
    ("power draw", _power_draw),
    ("power limit", _power_limit),
    ("SM clock", _sm_clock),
    ("memory clock", _mem_clock),
    ("compute capability", _compute_capability),
)


def cuda_version_text(version: int) -> str:
    """NVML's CUDA driver version number as ``major.minor``: ``12040`` is ``"12.4"``."""
    return f"{version // 1000}.{(version % 1000) // 10}"


# --------------------------------------------------------------------------- the scan


@dataclass(frozen=True)
class GpuScan:
    """What one pass over NVML found."""

    gpus: tuple[GpuInfo, ...]
    warnings: tuple[str, ...]
    #: nvmlInit succeeded and the device count could be read
    nvml_available: bool
    #: devices NVML counted (0 when it is unavailable)
    device_count: int
    #: indices of devices NVML counted but that are not in ``gpus`` (no handle, no UUID, ...)
    skipped: tuple[int, ...] = ()
    #: indices of devices that answered some call with GPU_IS_LOST / RESET_REQUIRED / NOT_FOUND
    lost: tuple[int, ...] = ()

    @property
    def healthy(self) -> bool:
        """NVML works, every device it counts is reported, and none of them is lost."""
        return (
            self.nvml_available
            and len(self.gpus) == self.device_count
            and not self.skipped
            and not self.lost
        )


class NvmlSession:
    """One NVML session: ``nvmlInit`` once on :meth:`open`, ``nvmlShutdown`` on :meth:`close`.

    A long-running worker keeps one session open and calls :meth:`scan` for every report; a
    one-off caller uses :func:`scan_gpus`. ``nvml`` is the ``pynvml`` module, a stand-in with the
    same surface, or ``None`` (no NVML: every scan is empty, with a warning). When ``nvmlInit``
    fails the session stays closed and the next :meth:`scan` tries again, so a driver that loads
    after the worker started is picked up.
    """

    def __init__(self, nvml: ModuleType | None) -> None:
        self.nvml: ModuleType | None = nvml
        self.is_open = False

    def __enter__(self) -> NvmlSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> list[str]:
        """Initialise NVML unless already done; returns warnings (empty on success)."""
        if self.is_open:
            return []
        nvml = self.nvml
        if nvml is None:
            return [
                "NVML is not available (nvidia-ml-py is not installed): this inventory is CPU-only"
            ]
        try:
            nvml.nvmlInit()
        except Exception as exc:
            return [
                f"NVML could not be initialised ({describe_error(nvml, exc)}): "
                "is the NVIDIA driver installed and loaded? This inventory is CPU-only"
            ]
        self.is_open = True
        return []

    def close(self) -> list[str]:
        """Shut NVML down if this session initialised it; returns warnings."""
        nvml = self.nvml
        if not self.is_open or nvml is None:
            return []
        self.is_open = False
        try:
            nvml.nvmlShutdown()
        except Exception as exc:
            return [f"nvmlShutdown failed: {describe_error(nvml, exc)}"]
        return []

    def scan(self) -> GpuScan:
        """Read every device; opens the session first if needed. Never raises."""
        warnings = self.open()
        nvml = self.nvml
        if not self.is_open or nvml is None:
            return GpuScan(gpus=(), warnings=tuple(warnings), nvml_available=False, device_count=0)
        try:
            count = as_int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            warnings.append(
                f"NVML cannot count the GPUs ({describe_error(nvml, exc)}): "
                "this inventory is CPU-only"
            )
            return GpuScan(gpus=(), warnings=tuple(warnings), nvml_available=False, device_count=0)

        if count > MAX_DEVICE_INDEX:
            warnings.append(f"NVML counts {count} GPUs: only the first {MAX_DEVICE_INDEX} are read")
            count = MAX_DEVICE_INDEX
        system = self._system_fields(nvml, warnings)
        gpus: list[GpuInfo] = []
        skipped: list[int] = []
        lost: list[int] = []
        seen: set[str] = set()
        for index in range(count):
            gpu, is_lost = self._device(nvml, index, system, warnings)
            if is_lost:
                lost.append(index)
            if gpu is None:
                skipped.append(index)
            elif gpu.uuid in seen:
                warnings.append(f"GPU {index}: skipped: UUID {gpu.uuid} was already reported")
                skipped.append(index)
            elif len(gpus) >= MAX_GPUS:
                warnings.append(f"GPU {index}: skipped: a worker reports at most {MAX_GPUS} GPUs")
                skipped.append(index)
            else:
                seen.add(gpu.uuid)
                gpus.append(gpu)
        return GpuScan(
            gpus=tuple(gpus),
            warnings=tuple(warnings),
            nvml_available=True,
            device_count=count,
            skipped=tuple(skipped),
            lost=tuple(lost),
        )

    # ----------------------------------------------------------------------- internals

    @staticmethod
    def _system_fields(nvml: ModuleType, warnings: list[str]) -> dict[str, object]:
        fields: dict[str, object] = {}
        try:
            fields["driver_version"] = as_text(nvml.nvmlSystemGetDriverVersion()) or None
        except Exception as exc:
            warnings.append(f"driver version unavailable: {describe_error(nvml, exc)}")
        try:
            version = as_int(nvml.nvmlSystemGetCudaDriverVersion())
            fields["cuda_version"] = cuda_version_text(version)
        except Exception as exc:
            warnings.append(f"CUDA driver version unavailable: {describe_error(nvml, exc)}")
        return fields

    @staticmethod
    def _device(
        nvml: ModuleType, index: int, system: dict[str, object], warnings: list[str]
    ) -> tuple[GpuInfo | None, bool]:
        """One device as GpuInfo (``None`` when it must be skipped), and whether it is lost."""
        lost_codes = _lost_codes(nvml)
        is_lost = False

        def failed(what: str, exc: Exception) -> None:
            nonlocal is_lost
            if getattr(exc, "value", None) in lost_codes:
                is_lost = True
            warnings.append(f"GPU {index}: {what} unavailable: {describe_error(nvml, exc)}")

        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            failed("handle", exc)
            warnings.append(f"GPU {index}: skipped: NVML gives no handle for it")
            return None, is_lost
        try:
            uuid = as_text(nvml.nvmlDeviceGetUUID(handle))
        except Exception as exc:
            failed("UUID", exc)
            warnings.append(f"GPU {index}: skipped: without its UUID it cannot be identified")
            return None, is_lost

        data: dict[str, object] = {"index": index, "uuid": uuid, **GPU_FALLBACKS, **system}
        for what, read in DEVICE_READERS:
            try:
                data.update(read(nvml, handle))
            except Exception as exc:
                failed(what, exc)
        gpu = validate_leniently(
            GpuInfo, data, fallbacks=GPU_FALLBACKS, label=f"GPU {index}", warnings=warnings
        )
        return gpu, is_lost


def scan_gpus(nvml: ModuleType | None) -> GpuScan:
    """One-off scan: ``nvmlInit``, read every device, ``nvmlShutdown``. Never raises."""
    session = NvmlSession(nvml)
    scan = session.scan()
    closing = session.close()
    return replace(scan, warnings=(*scan.warnings, *closing)) if closing else scan


__all__ = [
    "DEVICE_READERS",
    "GPU_FALLBACKS",
    "LOST_ERRORS",
    "MAX_DEVICE_INDEX",
    "MIB",
    "GpuScan",
    "NvmlSession",
    "as_int",
    "as_text",
    "cuda_version_text",
    "describe_error",
    "error_name",
    "load_nvml",
    "scan_gpus",
    "validate_leniently",
]
