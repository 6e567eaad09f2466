"""A stand-in for the ``pynvml`` module (``nvidia-ml-py``), for tests on machines without a GPU.

:class:`FakeNvml` is a module object with the part of the real API the worker uses: the same
function names and parameters, the same ``NVML_*`` constants, and errors raised the way the real
module raises them. There, ``NVMLError(code)`` returns an instance of a per-code subclass
(``NVMLError_NotSupported``, ``NVMLError_GpuIsLost``, ...) carrying ``.value``, so callers can catch
either the base class or one code. ``tests/unit/test_inventory.py`` checks the constants, class
names and signatures against the installed ``pynvml``.

Devices are :class:`FakeGpu` records with realistic H100 SXM values (:func:`h100`). Any NVML call
on any device can be made to fail with an error code (or any exception) through
``FakeGpu.failures``, keyed by the NVML function name; system-wide calls fail through
``FakeNvml(system_failures=...)``. ``strings_as_bytes=True`` makes string results ``bytes``, as
releases of ``pynvml`` before 11.5 returned them.
"""

from __future__ import annotations

import types
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

MIB = 2**20

#: the error codes of NVML (``nvml.h``); the values are those of the installed pynvml
ERROR_CODES: dict[str, int] = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_INVALID_ARGUMENT": 2,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_ALREADY_INITIALIZED": 5,
    "NVML_ERROR_NOT_FOUND": 6,
    "NVML_ERROR_INSUFFICIENT_SIZE": 7,
    "NVML_ERROR_INSUFFICIENT_POWER": 8,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_TIMEOUT": 10,
    "NVML_ERROR_IRQ_ISSUE": 11,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_CORRUPTED_INFOROM": 14,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_RESET_REQUIRED": 16,
    "NVML_ERROR_OPERATING_SYSTEM": 17,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
    "NVML_ERROR_IN_USE": 19,
    "NVML_ERROR_MEMORY": 20,
    "NVML_ERROR_NO_DATA": 21,
    "NVML_ERROR_GPU_NOT_FOUND": 28,
    "NVML_ERROR_UNKNOWN": 999,
}
#: other constants the worker passes to NVML
CONSTANTS: dict[str, int] = {
    "NVML_SUCCESS": 0,
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_CLOCK_GRAPHICS": 0,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_CLOCK_VIDEO": 3,
}

NVML_ERROR_UNINITIALIZED = ERROR_CODES["NVML_ERROR_UNINITIALIZED"]
NVML_ERROR_INVALID_ARGUMENT = ERROR_CODES["NVML_ERROR_INVALID_ARGUMENT"]
NVML_ERROR_NOT_SUPPORTED = ERROR_CODES["NVML_ERROR_NOT_SUPPORTED"]
NVML_ERROR_NO_PERMISSION = ERROR_CODES["NVML_ERROR_NO_PERMISSION"]
NVML_ERROR_DRIVER_NOT_LOADED = ERROR_CODES["NVML_ERROR_DRIVER_NOT_LOADED"]
NVML_ERROR_LIBRARY_NOT_FOUND = ERROR_CODES["NVML_ERROR_LIBRARY_NOT_FOUND"]
NVML_ERROR_GPU_IS_LOST = ERROR_CODES["NVML_ERROR_GPU_IS_LOST"]
NVML_ERROR_UNKNOWN = ERROR_CODES["NVML_ERROR_UNKNOWN"]

_DESCRIPTIONS: dict[int, str] = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Base of every NVML error; ``NVMLError(code)`` builds the subclass registered for ``code``."""

    _subclass_for: ClassVar[dict[int, type[NVMLError]]] = {}
    value: int

    def __new__(cls, value: int, *args: object) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._subclass_for.get(value, NVMLError)
        error = Exception.__new__(cls)
        error.value = value
        return error

    def __str__(self) -> str:
        return _DESCRIPTIONS.get(self.value, f"NVML Error with code {self.value}")


def error_class_name(constant: str) -> str:
    """``NVML_ERROR_GPU_IS_LOST`` -> ``NVMLError_GpuIsLost``, the real module's naming."""
    words = constant.removeprefix("NVML_ERROR_").split("_")
    return "NVMLError_" + "".join(word.capitalize() for word in words)


