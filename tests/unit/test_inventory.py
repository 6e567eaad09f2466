"""The worker's hardware inventory: NVML through a faithful fake, the host through psutil,
rendering, and one run against the real pynvml of this (GPU-less) machine."""

from __future__ import annotations

import inspect
import io
import json
import os
import platform
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pynvml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from byteleap.protocol.inventory import GpuInfo, HostInfo, Inventory
from tests.fake_nvml import (
    API_FUNCTIONS,
    CONSTANTS,
    DEVICE_FUNCTIONS,
    ERROR_CLASSES,
    ERROR_CODES,
    MIB,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_ERROR_UNKNOWN,
    FakeGpu,
    FakeNvml,
    h100,
)
from workers.inventory import (
    NvmlSession,
    collect_inventory,
    collect_inventory_report,
    default_backends,
    inventory_command,
    render_table,
    scan_gpus,
    to_json,
)
from workers.inventory.gpus import as_text, cuda_version_text, describe_error
from workers.inventory.host import PSEUDO_FILESYSTEMS, collect_host, cpu_model

HOST = HostInfo(
    hostname="gpu-node-1", cpu_count_logical=2, memory_total_bytes=2**30, memory_available_bytes=1
)


def expected_h100(index: int, gpu: FakeGpu) -> GpuInfo:
    """What the worker must report for a fake H100 that answers every call."""
    return GpuInfo(
        index=index,
        name="NVIDIA H100 80GB HBM3",
        uuid=gpu.uuid,
        serial=gpu.serial,
        pci_bus_id=gpu.pci_bus_id,
        memory_total_mib=81559,
        memory_used_mib=4,
        utilization_pct=0.0,
        temperature_c=float(gpu.temperature),
        power_draw_w=gpu.power_usage / 1000,
        power_limit_w=700.0,
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        compute_capability="9.0",
        driver_version="550.54.15",
        cuda_version="12.4",
    )


# --------------------------------------------------------------------------- the fake itself


def test_fake_constants_match_the_installed_pynvml() -> None:
    for name, value in {**ERROR_CODES, **CONSTANTS}.items():
        assert getattr(pynvml, name) == value, name
    assert ERROR_CODES["NVML_ERROR_NOT_SUPPORTED"] == pynvml.NVML_ERROR_NOT_SUPPORTED == 3
    assert ERROR_CODES["NVML_ERROR_NO_PERMISSION"] == pynvml.NVML_ERROR_NO_PERMISSION == 4
    assert ERROR_CODES["NVML_ERROR_DRIVER_NOT_LOADED"] == pynvml.NVML_ERROR_DRIVER_NOT_LOADED == 9
    assert ERROR_CODES["NVML_ERROR_LIBRARY_NOT_FOUND"] == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND == 12
    assert ERROR_CODES["NVML_ERROR_GPU_IS_LOST"] == pynvml.NVML_ERROR_GPU_IS_LOST == 15
    assert ERROR_CODES["NVML_ERROR_UNKNOWN"] == pynvml.NVML_ERROR_UNKNOWN == 999


@pytest.mark.parametrize("name", API_FUNCTIONS)
def test_fake_functions_have_the_real_signatures(name: str) -> None:
    def shape(fn: Any) -> list[tuple[str, Any]]:
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert shape(getattr(FakeNvml(), name)) == shape(getattr(pynvml, name))


@pytest.mark.parametrize("code", sorted(ERROR_CODES.values()))
def test_fake_errors_are_built_like_the_real_ones(code: int) -> None:
    fake = FakeNvml()
    real_error = pynvml.NVMLError(code)
    fake_error = fake.NVMLError(code)
    assert type(fake_error).__name__ == type(real_error).__name__
    assert type(fake_error) is not fake.NVMLError  # a per-code subclass, as in pynvml
    assert isinstance(fake_error, fake.NVMLError)
    assert fake_error.value == real_error.value == code
    # the subclass alone, without arguments, carries its code
    assert getattr(fake, type(fake_error).__name__)().value == code
    assert type(fake_error).__name__ in ERROR_CLASSES
    with pytest.raises(fake.NVMLError) as caught:
        raise fake_error
    assert caught.value.value == code


