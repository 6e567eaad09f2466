"""The production runner: each job is a ``docker run`` of the renter's image on the leased GPUs.

One job is::

    docker image inspect IMAGE            present locally?  else:
    docker pull IMAGE                     bounded by jobs.pull_timeout_s
    docker run --rm --name byteleap-<lease hash>-<job_id> ... IMAGE COMMAND...   (attached)

``docker run`` stays attached, so its stdout/stderr are the container's and its exit status is
the container's (125-127 mean docker could not start it). A timeout or cancel runs
``docker stop -t <jobs.stop_timeout_s> NAME`` (SIGTERM, then SIGKILL after the grace period),
and ``docker kill NAME`` if the container still does not go away.

The container gets the leased GPUs only (``--gpus "device=UUID,..."``, by NVML UUID), no network
unless the job asks for ``bridge`` and the worker allows it, the job's memory, CPU and process
limits (4096 processes when the job sets none), ``no-new-privileges``, and its output directory
mounted at ``/output``. The job's environment goes through an ``--env-file`` (mode 0600, deleted
when the job ends) rather than the command line, where other users of the host could read it,
and the docker CLI itself runs with the worker's docker settings only (``PATH``, ``HOME``,
``DOCKER_*``, ``XDG_RUNTIME_DIR``), so nothing of the job can redirect the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import structlog

from byteleap.protocol.worker_link.jobs import JobSpec
from workers.jobs.files import JobOutput, lease_dir_name
from workers.jobs.runner import JobRun, RunResult, kill_group, outcome, run_process

log = structlog.get_logger("byteleap.worker.jobs")

#: process limit of a job that sets none
DEFAULT_PIDS_LIMIT = 4096
#: seconds a docker housekeeping command (inspect, stop, kill) may take
CLI_TIMEOUT_S = 60.0
#: the container's view of the job's output directory
CONTAINER_OUTPUT = "/output"
#: worker environment variables the docker CLI may see
_CLI_ENV = ("PATH", "HOME", "XDG_RUNTIME_DIR")
#: docker's own exit statuses for "could not start the container"
_DOCKER_ERRORS = {
    125: "docker could not run the container",
    126: "the command in the image cannot be executed",
    127: "the command was not found in the image",
}


def container_name(job: JobRun) -> str:
    """``byteleap-<lease hash>-<job_id>``: unique per job, valid as a docker name."""
    return f"byteleap-{lease_dir_name(job.lease_id)[len('lease-') :][:12]}-{job.job_id}"


def gpu_devices(gpu_uuids: tuple[str, ...]) -> list[str]:
    """The leased devices docker can map: NVIDIA GPUs and MIG slices (not CPU stand-ins)."""
    return [uuid for uuid in gpu_uuids if uuid.startswith(("GPU-", "MIG-"))]


def cpus_value(cpu_millis: int) -> str:
    """``--cpus`` spelled exactly from thousandths of a CPU: 1500 -> ``1.5``, 2000 -> ``2``."""
    whole, frac = divmod(cpu_millis, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)


def env_file_text(env: Mapping[str, str]) -> str:
    """The job's variables as a docker ``--env-file`` (the protocol forbids line breaks)."""
    return "".join(f"{name}={value}\n" for name, value in sorted(env.items()))


def docker_run_argv(
    docker: str,
    job: JobRun,
    *,
    env_file: Path | None,
    allow_network: bool = False,
) -> list[str]:
    """The exact ``docker run`` command line of ``job``."""
    spec = job.spec
    limits = spec.limits
    network = limits.network if allow_network else "none"
    argv = [docker, "run", "--rm", "--name", container_name(job)]
    argv += ["--label", f"byteleap.lease={job.lease_id}", "--label", f"byteleap.job={job.job_id}"]
    devices = gpu_devices(job.gpu_uuids)
    if devices:
        # the quotes keep docker's CSV parser from splitting the device list at its commas
        argv += ["--gpus", '"device=' + ",".join(devices) + '"']
    argv += ["--network", network]
    if limits.memory_bytes is not None:
        argv += ["--memory", str(limits.memory_bytes)]
    if limits.cpu_millis is not None:
        argv += ["--cpus", cpus_value(limits.cpu_millis)]
    argv += ["--pids-limit", str(limits.pids if limits.pids is not None else DEFAULT_PIDS_LIMIT)]
    argv += ["--security-opt", "no-new-privileges"]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    argv += ["-v", f"{job.paths.output}:{CONTAINER_OUTPUT}"]
    argv += [spec.image, *spec.command]
    return argv


