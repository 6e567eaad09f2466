"""What a job runner is, and the process handling both runners share.

A :class:`Runner` turns one :class:`JobRun` into a :class:`RunResult`. It writes the job's
stdout and stderr through the :class:`~workers.jobs.files.JobOutput` it is given (size-capped),
honours the job's timeout, and stops the job when ``cancel`` is set. It never raises for
anything the job did; an exception means the runner itself broke.

:func:`run_process` is the shared core: start a process in its own session (process group),
drain both pipes, and wait for whichever comes first of the exit, the timeout and a cancel;
on the latter two it calls the runner's ``stop`` (a signal for a subprocess, ``docker stop``
for a container), which must not return before the process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from byteleap.protocol.worker_link.jobs import JobSpec
from workers.jobs.files import CappedLog, JobOutput, JobPaths

#: seconds the pipes may stay open after the process ended (a straggling child holding them)
PUMP_GRACE_S = 5.0
_PIPE_CHUNK = 64 * 1024

RunState = Literal["succeeded", "failed", "cancelled", "timed_out"]
Ending = Literal["exited", "cancelled", "timed_out"]


@dataclass(frozen=True)
class JobRun:
    """One job as a runner sees it."""

    lease_id: str
    job_id: str
    spec: JobSpec
    #: the lease's GPUs: the only ones the job may use
    gpu_uuids: tuple[str, ...]
    paths: JobPaths


@dataclass(frozen=True)
class RunResult:
    state: RunState
    exit_code: int | None = None
    #: why the job could not run at all (image pull failed, command not found, ...)
    error: str = ""


class Runner(Protocol):
    """Runs jobs. ``name`` is the config value that selects it (``docker``, ``subprocess``)."""

    name: str

    def refuse(self, spec: JobSpec) -> str | None:
        """Why this runner cannot run ``spec`` at all, or None. Checked before a job is queued."""
        ...

    async def run(self, job: JobRun, output: JobOutput, cancel: asyncio.Event) -> RunResult:
        """Run the job to its end; see the module docstring."""
        ...


def outcome(ending: Ending, exit_code: int | None) -> RunState:
    """The job's final state from how the process ended."""
    if ending == "cancelled":
        return "cancelled"
    if ending == "timed_out":
        return "timed_out"
    return "succeeded" if exit_code == 0 else "failed"


async def _pump(stream: asyncio.StreamReader | None, log: CappedLog) -> None:
    if stream is None:
        return
    while True:
        data = await stream.read(_PIPE_CHUNK)
        if not data:
            return
        log.write(data)


async def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None,
    output: JobOutput,
    timeout_s: float,
    cancel: asyncio.Event,
    stop: Callable[[asyncio.subprocess.Process], Awaitable[None]],
) -> tuple[int | None, Ending]:
    """Run ``argv`` (no shell) and return its exit status and how it ended.

    Raises ``OSError`` when the process cannot be started (no such executable, ...).
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    pumps = [
        asyncio.create_task(_pump(process.stdout, output.stdout)),
        asyncio.create_task(_pump(process.stderr, output.stderr)),
    ]
    exited = asyncio.create_task(process.wait())
    cancelled = asyncio.create_task(cancel.wait())
    ending: Ending = "exited"
    try:
        done, _ = await asyncio.wait(
            {exited, cancelled}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if exited not in done:
            ending = "cancelled" if cancelled in done else "timed_out"
            await stop(process)
            await exited
    finally:
        cancelled.cancel()
        if not exited.done():  # we are being cancelled ourselves: do not leave the job behind
            exited.cancel()
        # the job is over: children it left running in its group go too (they would hold the
        # pipes open, and keep using the GPUs after the job ended)
        kill_group(process.pid)
        _, pending = await asyncio.wait(pumps, timeout=PUMP_GRACE_S)
        for task in pending:
            task.cancel()
    return process.returncode, ending


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal every process of the job's process group; quiet when none is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


__all__ = [
    "PUMP_GRACE_S",
    "JobRun",
    "RunResult",
    "RunState",
    "Runner",
    "kill_group",
    "outcome",
    "run_process",
]