def test_fake_refuses_calls_before_init() -> None:
    fake = FakeNvml()
    with pytest.raises(fake.NVMLError) as caught:
        fake.nvmlDeviceGetCount()
    assert caught.value.value == pynvml.NVML_ERROR_UNINITIALIZED


# --------------------------------------------------------------------------- GPUs: parsing


def test_every_field_of_every_gpu_is_parsed() -> None:
    fake = FakeNvml([h100(i) for i in range(8)])
    report = collect_inventory_report(nvml=fake, backends=["cupy", "numpy"])
    assert report.warnings == ()
    assert report.healthy
    assert list(report.inventory.gpus) == [expected_h100(i, g) for i, g in enumerate(fake.gpus)]
    assert report.inventory.backends == ["cupy", "numpy"]
    assert fake.init_calls == 1 and fake.shutdown_calls == 1 and fake.refcount == 0


def test_uuid_format_is_nvmls() -> None:
    uuids = [gpu.uuid for gpu in scan_gpus(FakeNvml()).gpus]
    assert len(set(uuids)) == 8
    for uuid in uuids:
        prefix, *groups = uuid.split("-")
        assert prefix == "GPU"
        assert [len(group) for group in groups] == [8, 4, 4, 4, 12]
        int("".join(groups), 16)


def test_bytes_and_str_returns_give_the_same_inventory() -> None:
    as_str = scan_gpus(FakeNvml([h100(0), h100(1)], strings_as_bytes=False))
    as_bytes = scan_gpus(FakeNvml([h100(0), h100(1)], strings_as_bytes=True))
    assert as_bytes.warnings == as_str.warnings == ()
    assert as_bytes.gpus == as_str.gpus
    for gpu in as_bytes.gpus:
        for value in (gpu.name, gpu.uuid, gpu.serial, gpu.pci_bus_id, gpu.driver_version):
            assert type(value) is str


def test_as_text_normalises() -> None:
    assert as_text(b"NVIDIA H100 80GB HBM3\x00\x00") == "NVIDIA H100 80GB HBM3"
    assert as_text(bytearray(b"GPU-1")) == "GPU-1"
    assert as_text(" 550.54.15 ") == "550.54.15"
    assert as_text(b"\xff") == "\ufffd"


@pytest.mark.parametrize(
    ("version", "text"), [(12040, "12.4"), (12020, "12.2"), (11080, "11.8"), (13000, "13.0")]
)
def test_cuda_driver_version(version: int, text: str) -> None:
    assert cuda_version_text(version) == text


def test_describe_error_uses_the_modules_names() -> None:
    text = describe_error(pynvml, pynvml.NVMLError(3))
    assert text == "NVML_ERROR_NOT_SUPPORTED (3): Not Supported"
    fake = FakeNvml()
    assert describe_error(fake, fake.NVMLError(15)) == "NVML_ERROR_GPU_IS_LOST (15): GPU is lost"
    assert describe_error(fake, RuntimeError("boom")) == "RuntimeError: boom"


# --------------------------------------------------------------------------- GPUs: failures

#: NVML function -> the fields it fills, and what they read when it fails
FIELD_FAILURES: dict[str, dict[str, object]] = {
    "nvmlDeviceGetName": {"name": "unknown"},
    "nvmlDeviceGetSerial": {"serial": None},
    "nvmlDeviceGetPciInfo": {"pci_bus_id": None},
    "nvmlDeviceGetMemoryInfo": {"memory_total_mib": 0, "memory_used_mib": None},
    "nvmlDeviceGetUtilizationRates": {"utilization_pct": None},
    "nvmlDeviceGetTemperature": {"temperature_c": None},
    "nvmlDeviceGetPowerUsage": {"power_draw_w": None},
    "nvmlDeviceGetEnforcedPowerLimit": {"power_limit_w": None},
    "nvmlDeviceGetClockInfo": {"sm_clock_mhz": None, "mem_clock_mhz": None},
    "nvmlDeviceGetCudaComputeCapability": {"compute_capability": None},
}


