"""The devnet's cheating worker.

    python -m devnet.cheat_worker run -c worker.yaml --mode fake_rows
    python -m devnet.cheat_worker run -c worker.yaml --mode sybil --claims 2 \
        --device-lock RUN_DIR/devices/sybil-1.lock
    python -m devnet.cheat_worker run -c worker.yaml --mode phantom_busy --claims 16
    python -m devnet.cheat_worker run -c worker.yaml --mode phantom_busy --companion

It reads the same config file as ``byteleap-worker`` (``compute.pace_flops`` included: its NumPy
device is paced like an honest devnet worker's) and runs the same agent and runtime; only the
executor lies (:mod:`devnet.cheats`), and for ``phantom_busy`` the agent, which says
"busy" whatever it is doing. It is started by ``byteleap devnet`` and is not
installed as a command: the production worker has no way to cheat.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import byteleap
from byteleap.config import WorkerConfig
from byteleap.errors import ByteLeapError
from byteleap.sessions.worker_agent import WorkerAgent
from daemonkit.cli import ConfigOption, fail, load_or_exit
from daemonkit.logs import configure_logging
from devnet.cheat_devices import AlwaysBusyAgent, claimed_devices, claimed_inventory
from devnet.cheat_modes import Cheat, CheatMode
from devnet.cheats import CheatingExecutor
from workers.backends.numpy_backend import NumpyBackend
from workers.backends.select import cpu_name
from workers.inventory import collect_inventory
from workers.keys import read_key
from workers.runtime import LinkSettings, WorkerRuntime, run_worker

app = typer.Typer(
    name="devnet-cheat-worker",
    help="A worker that cheats, for byteleap devnet only.",
    add_completion=False,
    no_args_is_help=True,
)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """A worker that cheats, for byteleap devnet only."""


@app.command()
def run(
    mode: Annotated[CheatMode, typer.Option(help="how this worker cheats")],
    config: ConfigOption = None,
    never_commit: Annotated[
        bool, typer.Option("--never-commit", help="phantom_gpu: never commit (a timeout)")
    ] = False,
    claims: Annotated[
        int,
        typer.Option(min=1, help="sybil, phantom_busy: how many devices this worker claims"),
    ] = 1,
    device_lock: Annotated[
        Path | None,
        typer.Option(help="sybil: the lock file of the one device every sybil claim shares"),
    ] = None,
    companion: Annotated[
        bool,
        typer.Option("--companion", help="phantom_busy: the honest worker beside the busy one"),
    ] = False,
) -> None:
    """Connect to the miner and answer challenges dishonestly until SIGINT/SIGTERM."""
    try:
        cheat = Cheat(
            mode,
            never_commit=never_commit,
            claims=claims,
            device_lock=device_lock,
            companion=companion,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    cfg = load_or_exit(WorkerConfig, config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    try:
        key = read_key(cfg.key_file)
    except ByteLeapError as exc:
        raise fail(exc.message) from None
    # NVML is not consulted: a cheater's devices are exactly the ones it claims
    inventory, _ = collect_inventory(nvml=None, backends=["numpy"])
    backend = NumpyBackend.for_worker(
        key.public_key, cpu_name(inventory), pace_flops=cfg.compute.pace_flops
    )
    claimed = claimed_devices(
        mode, backend.devices()[0], key.public_key, claims=cheat.claims, companion=companion
    )
    agent_class = AlwaysBusyAgent if cheat.always_busy else WorkerAgent
    agent = agent_class(
        key,
        claimed_inventory(inventory, claimed),
        agent_version=byteleap.__version__,
        gpu_uuids=lambda: {device.uuid for device in claimed},
        max_message_bytes=cfg.link.max_message_bytes,
    )
    executor = CheatingExecutor(backend, key, clock=time.perf_counter, cheat=cheat, claimed=claimed)
    runtime = WorkerRuntime(
        agent,
        executor,
        LinkSettings.from_config(cfg.link),
    )
    err.print(
        f"cheating worker ({cheat.label}) {key.public_key.hex()} -> {cfg.link.miner_url}, "
        f"claiming {', '.join(d.uuid for d in claimed)}",
        highlight=False,
    )
    run_worker(runtime)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
