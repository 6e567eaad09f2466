"""``byteleap-worker``: the GPU-host agent's command line."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import byteleap
from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.timing import peak_for
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.config import WorkerConfig
from byteleap.errors import ByteLeapError, ConfigError
from byteleap.sessions.worker_agent import WorkerAgent
from daemonkit.cli import ConfigOption, add_check_config, fail, load_or_exit
from daemonkit.logs import configure_logging
from workers.backends.base import ComputeBackend
from workers.backends.select import advertise_devices, choose_backend
from workers.compute import ChallengeExecutor
from workers.inventory import collect_inventory, inventory_command
from workers.inventory.gpus import load_nvml
from workers.jobs import DockerRunner, make_runner
from workers.jobs.manager import JobManager
from workers.keys import read_key, write_key
from workers.metrics import WorkerMetrics
from workers.runtime import DRAIN_S, LinkSettings, WorkerRuntime, run_worker

app = typer.Typer(
    name="byteleap-worker",
    help="ByteLeap worker: reports this host's GPUs to its miner and proves them.",
    add_completion=False,
    invoke_without_command=True,
)
add_check_config(app, WorkerConfig, "worker")
out = Console()
err = Console(stderr=True)


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    """ByteLeap worker. Without a subcommand it runs the daemon (same as `run`)."""
    if ctx.invoked_subcommand is None:
        run(config)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Connect to the miner and serve challenges until SIGINT/SIGTERM."""
    cfg = load_or_exit(WorkerConfig, config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    try:
        key = read_key(cfg.key_file)
        join_token = cfg.link.join_token.resolve() if cfg.link.join_token else None
    except ByteLeapError as exc:
        raise fail(exc.message) from None
    inventory, warnings = collect_inventory(nvml=load_nvml(), backends=None)
    for warning in warnings:
        err.print(f"[yellow]inventory[/]: {warning}", highlight=False)
    try:
        backend = choose_backend(
            cfg.compute.backend,
            key.public_key,
            inventory,
            cfg.compute.devices,
            pace_flops=cfg.compute.pace_flops,
        )
    except ConfigError as exc:
        raise fail(exc.message) from None
    inventory = advertise_devices(inventory, backend)
    try:
        runner = make_runner(cfg.jobs)
    except ConfigError as exc:
        raise fail(exc.message) from None
    if isinstance(runner, DockerRunner) and runner.docker() is None:
        err.print(
            f"[yellow]jobs[/]: docker CLI {cfg.jobs.docker_command!r} not found; jobs will fail "
            "until it is installed (or set jobs.runner: none)",
            highlight=False,
        )
    jobs = JobManager(
        runner,
        cfg.paths.data_dir / "jobs",
        max_output_bytes=cfg.jobs.max_output_bytes,
        max_artifact_bytes=cfg.jobs.max_artifact_bytes,
        max_parallel=cfg.jobs.max_parallel,
        max_jobs_per_lease=cfg.jobs.max_jobs_per_lease,
    )
    agent = WorkerAgent(
        key,
        inventory,
        agent_version=byteleap.__version__,
        gpu_uuids=lambda: {device.uuid for device in backend.devices()},
        join_token=join_token,
        max_message_bytes=cfg.link.max_message_bytes,
        job_runner=runner.name if runner is not None else None,
    )
    metrics = WorkerMetrics()
    if cfg.metrics.enabled:
        metrics.serve(cfg.metrics.host, cfg.metrics.port)
    runtime = WorkerRuntime(
        agent,
        ChallengeExecutor(backend, key, clock=time.perf_counter),
        LinkSettings.from_config(cfg.link),
        metrics=metrics,
        jobs=jobs,
    )
    err.print(
        f"worker {key.public_key.hex()} -> {cfg.link.miner_url} "
        f"({backend.name}, {len(backend.devices())} device(s), "
        f"jobs: {runner.name if runner else 'none'})",
        highlight=False,
    )

    # the drain outlasts stopping a job that ignores SIGTERM
    run_worker(runtime, drain_s=max(DRAIN_S, cfg.jobs.stop_timeout_s + 30))


@app.command()
def keygen(
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing key")] = False,
    key_file: Annotated[
        Path | None, typer.Option(help="where to write the key (default: link.key_file)")
    ] = None,
) -> None:
    """Create this worker's ed25519 key (mode 0600) and print its public key for the miner."""
    path = key_file or load_or_exit(WorkerConfig, config).key_file
    try:
        key = write_key(path, overwrite=force)
    except ByteLeapError as exc:
        raise fail(exc.message) from None
    err.print(f"wrote {path} (mode 0600). Authorize this worker on your miner with:")
    typer.echo(key.public_key.hex())


@app.command()
def inventory(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Show this host's GPUs (NVML) and host facts (psutil)."""
    raise typer.Exit(code=inventory_command(as_json))


def _selftest_backends(config: Path | None) -> list[ComputeBackend]:
    cfg = load_or_exit(WorkerConfig, config)
    try:
        pubkey = read_key(cfg.key_file).public_key
    except ByteLeapError:
        pubkey = bytes(32)  # selftest needs no identity; a zero key names the CPU device
    inv, _ = collect_inventory(nvml=load_nvml(), backends=None)
    found = [choose_backend("numpy", pubkey, inv)]
    with contextlib.suppress(ByteLeapError):  # no GPU: NumPy only
        found.insert(0, choose_backend("cupy", pubkey, inv, cfg.compute.devices))
    return found


@app.command()
def selftest(
    config: ConfigOption = None,
    size: Annotated[int, typer.Option(help="m = n = k of the test challenge")] = 1024,
    stages: Annotated[int, typer.Option(min=1, help="stages R")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Run a local challenge on every backend present, verify it exactly, report the speed."""
    try:
        params = ChallengeParams(m=size, n=size, k=size, v=15, stages=stages)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    results: list[dict[str, Any]] = []
    for backend in _selftest_backends(config):
        for device in backend.devices():
            binding = Binding(
                miner_hotkey="selftest", worker_pubkey=bytes(32), gpu_uuid=device.uuid
            )
            seed = random.randbytes(32)
            started = time.perf_counter()
            run_ = backend.run(device, binding, seed, params, clock=time.perf_counter)
            elapsed = time.perf_counter() - started
            samples = draw_sample(params, SamplingParams(), random.Random())
            openings = [o for s in samples for o in backend.open(device, run_, s.stage, s.rows)]
            verify_openings(Commitment(binding, seed, params, tuple(run_.roots)), samples, openings)
            gemm = backend.bare_gemm_seconds(device, params, clock=time.perf_counter)
            per_stage = elapsed / params.stages
            results.append(
                {
                    "backend": backend.name,
                    "device": device.name,
                    "uuid": device.uuid,
                    "verified": True,
                    "tflops": params.flops / elapsed / 1e12,
                    "of_dense_tf32_peak": _peak_fraction(params.flops / elapsed, device.name),
                    "stage_s": per_stage,
                    "bare_gemm_s": gemm,
                    "stage_over_gemm": per_stage / gemm if gemm > 0 else None,
                }
            )
    if as_json:
        typer.echo(json.dumps({"size": size, "stages": stages, "results": results}))
        return
    table = Table(title=f"selftest: m=n=k={size}, R={stages}, verified exactly")
    for column in ("backend", "device", "TFLOP/s", "of peak", "stage", "bare GEMM", "ratio"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r["backend"],
            r["device"],
            f"{r['tflops']:.3f}",
            "-" if r["of_dense_tf32_peak"] is None else f"{r['of_dense_tf32_peak']:.1%}",
            f"{r['stage_s'] * 1e3:.1f} ms",
            f"{r['bare_gemm_s'] * 1e3:.1f} ms",
            f"{r['stage_over_gemm']:.2f}" if r["stage_over_gemm"] else "-",
        )
    out.print(table)


def main() -> None:
    app()


def _peak_fraction(flops: float, name: str) -> float | None:
    """Share of the catalogue's dense TF32 peak for ``name``; None outside the catalogue."""
    peak = peak_for(name)
    return None if peak is None else flops / peak