@pytest.mark.parametrize("function", sorted(FIELD_FAILURES))
@pytest.mark.parametrize("code", [NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION])
def test_one_field_failing_on_one_device_hides_nothing_else(function: str, code: int) -> None:
    gpus = [h100(i) for i in range(3)]
    gpus[1].failures[function] = code
    fake = FakeNvml(gpus)
    scan = scan_gpus(fake)

    assert [gpu.index for gpu in scan.gpus] == [0, 1, 2]
    assert scan.gpus[0] == expected_h100(0, gpus[0])
    assert scan.gpus[2] == expected_h100(2, gpus[2])
    broken = expected_h100(1, gpus[1]).model_copy(update=FIELD_FAILURES[function])
    assert scan.gpus[1] == broken
    calls = 2 if function == "nvmlDeviceGetClockInfo" else 1  # SM and memory clock
    assert len(scan.warnings) == calls
    for warning in scan.warnings:
        assert warning.startswith("GPU 1: ") and f"({code})" in warning
    assert scan.healthy  # an unsupported or forbidden field is no reason to call a GPU unhealthy


def test_field_raising_something_else_than_nvmlerror_is_contained() -> None:
    gpus = [h100(0), h100(1)]
    gpus[0].failures["nvmlDeviceGetPowerUsage"] = RuntimeError("driver hiccup")
    gpus[1].failures["nvmlDeviceGetTemperature"] = pynvml.NVMLLibraryMismatchError("old lib")
    scan = scan_gpus(FakeNvml(gpus))
    assert scan.gpus[0].power_draw_w is None and scan.gpus[0].temperature_c == 31.0
    assert scan.gpus[1].temperature_c is None and scan.gpus[1].power_draw_w is not None
    assert any("RuntimeError: driver hiccup" in w for w in scan.warnings)
    assert any("NVMLLibraryMismatchError" in w for w in scan.warnings)


def test_lost_device_is_skipped_and_the_others_reported() -> None:
    gpus = [h100(i) for i in range(4)]
    gpus[2].lose()
    report = collect_inventory_report(nvml=FakeNvml(gpus), backends=["numpy"])
    assert [gpu.index for gpu in report.inventory.gpus] == [0, 1, 3]
    assert report.inventory.gpu(gpus[2].uuid) is None
    assert report.inventory.gpus[2] == expected_h100(3, gpus[3])
    assert report.gpu_scan.skipped == (2,) and report.gpu_scan.lost == (2,)
    assert not report.healthy
    assert any(w.startswith("GPU 2: ") and "GPU_IS_LOST" in w for w in report.warnings)


def test_device_lost_after_its_handle_is_skipped_for_want_of_a_uuid() -> None:
    gpus = [h100(0), h100(1)]
    gpus[0].lose().failures.pop("nvmlDeviceGetHandleByIndex")
    scan = scan_gpus(FakeNvml(gpus))
    assert [gpu.uuid for gpu in scan.gpus] == [gpus[1].uuid]
    assert scan.lost == (0,) and not scan.healthy
    assert any("UUID" in w and w.startswith("GPU 0: ") for w in scan.warnings)


def test_gpu_lost_on_one_field_is_reported_but_unhealthy() -> None:
    gpus = [h100(0), h100(1)]
    gpus[1].failures["nvmlDeviceGetPowerUsage"] = NVML_ERROR_GPU_IS_LOST
    scan = scan_gpus(FakeNvml(gpus))
    assert len(scan.gpus) == 2
    assert scan.gpus[1].power_draw_w is None and scan.gpus[1].memory_total_mib == 81559
    assert scan.lost == (1,) and not scan.healthy


