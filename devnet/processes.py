"""Start and stop the devnet's child processes, and never leave one behind.

Each child runs in its own session (its own process group), so a Ctrl-C in the terminal reaches
only the devnet, which then stops the children in a known way: SIGTERM to every child (each daemon
shuts down gracefully on it), a bounded wait, then SIGKILL to whatever is left of each process
group, grandchildren included. On Linux each child also gets SIGTERM from the kernel if the devnet
itself dies without cleaning up (``PR_SET_PDEATHSIG``), so even ``kill -9`` leaves no orphans.

Every child writes stdout and stderr to its own log file; :meth:`Child.tail` returns the end of
it for error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from byteleap.errors import ByteLeapError
from devnet.specs import ProcessSpec

#: seconds the children get to exit after SIGTERM before they are killed
STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def child_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` without ByteLeap settings (a ``BYTELEAP_DATABASE__URL`` meant for another
    validator must not reach the devnet's), plus ``extra``, with unbuffered Python output."""
    env = {k: v for k, v in base.items() if not k.startswith("BYTELEAP_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def read_tail(path: Path, lines: int = 30, max_bytes: int = 16_384) -> str:
    """The last ``lines`` lines of a log file (empty when there is none)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - max_bytes))
            data = file.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


@dataclass
class Child:
    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    started: float

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """None while it runs."""
        return self.popen.poll()

    def tail(self, lines: int = 30) -> str:
        return read_tail(self.spec.log_path, lines)


class ProcessGroup:
    """The devnet's children. Use it as a context manager: leaving it stops every child."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = clock
        self.children: list[Child] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, spec: ProcessSpec) -> Child:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log:  # the child keeps its own descriptor
            popen = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_environment(self.environ, spec.env),
                cwd=spec.data_dir if spec.data_dir.is_dir() else None,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(spec, popen, self.clock())
        self.children.append(child)
        return child

    def exited(self) -> list[Child]:
        """Children that are no longer running."""
        return [child for child in self.children if child.exit_code() is not None]

    def running(self) -> int:
        return sum(1 for child in self.children if child.exit_code() is None)

    def stop(self, grace_s: float = STOP_GRACE_S) -> dict[str, int]:
        """SIGTERM every running child, wait up to ``grace_s``, SIGKILL the rest and anything
        left in their process groups. Returns each child's exit code (negative: killed by that
        signal). Safe to call twice."""
        for child in self.children:
            if child.exit_code() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.send_signal(signal.SIGTERM)
        deadline = self.clock() + grace_s
        for child in self.children:
            remaining = max(0.0, deadline - self.clock())
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(timeout=remaining)
        for child in self.children:
            # the child's session id is its pid: this also reaches any process it started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            if child.exit_code() is None:
                child.popen.wait()
        return {child.name: child.popen.returncode for child in self.children}


class DevnetFailed(ByteLeapError):
    """The devnet could not finish. ``log`` is the tail of the process to blame, if any."""

    code = "devnet"

    def __init__(self, message: str, *, process: str | None = None, log: str = "") -> None:
        super().__init__(message)
        self.process = process
        self.log = log


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


@contextlib.contextmanager
def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Iterator[None]:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def blame_exited(children: list[Child]) -> DevnetFailed:
    child = children[0]
    code = child.exit_code()
    return DevnetFailed(
        f"{child.name} ({child.spec.role}) exited with code {code}",
        process=child.name,
        log=child.tail(),
    )