def _make_error_class(constant: str, value: int) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: object) -> NVMLError:
        return NVMLError.__new__(cls, value)

    subclass = type(error_class_name(constant), (NVMLError,), {"__new__": new})
    NVMLError._subclass_for[value] = subclass
    return subclass


#: ``NVMLError_*`` subclasses by class name
ERROR_CLASSES: dict[str, type[NVMLError]] = {
    error_class_name(name): _make_error_class(name, value) for name, value in ERROR_CODES.items()
}

#: every per-device NVML function the fake implements, the keys of ``FakeGpu.failures``
DEVICE_FUNCTIONS = (
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetSerial",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetCudaComputeCapability",
)
#: system-wide functions, the keys of ``FakeNvml(system_failures=...)``
SYSTEM_FUNCTIONS = (
    "nvmlInit",
    "nvmlDeviceGetCount",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlShutdown",
)

#: PCI bus ids of the eight GPUs of a typical HGX H100 board
H100_BUS_IDS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")

Failure = int | BaseException


def fake_uuid(index: int, salt: str = "") -> str:
    """A stable NVML-style UUID: ``GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    return "GPU-" + str(uuidlib.uuid5(uuidlib.NAMESPACE_OID, f"fake-nvml/{salt}/{index}"))


@dataclass
class FakeGpu:
    """One device and what NVML says about it."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-5e0b2f1c-7a4d-4c3e-9b8a-0d1e2f3a4b5c"
    serial: str = "1654922001234"
    pci_bus_id: str = "00000000:18:00.0"
    memory_total: int = 81559 * MIB  # bytes, as NVML reports it
    memory_used: int = 4 * MIB
    utilization_gpu: int = 0  # percent
    utilization_memory: int = 0
    temperature: int = 31  # °C
    power_usage: int = 71_243  # mW
    power_limit: int = 700_000  # mW
    sm_clock: int = 1980  # MHz
    mem_clock: int = 2619
    compute_capability: tuple[int, int] = (9, 0)
    #: NVML function name -> error code (or exception) that call raises for this device
    failures: dict[str, Failure] = field(default_factory=dict)

    def lose(self) -> FakeGpu:
        """Make every call about this device fail with GPU_IS_LOST, handle included."""
        self.failures.update(dict.fromkeys(DEVICE_FUNCTIONS, NVML_ERROR_GPU_IS_LOST))
        return self


def h100(index: int, **overrides: Any) -> FakeGpu:
    """GPU ``index`` of an HGX H100 80GB board."""
    values: dict[str, Any] = {
        "uuid": fake_uuid(index),
        "serial": f"{1654922001234 + index}",
        "pci_bus_id": f"00000000:{H100_BUS_IDS[index % len(H100_BUS_IDS)]}:00.0",
        "temperature": 31 + index % 5,
        "power_usage": 71_243 + 1_000 * index,
    }
    values.update(overrides)
    return FakeGpu(**values)


@dataclass
class FakeHandle:
    """What ``nvmlDeviceGetHandleByIndex`` returns (a ``c_nvmlDevice_t`` pointer in pynvml)."""

    index: int


@dataclass
class FakePciInfo:
    busId: str | bytes  # pynvml spells it so
    domain: int
    bus: int
    device: int


@dataclass
class FakeMemory:
    total: int
    free: int
    used: int


@dataclass
class FakeUtilization:
    gpu: int
    memory: int