def test_device_without_a_handle_is_skipped_but_not_lost() -> None:
    gpus = [h100(0), h100(1)]
    gpus[0].failures["nvmlDeviceGetHandleByIndex"] = NVML_ERROR_NO_PERMISSION
    scan = scan_gpus(FakeNvml(gpus))
    assert [gpu.index for gpu in scan.gpus] == [1]
    assert scan.skipped == (0,) and scan.lost == ()
    assert not scan.healthy


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (NVML_ERROR_LIBRARY_NOT_FOUND, "NVML_ERROR_LIBRARY_NOT_FOUND"),
        (NVML_ERROR_DRIVER_NOT_LOADED, "NVML_ERROR_DRIVER_NOT_LOADED"),
        (NVML_ERROR_UNKNOWN, "NVML_ERROR_UNKNOWN"),
    ],
)
def test_nvml_init_failure_gives_a_cpu_only_inventory(code: int, name: str) -> None:
    fake = FakeNvml(system_failures={"nvmlInit": code})
    inventory, warnings = collect_inventory(nvml=fake, backends=["numpy"])
    assert inventory.gpus == []
    assert inventory.host.cpu_count_logical >= 1
    assert len([w for w in warnings if "NVML" in w]) == 1
    assert f"{name} ({code})" in warnings[0] and "CPU-only" in warnings[0]
    assert fake.shutdown_calls == 0  # nothing to shut down


def test_no_nvml_module_gives_a_cpu_only_inventory() -> None:
    report = collect_inventory_report(nvml=None, backends=None)
    assert report.inventory.gpus == []
    assert report.inventory.backends == ["numpy"]
    assert "nvidia-ml-py" in report.warnings[0]
    assert not report.healthy


def test_device_count_failure_still_shuts_nvml_down() -> None:
    fake = FakeNvml(system_failures={"nvmlDeviceGetCount": NVML_ERROR_UNKNOWN})
    scan = scan_gpus(fake)
    assert scan.gpus == () and not scan.nvml_available
    assert fake.init_calls == fake.shutdown_calls == 1 and fake.refcount == 0


def test_system_versions_fail_once_not_per_device() -> None:
    fake = FakeNvml(
        [h100(0), h100(1)],
        system_failures={
            "nvmlSystemGetDriverVersion": NVML_ERROR_NO_PERMISSION,
            "nvmlSystemGetCudaDriverVersion": NVML_ERROR_NOT_SUPPORTED,
        },
    )
    scan = scan_gpus(fake)
    assert [(g.driver_version, g.cuda_version) for g in scan.gpus] == [(None, None)] * 2
    assert all(g.memory_total_mib == 81559 for g in scan.gpus)
    assert len(scan.warnings) == 2 and scan.healthy


def test_shutdown_failure_is_a_warning() -> None:
    fake = FakeNvml([h100(0)], system_failures={"nvmlShutdown": NVML_ERROR_UNKNOWN})
    scan = scan_gpus(fake)
    assert len(scan.gpus) == 1
    assert scan.warnings == ("nvmlShutdown failed: NVML_ERROR_UNKNOWN (999): Unknown Error",)


def test_out_of_range_and_malformed_values_are_dropped() -> None:
    gpus = [
        h100(0, temperature=5000, name="", power_limit=10**12),
        h100(1, uuid="GPU with spaces"),
        h100(2, serial="s\u00e9rie"),
    ]
    scan = scan_gpus(FakeNvml(gpus))
    assert [gpu.index for gpu in scan.gpus] == [0, 2]
    first = scan.gpus[0]
    assert (first.temperature_c, first.name, first.power_limit_w) == (None, "unknown", None)
    assert first.memory_total_mib == 81559
    assert scan.gpus[1].serial is None  # the model allows printable ASCII only
    assert any(w.startswith("GPU 1: skipped") for w in scan.warnings)
    assert any("temperature_c 5000.0" in w for w in scan.warnings)


def test_duplicate_uuids_are_reported_once() -> None:
    twin = h100(0)
    gpus = [twin, h100(1, uuid=twin.uuid)]
    inventory, warnings = collect_inventory(nvml=FakeNvml(gpus), backends=["numpy"])
    assert [gpu.index for gpu in inventory.gpus] == [0]
    assert any("already reported" in w for w in warnings)


def test_session_initialises_once_and_retries_a_failed_init() -> None:
    fake = FakeNvml([h100(0)], system_failures={"nvmlInit": NVML_ERROR_DRIVER_NOT_LOADED})
    with NvmlSession(fake) as session:
        assert session.scan().gpus == ()
        del fake.system_failures["nvmlInit"]  # the driver loaded
        first, second = session.scan(), session.scan()
        assert len(first.gpus) == len(second.gpus) == 1
        assert first.healthy and second.warnings == ()
        report = collect_inventory_report(nvml=session, backends=["numpy"])
        assert len(report.inventory.gpus) == 1 and report.healthy
        assert fake.init_calls == 2 and fake.shutdown_calls == 0
    assert fake.shutdown_calls == 1 and fake.refcount == 0


