"""Configuration of ``byteleap-worker``: the agent on each GPU host."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, NonNegativeInt, model_validator

from byteleap.config._base import (
    GIB,
    MIB,
    ByteLimit,
    ExpandedPath,
    ListenPort,
    Seconds,
    Section,
    WsUrl,
    fill_default,
)
from byteleap.config.common import LoggingSection, MetricsSection, cross_check
from byteleap.config.secrets import Secret


class LinkSection(Section):
    """The outbound websocket link to the miner."""

    miner_url: WsUrl = Field(
        default="ws://127.0.0.1:8091/worker",
        description="websocket URL of the miner's worker endpoint (ws:// or wss://)",
    )
    key_file: ExpandedPath | None = Field(
        default=None,
        description="file holding this worker's ed25519 seed (byteleap-worker keygen); "
        "default <paths.data_dir>/worker.key",
    )
    join_token: Secret | None = Field(
        default=None,
        description="one-time token the miner accepts once to pin this worker's key; a secret",
    )
    ca_file: ExpandedPath | None = Field(
        default=None,
        description="PEM CA bundle to verify a wss:// miner with a private certificate authority",
    )
    connect_timeout_s: Seconds = Field(
        default=10.0, description="seconds to open the connection and finish the handshake"
    )
    heartbeat_interval_s: Seconds = Field(
        default=10.0,
        description="seconds between heartbeats; keep well below the miner's "
        "workers.heartbeat_timeout_s",
    )
    reconnect_min_s: Seconds = Field(
        default=1.0, description="first delay before reconnecting after the link drops"
    )
    reconnect_max_s: Seconds = Field(
        default=60.0, description="the reconnect delay doubles (with jitter) up to this cap"
    )
    max_message_bytes: ByteLimit = Field(
        default=16 * MIB, description="largest message accepted from the miner, in bytes"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        cross_check(
            self.reconnect_min_s <= self.reconnect_max_s,
            f"link.reconnect_min_s ({self.reconnect_min_s}) must not exceed "
            f"link.reconnect_max_s ({self.reconnect_max_s})",
        )
        return self


class ComputeSection(Section):
    """Which backend runs challenges, and on which devices."""

    backend: Literal["auto", "numpy", "cupy"] = Field(
        default="auto",
        description="'cupy' needs CUDA; 'numpy' runs on the CPU (development, devnet); "
        "'auto' uses CuPy when a GPU is usable, else NumPy",
    )
    devices: list[NonNegativeInt] | None = Field(
        default=None,
        description="CUDA device indices to offer; default all visible GPUs",
    )
    pace_flops: float | None = Field(
        default=None,
        gt=0.0,
        le=1e18,
        description="development only: the NumPy device takes at least flops / pace_flops "
        "seconds per challenge, so a CPU device behaves like a device of that speed; the devnet "
        "sets it; refused with backend cupy",
    )

    @model_validator(mode="after")
    def _distinct_devices(self) -> Self:
        if self.devices is not None:
            cross_check(
                len(set(self.devices)) == len(self.devices),
                "compute.devices lists a device twice",
            )
        return self

    @model_validator(mode="after")
    def _pace_on_numpy_only(self) -> Self:
        if self.pace_flops is not None:
            cross_check(
                self.backend != "cupy",
                f"compute.pace_flops ({self.pace_flops:g}) paces the NumPy device only, but "
                "compute.backend is 'cupy'; remove compute.pace_flops (it is for the devnet)",
            )
        return self


class JobsSection(Section):
    """How renters' jobs run during a lease."""

    runner: Literal["docker", "subprocess", "none"] = Field(
        default="docker",
        description="'docker' runs each job's image with the leased GPUs only (--gpus); "
        "'subprocess' runs the command directly on the host (development only); "
        "'none' refuses jobs",
    )
    allow_subprocess_runner: bool = Field(
        default=False,
        description="must be true for runner 'subprocess', which gives renters a shell on "
        "this host",
    )
    docker_command: str = Field(
        default="docker", min_length=1, description="docker CLI to call (name or path)"
    )
    max_output_bytes: ByteLimit = Field(
        default=1 * MIB, description="stdout and stderr are each cut to this many bytes"
    )
    max_artifact_bytes: ByteLimit = Field(
        default=1 * GIB, description="total size of the artifacts one job may return"
    )
    stop_timeout_s: Seconds = Field(
        default=10.0, description="grace period between SIGTERM and SIGKILL when a job is stopped"
    )
    pull_timeout_s: Seconds = Field(
        default=600.0, description="seconds a job's image pull may take before the job fails"
    )
    max_parallel: int = Field(
        default=1, ge=1, le=64, description="jobs that run at the same time; the others queue"
    )
    max_jobs_per_lease: int = Field(
        default=256, ge=1, le=100_000, description="jobs one lease may submit in total"
    )
    allow_network: bool = Field(
        default=False,
        description="let jobs that ask for network 'bridge' reach the network (docker runner); "
        "otherwise such jobs are refused and every container runs with --network none",
    )

    @model_validator(mode="after")
    def _subprocess_needs_consent(self) -> Self:
        cross_check(
            self.runner != "subprocess" or self.allow_subprocess_runner,
            "jobs.runner is 'subprocess' but jobs.allow_subprocess_runner is false; the "
            "subprocess runner gives renters a shell on this host and is meant for development",
        )
        return self


class WorkerPaths(Section):
    """Where the worker keeps its state."""

    data_dir: ExpandedPath = Field(
        default=Path("~/.byteleap/worker"),
        description="directory for the worker key and job scratch space",
    )


class WorkerMetricsSection(MetricsSection):
    """The Prometheus metrics endpoint (``http://host:port/metrics``)."""

    port: ListenPort = Field(default=9101, description="port of the metrics endpoint")


class WorkerConfig(Section):
    """Everything ``byteleap-worker`` reads from its config file."""

    ENV_DEFAULTS: ClassVar[Mapping[str, str]] = {}

    link: LinkSection = Field(default_factory=LinkSection, description="link to the miner")
    compute: ComputeSection = Field(default_factory=ComputeSection, description="challenge compute")
    jobs: JobsSection = Field(default_factory=JobsSection, description="renters' jobs")
    paths: WorkerPaths = Field(default_factory=WorkerPaths, description="local state")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="logging")
    metrics: WorkerMetricsSection = Field(
        default_factory=WorkerMetricsSection, description="metrics"
    )

    @model_validator(mode="after")
    def _derived_defaults(self) -> Self:
        if self.link.key_file is None:
            fill_default(self, "link", key_file=self.paths.data_dir / "worker.key")
        return self

    @property
    def key_file(self) -> Path:
        """The worker's key file (always set after validation)."""
        assert self.link.key_file is not None
        return self.link.key_file


__all__ = [
    "ComputeSection",
    "JobsSection",
    "LinkSection",
    "WorkerConfig",
    "WorkerMetricsSection",
    "WorkerPaths",
]
