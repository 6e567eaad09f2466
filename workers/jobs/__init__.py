"""Renters' jobs on a leased worker (SPEC 6): runners, the job manager, and their files.

* :mod:`.runner`: the :class:`~workers.jobs.runner.Runner` protocol and the process core;
* :mod:`.docker_runner`: ``docker run`` with the leased GPUs only (production);
* :mod:`.subprocess_runner`: the command on the host (development, explicit opt-in);
* :mod:`.manager`: which jobs exist and the answers to the miner's job requests;
* :mod:`.files`: job directories, size-capped logs, artifacts read without following links.

:func:`make_runner` builds the runner the ``jobs`` config section asks for.
"""

from __future__ import annotations

from byteleap.config.worker import JobsSection
from byteleap.errors import ConfigError
from workers.jobs.docker_runner import DockerRunner
from workers.jobs.runner import Runner
from workers.jobs.subprocess_runner import SubprocessRunner


def make_runner(config: JobsSection) -> Runner | None:
    """The configured runner, or None for ``runner: none`` (jobs are then refused)."""
    if config.runner == "none":
        return None
    if config.runner == "subprocess":
        if not config.allow_subprocess_runner:  # the config model checks this too
            raise ConfigError(
                "the subprocess runner needs jobs.allow_subprocess_runner: true",
                key="jobs.allow_subprocess_runner",
            )
        return SubprocessRunner(stop_timeout_s=config.stop_timeout_s)
    return DockerRunner(
        docker_command=config.docker_command,
        stop_timeout_s=config.stop_timeout_s,
        pull_timeout_s=config.pull_timeout_s,
        allow_network=config.allow_network,
    )


__all__ = ["DockerRunner", "Runner", "SubprocessRunner", "make_runner"]