# --------------------------------------------------------------------------- GPUs: properties

failure_values = st.sampled_from(
    [
        NVML_ERROR_NOT_SUPPORTED,
        NVML_ERROR_NO_PERMISSION,
        NVML_ERROR_GPU_IS_LOST,
        NVML_ERROR_UNKNOWN,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        pynvml.NVML_ERROR_TIMEOUT,
    ]
)
device_failures = st.dictionaries(st.sampled_from(DEVICE_FUNCTIONS), failure_values, max_size=5)
system_failures = st.dictionaries(
    st.sampled_from(["nvmlInit", "nvmlDeviceGetCount", "nvmlSystemGetDriverVersion"]),
    failure_values,
    max_size=2,
)


@settings(max_examples=150, deadline=None)
@given(
    patterns=st.lists(device_failures, max_size=8),
    system=system_failures,
    as_bytes=st.booleans(),
)
def test_random_failures_never_raise_and_report_every_reachable_device(
    patterns: list[dict[str, int]], system: dict[str, int], as_bytes: bool
) -> None:
    gpus = [h100(i, failures=dict(failures)) for i, failures in enumerate(patterns)]
    fake = FakeNvml(gpus, system_failures=system, strings_as_bytes=as_bytes)
    scan = scan_gpus(fake)

    nvml_works = not ({"nvmlInit", "nvmlDeviceGetCount"} & system.keys())
    identified = [
        i
        for i, failures in enumerate(patterns)
        if not {"nvmlDeviceGetHandleByIndex", "nvmlDeviceGetUUID"} & failures.keys()
    ]
    lost = [i for i, failures in enumerate(patterns) if NVML_ERROR_GPU_IS_LOST in failures.values()]
    if nvml_works:
        assert [gpu.index for gpu in scan.gpus] == identified
        assert [gpu.uuid for gpu in scan.gpus] == [gpus[i].uuid for i in identified]
        assert scan.device_count == len(gpus)
        # every failed call left a warning naming its device
        for i, failures in enumerate(patterns):
            if i in identified:
                assert len([w for w in scan.warnings if w.startswith(f"GPU {i}: ")]) >= len(
                    failures
                )
        assert scan.healthy == (len(identified) == len(gpus) and not lost)
    else:
        assert scan.gpus == () and not scan.healthy
    if "nvmlInit" not in system:
        assert fake.refcount == 0 and fake.shutdown_calls == 1
    # whatever happened, the result is a valid inventory
    Inventory(host=HOST, gpus=list(scan.gpus), backends=["numpy"])


# --------------------------------------------------------------------------- the real pynvml


def test_real_pynvml_on_this_machine_does_not_raise() -> None:
    report = collect_inventory_report(nvml=pynvml, backends=["numpy"])
    if report.gpu_scan.nvml_available:  # a host with a driver: real GPUs, real UUIDs
        assert all(gpu.uuid.startswith(("GPU-", "MIG-")) for gpu in report.inventory.gpus)
        assert len(report.inventory.gpus) + len(report.gpu_scan.skipped) == (
            report.gpu_scan.device_count
        )
    else:  # this GPU-less machine: a CPU-only inventory and one clear warning
        assert report.inventory.gpus == []
        assert "NVML could not be initialised" in report.warnings[0]
        assert "CPU-only" in report.warnings[0]
        assert not report.healthy
    assert report.inventory.host.cpu_count_logical >= 1


# --------------------------------------------------------------------------- host


