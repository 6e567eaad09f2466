"""What the benchmarks ran on, gathered locally (no network): figures mean little without it."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil


@dataclass(frozen=True)
class Machine:
    cpu: str
    logical_cores: int
    physical_cores: int | None
    usable_cores: int
    memory_gib: float
    os: str
    kernel: str
    python: str
    numpy: str
    sqlite: str
    gpus: tuple[str, ...]
    revision: str | None

    def rows(self, postgresql: str | None) -> list[tuple[str, str]]:
        """``(label, value)`` for the document's machine table."""
        cores = f"{self.logical_cores} logical"
        if self.physical_cores:
            cores += f", {self.physical_cores} physical"
        if self.usable_cores != self.logical_cores:
            cores += f", {self.usable_cores} usable by this process"
        return [
            ("CPU", self.cpu),
            ("cores", cores),
            ("memory", f"{self.memory_gib:.1f} GiB"),
            ("OS", f"{self.os} (kernel {self.kernel})"),
            ("Python", self.python),
            ("NumPy", self.numpy),
            (
                "PostgreSQL",
                postgresql or "not measured (the validator_store benchmark did not run)",
            ),
            ("SQLite", self.sqlite),
            ("GPU", ", ".join(self.gpus) if self.gpus else "none found (NVML sees no device)"),
            ("code", self.revision or "unknown (not a git checkout)"),
        ]


def cpu_model() -> str:
    """The CPU's marketing name; ``platform.processor()`` is empty on most Linux systems."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def os_name() -> str:
    with contextlib.suppress(OSError):
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    return platform.platform(terse=True)


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def nvml_gpus() -> tuple[str, ...]:
    """GPU names from NVML (nvidia-ml-py), or none when it has no driver to talk to."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver or no device: all mean "no GPU" here
        return ()
    try:
        count = pynvml.nvmlDeviceGetCount()
        names = []
        for index in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30
            names.append(f"{name.decode() if isinstance(name, bytes) else name} ({memory:.0f} GiB)")
        return tuple(names)
    finally:
        pynvml.nvmlShutdown()


def git_revision(root: Path) -> str | None:
    """The commit the figures were measured at, with ``+modified`` for local changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+modified" if dirty else head


def this_machine(root: Path) -> Machine:
    return Machine(
        cpu=cpu_model(),
        logical_cores=os.cpu_count() or 1,
        physical_cores=psutil.cpu_count(logical=False),
        usable_cores=len(os.sched_getaffinity(0)),
        memory_gib=psutil.virtual_memory().total / 2**30,
        os=os_name(),
        kernel=platform.release(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        numpy=package_version("numpy"),
        sqlite=sqlite3.sqlite_version,
        gpus=nvml_gpus(),
        revision=git_revision(root),
    )
