"""``byteleap-miner``: the miner daemon's command line."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from byteleap.chain import ChainPort, NotRegistered
from byteleap.config import MinerConfig
from byteleap.errors import ByteLeapError
from daemonkit.cli import ConfigOption, add_check_config, fail, load_or_exit

app = typer.Typer(
    name="byteleap-miner",
    help="ByteLeap miner: aggregates workers and serves validators.",
    add_completion=False,
    invoke_without_command=True,
)
add_check_config(app, MinerConfig, "miner")
out = Console()
err = Console(stderr=True)


def _wallet(cfg: MinerConfig):  # type: ignore[no-untyped-def]
    import bittensor as bt

    wallet = bt.Wallet(name=cfg.wallet.name, hotkey=cfg.wallet.hotkey, path=str(cfg.wallet.path))
    try:
        _ = wallet.hotkey.ss58_address
    except Exception as exc:  # the SDK raises several kinds for a missing or locked key file
        raise fail(f"cannot load hotkey {cfg.wallet.name}/{cfg.wallet.hotkey}: {exc}") from None
    return wallet


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    """ByteLeap miner. Without a subcommand it runs the daemon (same as `run`)."""
    if ctx.invoked_subcommand is None:
        run(config)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Serve workers and validators until SIGINT/SIGTERM."""
    from daemonkit.logs import configure_logging
    from neurons.chain import open_chain
    from neurons.miner.daemon import run_miner

    cfg = load_or_exit(MinerConfig, config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    wallet = _wallet(cfg)

    async def chain() -> ChainPort:
        return await open_chain(wallet, network=cfg.chain.network, netuid=cfg.chain.netuid)

    try:
        run_miner(cfg, wallet, chain)
    except NotRegistered as exc:
        raise fail(exc.message, code=3) from None
    except ByteLeapError as exc:
        raise fail(exc.message) from None


@app.command()
def authorize(
    pubkey: Annotated[str, typer.Argument(help="the worker's public key, as `keygen` printed it")],
    comment: Annotated[str, typer.Option(help="a note kept after the key")] = "",
    config: ConfigOption = None,
) -> None:
    """Authorize a worker's ed25519 public key (appended to workers.authorized_keys_file)."""
    from neurons.miner.authorized import AuthorizedKeys, parse_pubkey

    cfg = load_or_exit(MinerConfig, config)
    try:
        key = parse_pubkey(pubkey)
    except ValueError as exc:
        raise fail(str(exc)) from None
    added = AuthorizedKeys(cfg.workers.authorized_keys_file).add(key, comment=comment)
    path = cfg.workers.authorized_keys_file
    err.print(f"{'authorized' if added else 'already authorized'}: {pubkey} ({path})")


@app.command()
def workers(
    config: ConfigOption = None,
    url: Annotated[
        str | None, typer.Option(help="the miner API (default from api.host/port)")
    ] = None,
) -> None:
    """List the workers connected to the running miner."""
    from byteleap.protocol.miner_api.inventory import InventoryResponse
    from neurons.common.miner_client import MinerClient

    cfg = load_or_exit(MinerConfig, config)
    wallet = _wallet(cfg)
    host = cfg.api.host if cfg.api.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    base = url or f"http://{host}:{cfg.api.port}"

    async def fetch() -> InventoryResponse:
        async with MinerClient(wallet, wallet.hotkey.ss58_address, base, timeout=10) as client:
            return await client.inventory()

    try:
        inventory = asyncio.run(fetch())
    except ByteLeapError as exc:
        raise fail(f"{base}: {exc.message}") from None
    table = Table(title=f"workers of {inventory.miner_hotkey}")
    for column in ("worker", "state", "GPUs", "last heartbeat", "agent"):
        table.add_column(column)
    for worker in inventory.workers:
        seen = dt.datetime.fromtimestamp(worker.last_heartbeat, tz=dt.UTC).strftime("%H:%M:%S")
        gpus = ", ".join(g.name for g in worker.gpus) or "-"
        table.add_row(
            worker.worker_pubkey[:16] + "…", worker.state, gpus, seen, worker.agent_version or ""
        )
    out.print(table)
    out.print(f"{len(inventory.workers)} worker(s)")


def main() -> None:
    app()