def test_host_fields_are_sane_on_this_machine() -> None:
    host, warnings = collect_host()
    assert warnings == []
    assert host.cpu_count_logical >= 1
    assert host.cpu_count_logical == (psutil.cpu_count() or os.cpu_count())
    assert host.cpu_count_physical is None or 1 <= host.cpu_count_physical <= host.cpu_count_logical
    assert host.memory_total_bytes > 0
    assert 0 < host.memory_available_bytes <= host.memory_total_bytes
    assert host.hostname == socket.gethostname()
    assert host.kernel == platform.release()
    assert host.os
    assert len(host.load_avg) == 3
    assert host.uptime_s >= 0.0
    assert "lo" not in host.network_interfaces
    real_root = any(
        p.mountpoint == "/" and p.fstype not in PSEUDO_FILESYSTEMS
        for p in psutil.disk_partitions(all=True)
    )
    assert any(disk.mount == "/" for disk in host.disks) == real_root
    for disk in host.disks:
        assert disk.mount.startswith("/") and 0 <= disk.free_bytes <= disk.total_bytes


def test_cpu_model_reads_proc_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    )
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_model(tmp_path / "missing") == platform.processor()
    (tmp_path / "arm").write_text("processor\t: 0\nBogoMIPS\t: 50.00\n")
    assert cpu_model(tmp_path / "arm") == platform.processor()


def _fake_psutil(**overrides: Any) -> SimpleNamespace:
    functions = {
        name: getattr(psutil, name)
        for name in (
            "cpu_count",
            "getloadavg",
            "virtual_memory",
            "disk_partitions",
            "disk_usage",
            "net_if_addrs",
            "boot_time",
        )
    }
    functions.update(overrides)
    return SimpleNamespace(**functions)


def _raise(exc: BaseException) -> Any:
    def fail(*args: object, **kwargs: object) -> Any:
        raise exc

    return fail


def test_host_failures_degrade_field_by_field() -> None:
    ps = _fake_psutil(
        virtual_memory=_raise(PermissionError("no /proc/meminfo")),
        getloadavg=_raise(OSError("no loadavg")),
        disk_partitions=_raise(OSError("no mounts")),
        cpu_count=lambda logical=True: None,
        boot_time=lambda: 4e9,  # a clock before boot
    )
    host, warnings = collect_host(ps=ps)
    assert (host.memory_total_bytes, host.memory_available_bytes) == (0, 0)
    assert host.load_avg == [] and host.disks == []
    assert host.cpu_count_logical == (os.cpu_count() or 1)
    assert host.cpu_count_physical is None
    assert host.uptime_s == 0.0
    assert host.network_interfaces  # untouched
    assert len(warnings) == 3
    assert any("memory unavailable: PermissionError" in w for w in warnings)


def test_disks_skip_pseudo_file_systems_files_and_unreadable_mounts(tmp_path: Path) -> None:
    data, denied, single_file = tmp_path / "data", tmp_path / "denied", tmp_path / "hosts"
    data.mkdir()
    denied.mkdir()
    single_file.write_text("127.0.0.1 localhost\n")
    part = SimpleNamespace
    partitions = [
        part(device="/dev/nvme0n1p2", mountpoint=str(data), fstype="ext4"),
        part(device="/dev/nvme0n1p2", mountpoint=str(data), fstype="ext4"),  # bind mount twice
        part(device="/dev/nvme1n1", mountpoint=str(denied), fstype="xfs"),
        part(device="/dev/nvme0n1p2", mountpoint=str(single_file), fstype="ext4"),
        part(device="tmpfs", mountpoint=str(tmp_path), fstype="tmpfs"),
        part(device="proc", mountpoint="/proc", fstype="proc"),
        part(device="overlay", mountpoint=str(tmp_path), fstype="overlay"),
        part(device="/dev/sda1", mountpoint="/sys/firmware/efi", fstype="vfat"),
    ]

    def disk_usage(path: str) -> Any:
        if path == str(denied):
            raise PermissionError(path)
        return SimpleNamespace(total=4 * 2**40, used=2**40, free=3 * 2**40, percent=25.0)

    ps = _fake_psutil(disk_partitions=lambda all=False: partitions, disk_usage=disk_usage)
    host, warnings = collect_host(ps=ps)
    assert [(d.mount, d.total_bytes, d.free_bytes) for d in host.disks] == [
        (str(data), 4 * 2**40, 3 * 2**40)
    ]
    assert warnings == []
    assert {"tmpfs", "proc", "sysfs", "squashfs"} <= PSEUDO_FILESYSTEMS


