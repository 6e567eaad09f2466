"""The machine a worker runs on, read through ``psutil``, ``platform`` and ``/proc``.

Like the GPU scan, every field is read on its own: a failure leaves that field at its "unknown"
value (``None``, ``""``, an empty list) and adds a warning, and nothing here raises. ``psutil`` is
injectable so tests can make single calls fail.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil as _psutil
from pydantic import ValidationError

from byteleap.protocol.inventory import DiskInfo, HostInfo
from workers.inventory.gpus import validate_leniently

#: file systems that hold no user data: kernel interfaces, memory-backed, read-only images
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fusectl",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fuse.portal",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "ramfs",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)
#: mount points below these are kernel or runtime state, never disks worth reporting
PSEUDO_MOUNT_PREFIXES = ("/proc", "/sys", "/dev", "/run", "/snap", "/var/lib/docker")
#: interface names of virtual links (containers, bridges, tunnels), listed after the others
VIRTUAL_INTERFACE = re.compile(r"^(veth|docker|br-|virbr|cali|flannel|cni|tun|tap|vxlan|lxc)")
#: what HostInfo allows for an interface name
_IFNAME = re.compile(r"^[\x21-\x7e]{1,64}$")
_MAX_LIST = 64
_MAX_NAME = 256

_T = TypeVar("_T")

#: fields HostInfo requires, and what is reported when they cannot be read
HOST_FALLBACKS: dict[str, object] = {
    "hostname": "",
    "cpu_count_logical": 1,
    "memory_total_bytes": 0,
    "memory_available_bytes": 0,
}


def _name(value: object) -> str:
    """A string cut to the wire model's bound for names."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text.encode("utf-8", errors="replace").decode("utf-8")[:_MAX_NAME].strip()


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name: ``model name`` from ``/proc/cpuinfo``, else
    ``platform.processor()`` (which is often just the architecture), else ``""``."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name" and value.strip():
                return _name(value.strip())
    return _name(platform.processor())


def os_name() -> str:
    """``PRETTY_NAME`` of os-release (``Ubuntu 22.04.4 LTS``), else the system name."""
    with contextlib.suppress(OSError):
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME", "")
        if pretty:
            return _name(pretty)
    return _name(platform.system())


def _keep_disk(mountpoint: str, fstype: str) -> bool:
    if fstype in PSEUDO_FILESYSTEMS or not mountpoint.startswith("/"):
        return False
    # overlay is how a container sees its root; elsewhere it is one of docker's layers
    if fstype == "overlay" and mountpoint != "/":
        return False
    if any(mountpoint == p or mountpoint.startswith(p + "/") for p in PSEUDO_MOUNT_PREFIXES):
        return False
    # containers bind-mount single files (/etc/hosts, driver binaries) that look like partitions
    return os.path.isdir(mountpoint)


def disks(ps: Any, warnings: list[str]) -> list[DiskInfo]:
    """Mounted file systems that hold data, with their size; unreadable ones are left out."""
    result: list[DiskInfo] = []
    seen: set[str] = set()
    for part in ps.disk_partitions(all=True):
        mount = str(part.mountpoint)
        if mount in seen or not _keep_disk(mount, str(part.fstype)):
            continue
        seen.add(mount)
        try:
            usage = ps.disk_usage(mount)
            disk = DiskInfo(mount=mount, total_bytes=int(usage.total), free_bytes=int(usage.free))
        except (OSError, ValidationError, ValueError, TypeError):
            continue  # vanished, no permission, stale network mount, odd values: not reportable
        if len(result) >= _MAX_LIST:
            warnings.append(f"disks: only the first {_MAX_LIST} file systems are reported")
            break
        result.append(disk)
    return result


def network_interfaces(ps: Any, warnings: list[str]) -> list[str]:
    """Interface names, physical-looking ones first, without loopback."""
    names = [str(name) for name in ps.net_if_addrs() if str(name) != "lo"]
    names = [name for name in names if _IFNAME.match(name)]
    names.sort(key=lambda name: (bool(VIRTUAL_INTERFACE.match(name)), name))
    if len(names) > _MAX_LIST:
        warnings.append(f"network interfaces: only {_MAX_LIST} of {len(names)} are reported")
    return names[:_MAX_LIST]


def collect_host(
    *,
    ps: Any = None,
    cpuinfo: Path = Path("/proc/cpuinfo"),
    now: Callable[[], float] = time.time,
) -> tuple[HostInfo, list[str]]:
    """This machine as :class:`HostInfo`, and warnings for what could not be read. Never raises.

    ``ps`` defaults to the real ``psutil``; ``cpuinfo`` and ``now`` are there for tests.
    """
    ps = _psutil if ps is None else ps
    warnings: list[str] = []

    def read(what: str, fn: Callable[[], _T], default: _T) -> _T:
        try:
            return fn()
        except Exception as exc:
            warnings.append(f"host: {what} unavailable: {type(exc).__name__}: {exc}")
            return default

    def logical() -> int:
        count = ps.cpu_count(logical=True) or os.cpu_count()
        if not count:
            raise ValueError("psutil and os report no CPU count")
        return int(count)

    def physical() -> int | None:
        count = ps.cpu_count(logical=False)
        return int(count) if count else None

    def load() -> list[float]:
        values = [float(v) for v in ps.getloadavg()][:3]
        return [v for v in values if math.isfinite(v) and v >= 0.0]

    def memory() -> tuple[int, int]:
        vm = ps.virtual_memory()
        return int(vm.total), int(vm.available)

    def uptime() -> float:
        seconds = now() - float(ps.boot_time())
        return seconds if math.isfinite(seconds) and seconds > 0.0 else 0.0

    no_floats: list[float] = []
    no_disks: list[DiskInfo] = []
    no_names: list[str] = []
    total, available = read("memory", memory, (0, 0))
    data: dict[str, object] = {
        "hostname": read("hostname", lambda: _name(socket.gethostname()), ""),
        "cpu_model": read("CPU model", lambda: cpu_model(cpuinfo), ""),
        "cpu_count_physical": read("physical CPU count", physical, None),
        "cpu_count_logical": read("logical CPU count", logical, 1),
        "load_avg": read("load average", load, no_floats),
        "memory_total_bytes": total,
        "memory_available_bytes": available,
        "disks": read("disks", lambda: disks(ps, warnings), no_disks),
        "network_interfaces": read(
            "network interfaces", lambda: network_interfaces(ps, warnings), no_names
        ),
        "uptime_s": read("uptime", uptime, 0.0),
        "os": read("OS", os_name, ""),
        "kernel": read("kernel", lambda: _name(platform.release()), ""),
    }
    host = validate_leniently(
        HostInfo, data, fallbacks=HOST_FALLBACKS, label="host", warnings=warnings
    )
    if host is None:  # pragma: no cover - every required field has a valid fallback
        host = HostInfo.model_validate(HOST_FALLBACKS)
    return host, warnings


__all__ = [
    "HOST_FALLBACKS",
    "PSEUDO_FILESYSTEMS",
    "collect_host",
    "cpu_model",
    "disks",
    "network_interfaces",
    "os_name",
]