class FakeNvml(types.ModuleType):
    """A ``pynvml`` look-alike holding ``gpus``."""

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        system_failures: Mapping[str, Failure] | None = None,
        strings_as_bytes: bool = False,
    ) -> None:
        super().__init__("pynvml", "fake pynvml for tests")
        self.gpus = list(gpus) if gpus is not None else [h100(i) for i in range(8)]
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.system_failures = dict(system_failures or {})
        self.strings_as_bytes = strings_as_bytes
        self.init_calls = 0
        self.shutdown_calls = 0
        self.refcount = 0
        # module attributes, like the real module's globals (``dir()`` lists them)
        self.NVMLError = NVMLError
        for name, value in {**ERROR_CODES, **CONSTANTS}.items():
            setattr(self, name, value)
        for name, cls in ERROR_CLASSES.items():
            setattr(self, name, cls)

    # ----------------------------------------------------------------------- plumbing

    def _fail(self, failure: Failure | None) -> None:
        if failure is None:
            return
        if isinstance(failure, BaseException):
            raise failure
        raise NVMLError(failure)

    def _system(self, function: str) -> None:
        if function != "nvmlInit" and self.refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        self._fail(self.system_failures.get(function))

    def _gpu(self, handle: FakeHandle, function: str) -> FakeGpu:
        self._system(function)
        if not isinstance(handle, FakeHandle) or not 0 <= handle.index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.index]
        self._fail(gpu.failures.get(function))
        return gpu

    def _text(self, value: str) -> str | bytes:
        return value.encode() if self.strings_as_bytes else value

    # ----------------------------------------------------------------------- system

    def nvmlInit(self) -> None:
        self.init_calls += 1
        self._system("nvmlInit")
        self.refcount += 1

    def nvmlShutdown(self) -> None:
        self._system("nvmlShutdown")
        self.shutdown_calls += 1
        self.refcount -= 1

    def nvmlErrorString(self, result: int) -> str | bytes:
        return self._text(_DESCRIPTIONS.get(result, "Unknown Error"))

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self._system("nvmlSystemGetDriverVersion")
        return self._text(self.driver_version)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._system("nvmlSystemGetCudaDriverVersion")
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:
        self._system("nvmlDeviceGetCount")
        return len(self.gpus)

    # ----------------------------------------------------------------------- devices

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        handle = FakeHandle(index)
        self._gpu(handle, "nvmlDeviceGetHandleByIndex")
        return handle

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str | bytes:
        return self._text(self._gpu(handle, "nvmlDeviceGetName").name)

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str | bytes:
        return self._text(self._gpu(handle, "nvmlDeviceGetUUID").uuid)

    def nvmlDeviceGetSerial(self, handle: FakeHandle) -> str | bytes:
        return self._text(self._gpu(handle, "nvmlDeviceGetSerial").serial)

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> FakePciInfo:
        bus_id = self._gpu(handle, "nvmlDeviceGetPciInfo").pci_bus_id
        domain, bus, rest = bus_id.split(":")
        return FakePciInfo(
            busId=self._text(bus_id),
            domain=int(domain, 16),
            bus=int(bus, 16),
            device=int(rest.split(".")[0], 16),
        )

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> FakeMemory:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return FakeMemory(
            total=gpu.memory_total, free=gpu.memory_total - gpu.memory_used, used=gpu.memory_used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> FakeUtilization:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return FakeUtilization(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != CONSTANTS["NVML_TEMPERATURE_GPU"]:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_usage

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        clocks = {
            CONSTANTS["NVML_CLOCK_GRAPHICS"]: gpu.sm_clock,
            CONSTANTS["NVML_CLOCK_SM"]: gpu.sm_clock,
            CONSTANTS["NVML_CLOCK_MEM"]: gpu.mem_clock,
            CONSTANTS["NVML_CLOCK_VIDEO"]: 1755,
        }
        if type not in clocks:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return clocks[type]

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeHandle) -> tuple[int, int]:
        return self._gpu(handle, "nvmlDeviceGetCudaComputeCapability").compute_capability


#: every function of FakeNvml that mirrors one of pynvml
API_FUNCTIONS = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlErrorString",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetCount",
    *DEVICE_FUNCTIONS,
)

__all__ = [
    "API_FUNCTIONS",
    "CONSTANTS",
    "DEVICE_FUNCTIONS",
    "ERROR_CLASSES",
    "ERROR_CODES",
    "MIB",
    "SYSTEM_FUNCTIONS",
    "FakeGpu",
    "FakeNvml",
    "NVMLError",
    "fake_uuid",
    "h100",
]