def test_network_interfaces_put_physical_first_and_drop_loopback() -> None:
    names = ["veth12ab", "lo", "docker0", "eth0", "ens1f0", "bad name", "ib0"]
    ps = _fake_psutil(net_if_addrs=lambda: {name: [] for name in names})
    host, _ = collect_host(ps=ps)
    assert host.network_interfaces == ["ens1f0", "eth0", "ib0", "docker0", "veth12ab"]


# --------------------------------------------------------------------------- rendering


def _console(width: int = 250) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)


def test_table_shows_every_gpu_and_the_host() -> None:
    fake = FakeNvml([h100(0), h100(1, name="NVIDIA H100 PCIe")])
    inventory, _ = collect_inventory(nvml=fake, backends=["cupy", "numpy"])
    console = _console()
    render_table(inventory, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "NVIDIA H100 80GB HBM3" in text and "NVIDIA H100 PCIe" in text
    for gpu in inventory.gpus:
        assert gpu.uuid in text
    assert "81,559 MiB" in text and "driver 550.54.15" in text and "CUDA 12.4" in text
    assert inventory.host.hostname in text and "cupy, numpy" in text


def test_table_of_a_cpu_only_inventory() -> None:
    console = _console()
    render_table(Inventory(host=HOST, gpus=[], backends=["numpy"]), console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "CPU-only" in text and "gpu-node-1" in text


def test_table_escapes_markup_in_reported_names() -> None:
    gpu = h100(0, name="[bold]NVIDIA[/bold] H100")
    inventory, _ = collect_inventory(nvml=FakeNvml([gpu]), backends=["numpy"])
    console = _console()
    render_table(inventory, console)
    assert "[bold]NVIDIA[/bold] H100" in console.file.getvalue()  # type: ignore[attr-defined]


def test_json_round_trips_into_the_protocol_model() -> None:
    gpus = [h100(0), h100(1)]
    gpus[1].failures["nvmlDeviceGetSerial"] = NVML_ERROR_NOT_SUPPORTED
    inventory, _ = collect_inventory(nvml=FakeNvml(gpus), backends=["cupy", "numpy"])
    text = to_json(inventory)
    assert Inventory.model_validate_json(text) == inventory
    assert json.loads(text)["gpus"][1]["serial"] is None


def test_inventory_command_prints_json_and_warnings_apart() -> None:
    gpus = [h100(0), h100(1)]
    gpus[0].failures["nvmlDeviceGetTemperature"] = NVML_ERROR_NOT_SUPPORTED
    out, err = _console(), _console()
    code = inventory_command(True, nvml=FakeNvml(gpus), console=out, err_console=err)
    assert code == 0
    inventory = Inventory.model_validate_json(out.file.getvalue())  # type: ignore[attr-defined]
    assert [gpu.uuid for gpu in inventory.gpus] == [g.uuid for g in gpus]
    assert "GPU 0: temperature unavailable" in err.file.getvalue()  # type: ignore[attr-defined]


def test_inventory_command_table_with_the_real_pynvml() -> None:
    out, err = _console(), _console()
    assert inventory_command(False, console=out, err_console=err) == 0
    assert "Host" in out.file.getvalue()  # type: ignore[attr-defined]


def test_inventory_command_reports_a_broken_caller_as_exit_code_1() -> None:
    out, err = _console(), _console()
    code = inventory_command(
        True, nvml=FakeNvml([]), backends=["Not A Backend"], console=out, err_console=err
    )
    assert code == 1
    assert out.file.getvalue() == ""  # type: ignore[attr-defined]
    assert "collecting the inventory failed" in err.file.getvalue()  # type: ignore[attr-defined]


def test_default_backends() -> None:
    assert default_backends([]) == ["numpy"]
    with_gpu = default_backends([expected_h100(0, h100(0))])
    assert with_gpu[-1] == "numpy"
    assert ("cupy" in with_gpu) == (__import__("importlib").util.find_spec("cupy") is not None)


def test_memory_is_reported_in_whole_mib() -> None:
    gpu = h100(0, memory_total=81559 * MIB + MIB - 1, memory_used=3 * MIB + 17)
    (info,) = scan_gpus(FakeNvml([gpu])).gpus
    assert (info.memory_total_mib, info.memory_used_mib) == (81559, 3)
