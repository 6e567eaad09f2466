"""The development runner: the job's command runs directly on the host, without a container.

It exists so that jobs can be tried on a machine without Docker (devnet, CI). It gives the
renter a shell on the host as the worker's user, so the worker only builds it when the config
says ``jobs.runner: subprocess`` *and* ``jobs.allow_subprocess_runner: true``.

What it does enforce: no shell (the command is an argument list), a working directory of its
own with an ``output/`` directory, an environment made only of the job's variables plus
``CUDA_VISIBLE_DEVICES`` / ``NVIDIA_VISIBLE_DEVICES`` naming the leased GPUs (by UUID), the
timeout, and cancel by SIGTERM then SIGKILL to the whole process group. What it cannot enforce:
memory, CPU, process-count and network limits (``jobs.limits`` is ignored), and GPU isolation
beyond what CUDA honours from the visibility variables.
"""

from __future__ import annotations

import asyncio
import signal

from byteleap.protocol.worker_link.jobs import JobSpec
from workers.jobs.files import JobOutput
from workers.jobs.runner import JobRun, RunResult, kill_group, outcome, run_process


def gpu_environment(gpu_uuids: tuple[str, ...]) -> dict[str, str]:
    """The variables that restrict CUDA (and the NVIDIA container runtime) to the leased GPUs."""
    visible = ",".join(gpu_uuids)
    return {"CUDA_VISIBLE_DEVICES": visible, "NVIDIA_VISIBLE_DEVICES": visible}


def job_environment(job: JobRun) -> dict[str, str]:
    """The job's variables plus the GPU visibility variables: nothing of the worker's own."""
    return {**job.spec.env, **gpu_environment(job.gpu_uuids)}


class SubprocessRunner:
    name = "subprocess"

    def __init__(self, *, stop_timeout_s: float) -> None:
        self.stop_timeout_s = stop_timeout_s

    def refuse(self, spec: JobSpec) -> str | None:
        if not spec.command:
            return "the subprocess runner needs a command (there is no image default)"
        return None

    async def _stop(self, process: asyncio.subprocess.Process) -> None:
        kill_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout_s)
        except TimeoutError:
            kill_group(process.pid)
            await process.wait()

    async def run(self, job: JobRun, output: JobOutput, cancel: asyncio.Event) -> RunResult:
        try:
            code, ending = await run_process(
                job.spec.command,
                env=job_environment(job),
                cwd=job.paths.workdir,
                output=output,
                timeout_s=job.spec.timeout_s,
                cancel=cancel,
                stop=self._stop,
            )
        except OSError as exc:
            return RunResult("failed", None, f"cannot start {job.spec.command[0]!r}: {exc}")
        return RunResult(outcome(ending, code), code)


__all__ = ["SubprocessRunner", "gpu_environment", "job_environment"]