class DockerRunner:
    name = "docker"

    def __init__(
        self,
        *,
        docker_command: str = "docker",
        stop_timeout_s: float = 10.0,
        pull_timeout_s: float = 600.0,
        allow_network: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.docker_command = docker_command
        self.stop_timeout_s = stop_timeout_s
        self.pull_timeout_s = pull_timeout_s
        self.allow_network = allow_network
        source = os.environ if environ is None else environ
        self.cli_env = {
            key: value
            for key, value in source.items()
            if key in _CLI_ENV or key.startswith("DOCKER_")
        }

    def docker(self) -> str | None:
        """The docker CLI's path, or None when it cannot be found."""
        return shutil.which(self.docker_command, path=self.cli_env.get("PATH"))

    def refuse(self, spec: JobSpec) -> str | None:
        if spec.limits.network == "bridge" and not self.allow_network:
            return "this worker does not allow network access to jobs (jobs.allow_network)"
        return None

    # ------------------------------------------------------------------ docker calls

    async def _cli(self, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> tuple[int | None, str]:
        """Run a docker housekeeping command; its exit status (None: timed out) and stderr."""
        docker = self.docker()
        if docker is None:
            return None, f"docker CLI {self.docker_command!r} not found"
        process = await asyncio.create_subprocess_exec(
            docker,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self.cli_env,
            start_new_session=True,
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), timeout_s)
        except TimeoutError:
            kill_group(process.pid)
            await process.wait()
            return None, f"docker {args[0]} timed out after {timeout_s:g} s"
        return process.returncode, err.decode("utf-8", "replace").strip()[-500:]

    async def _pull(self, image: str, cancel: asyncio.Event) -> str | None:
        """Make sure ``image`` is present; an error message, or None when it is."""
        code, _ = await self._cli("image", "inspect", image)
        if code == 0:
            return None
        pull = asyncio.create_task(self._cli("pull", image, timeout_s=self.pull_timeout_s))
        stopped = asyncio.create_task(cancel.wait())
        try:
            await asyncio.wait({pull, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not pull.done():
            pull.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pull
            return "cancelled while the image was pulled"
        code, err = pull.result()
        if code == 0:
            return None
        if code is None:
            return err
        return f"docker pull {image} failed ({code}): {err}"

    async def _stop_container(self, name: str, process: asyncio.subprocess.Process) -> None:
        grace = max(0, round(self.stop_timeout_s))
        await self._cli("stop", "-t", str(grace), name, timeout_s=grace + CLI_TIMEOUT_S)
        try:
            await asyncio.wait_for(process.wait(), CLI_TIMEOUT_S / 6)
        except TimeoutError:
            await self._cli("kill", name)
            kill_group(process.pid)
            await process.wait()

    # ------------------------------------------------------------------ a job

    async def run(self, job: JobRun, output: JobOutput, cancel: asyncio.Event) -> RunResult:
        docker = self.docker()
        if docker is None:
            return RunResult("failed", None, f"docker CLI {self.docker_command!r} not found")
        pull_error = await self._pull(job.spec.image, cancel)
        if cancel.is_set():
            return RunResult("cancelled", None, pull_error or "")
        if pull_error is not None:
            return RunResult("failed", None, pull_error)
        env_file: Path | None = None
        if job.spec.env:
            env_file = job.paths.env_file
            env_file.touch(mode=0o600)
            env_file.write_text(env_file_text(job.spec.env), encoding="utf-8")
        name = container_name(job)
        argv = docker_run_argv(docker, job, env_file=env_file, allow_network=self.allow_network)
        log.info("docker_run", lease=job.lease_id, job=job.job_id, image=job.spec.image, name=name)

        async def stop(process: asyncio.subprocess.Process) -> None:
            await self._stop_container(name, process)

        try:
            code, ending = await run_process(
                argv,
                env=self.cli_env,
                cwd=None,
                output=output,
                timeout_s=job.spec.timeout_s,
                cancel=cancel,
                stop=stop,
            )
        except OSError as exc:
            return RunResult("failed", None, f"cannot start docker: {exc}")
        finally:
            if env_file is not None:
                env_file.unlink(missing_ok=True)
        state = outcome(ending, code)
        error = _DOCKER_ERRORS.get(code, "") if state == "failed" and code is not None else ""
        return RunResult(state, code, error)


__all__ = [
    "CONTAINER_OUTPUT",
    "DEFAULT_PIDS_LIMIT",
    "DockerRunner",
    "container_name",
    "cpus_value",
    "docker_run_argv",
    "env_file_text",
    "gpu_devices",
]
