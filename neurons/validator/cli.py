"""``byteleap-validator``: the validator daemon's command line.

Exit codes (also in docs/running-a-validator.md):

- 0: success;
- 2: invalid configuration or command line;
- 3: the validator's hotkey is not registered on the subnet;
- 4: the database failed, or its schema is not the one this version needs;
- 5: the chain could not be reached or refused the request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from byteleap.chain import ChainPort, NotRegistered
from byteleap.config import ValidatorConfig
from byteleap.errors import ByteLeapError, ChainError, ConfigError, StorageError
from byteleap.scoring import format_explanation
from daemonkit.cli import ConfigOption, add_check_config, fail, load_or_exit

if TYPE_CHECKING:
    from neurons.validator.store import SqlStore
    from neurons.validator.weights import WeightVector

EXIT_CONFIG = 2
EXIT_NOT_REGISTERED = 3
EXIT_STORAGE = 4
EXIT_CHAIN = 5
TERA = 1e12

T = TypeVar("T")

app = typer.Typer(
    name="byteleap-validator",
    help="ByteLeap validator: challenges workers, rents capacity, sets weights.",
    add_completion=False,
    invoke_without_command=True,
)
db_app = typer.Typer(help="The validator's database schema (Alembic migrations).")
app.add_typer(db_app, name="db")
renters_app = typer.Typer(help="Renters of the renter API and their API keys.")
app.add_typer(renters_app, name="renters")
add_check_config(app, ValidatorConfig, "validator")
out = Console()
err = Console(stderr=True)


def _exit_for(exc: ByteLeapError) -> typer.Exit:
    """Print ``exc`` and return the exit matching its type (see the module docstring)."""
    if isinstance(exc, NotRegistered):
        return fail(exc.message, code=EXIT_NOT_REGISTERED)
    if isinstance(exc, StorageError):
        return fail(exc.message, code=EXIT_STORAGE, label="database error")
    if isinstance(exc, ChainError):
        return fail(exc.message, code=EXIT_CHAIN, label="chain error")
    if isinstance(exc, ConfigError):
        return fail(exc.message, code=EXIT_CONFIG, label="config error")
    return fail(exc.message)


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    try:
        return asyncio.run(main())
    except ByteLeapError as exc:
        raise _exit_for(exc) from None


def _wallet(cfg: ValidatorConfig):  # type: ignore[no-untyped-def]
    import bittensor as bt

    wallet = bt.Wallet(name=cfg.wallet.name, hotkey=cfg.wallet.hotkey, path=str(cfg.wallet.path))
    try:
        _ = wallet.hotkey.ss58_address
    except Exception as exc:  # the SDK raises several kinds for a missing or locked key file
        raise fail(f"cannot load hotkey {cfg.wallet.name}/{cfg.wallet.hotkey}: {exc}") from None
    return wallet


def _database_url(cfg: ValidatorConfig) -> str:
    try:
        return cfg.database.resolve_url()
    except ConfigError as exc:
        raise fail(exc.message, label="config error") from None


async def _open_store(cfg: ValidatorConfig, *, auto_upgrade: bool) -> SqlStore:
    from neurons.validator.store import open_store

    store = await open_store(
        _database_url(cfg), pool_size=cfg.database.pool_size, auto_upgrade=auto_upgrade
    )
    # the same receipt rule as the daemon, so `scores` and `weights --dry-run` show its vector
    store.receipts.min_validator_stake = cfg.leases.min_receipt_validator_stake
    store.receipts.max_prices = dict(cfg.leases.max_prices)
    store.receipts.lease_window = cfg.scoring.to_params().lease_window
    store.claim_expiry = cfg.scoring.to_params().claim_expiry
    return store


# --------------------------------------------------------------------------- run


@app.callback()
def _root(ctx: typer.Context, config: ConfigOption = None) -> None:
    """ByteLeap validator. Without a subcommand it runs the daemon (same as `run`)."""
    if ctx.invoked_subcommand is None:
        run(config)


@app.command()
def run(config: ConfigOption = None) -> None:
    """Challenge workers, score miners and set weights until SIGINT/SIGTERM."""
    from daemonkit.logs import configure_logging
    from neurons.chain import open_chain
    from neurons.validator.daemon import run_validator

    cfg = load_or_exit(ValidatorConfig, config)
    configure_logging(cfg.logging.level, cfg.logging.format)
    wallet = _wallet(cfg)

    async def chain() -> ChainPort:
        return await open_chain(wallet, network=cfg.chain.network, netuid=cfg.chain.netuid)

    async def store() -> SqlStore:
        return await _open_store(cfg, auto_upgrade=cfg.database.auto_upgrade)

    try:
        run_validator(cfg, wallet, chain, store)
    except ByteLeapError as exc:
        raise _exit_for(exc) from None


# --------------------------------------------------------------------------- db


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Apply pending migrations (creates the schema on an empty database)."""
    from neurons.validator.store import migrate

    cfg = load_or_exit(ValidatorConfig, config)
    url = _database_url(cfg)
    try:
        before = migrate.current(url)
        after = migrate.upgrade(url, revision)
    except ByteLeapError as exc:
        raise _exit_for(exc) from None
    if before == after:
        err.print(f"database already at {after}")
    else:
        err.print(f"database upgraded from {before or 'empty'} to {after}")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the database's revision and whether it is the one this version needs."""
    from neurons.validator.store import migrate

    cfg = load_or_exit(ValidatorConfig, config)
    url = _database_url(cfg)
    try:
        at = migrate.current(url)
        head = migrate.head_revision()
    except ByteLeapError as exc:
        raise _exit_for(exc) from None
    typer.echo(at or "empty")
    if at == head:
        err.print("[green]up to date[/]")
    else:
        raise fail(
            f"this version needs {head}: run 'byteleap-validator db upgrade'",
            code=EXIT_STORAGE,
            label="behind",
        )


# --------------------------------------------------------------------------- scores


def _setter(cfg: ValidatorConfig, store: Any, chain: ChainPort | None = None) -> Any:
    from neurons.validator.daemon import utc_now
    from neurons.validator.weights import WeightSetter

    return WeightSetter(
        store=store, chain=chain, params=cfg.scoring.to_params(), wall_clock=utc_now
    )


def _miner_rows(vector: WeightVector) -> list[dict[str, Any]]:
    rows = []
    for hotkey, explanation in vector.result.miners.items():
        rows.append(
            {
                "uid": vector.inputs.uids.get(hotkey),
                "hotkey": hotkey,
                "availability": explanation.availability,
                "challenge_raw_flops": explanation.challenge_raw,
                "challenge_share": explanation.challenge_share,
                "lease_revenue": explanation.lease_revenue,
                "lease_share": explanation.lease_share,
                "score": explanation.score,
                "weight": explanation.weight,
                "fraud_locked": explanation.fraud_locked,
            }
        )
    return sorted(rows, key=lambda r: (r["uid"] is None, r["uid"] or 0, r["hotkey"]))


def _scores_table(vector: WeightVector) -> Table:
    table = Table(title=f"scores at {vector.result.now.isoformat(timespec='seconds')}")
    for column in (
        "uid",
        "hotkey",
        "availability",
        "challenge TFLOP/s",
        "C share",
        "lease revenue",
        "L share",
        "score",
        "weight",
    ):
        table.add_column(column, justify="left" if column == "hotkey" else "right")
    for row in _miner_rows(vector):
        hotkey = row["hotkey"]
        table.add_row(
            "-" if row["uid"] is None else str(row["uid"]),
            hotkey[:8] + "…" + hotkey[-4:] + (" [red]fraud[/]" if row["fraud_locked"] else ""),
            f"{row['availability']:.4f}",
            f"{row['challenge_raw_flops'] / TERA:.4f}",
            f"{row['challenge_share']:.4f}",
            f"{row['lease_revenue']:.4f}",
            f"{row['lease_share']:.4f}",
            f"{row['score']:.6f}",
            f"{row['weight']:.6f}",
        )
    return table


@app.command()
def scores(
    config: ConfigOption = None,
    explain: Annotated[
        int | None, typer.Option("--explain", metavar="UID", help="every number behind one uid")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Every registered miner's score and weight, computed now from the database."""
    cfg = load_or_exit(ValidatorConfig, config)
    workers: list[Any] = []

    async def compute() -> WeightVector:
        from neurons.validator.daemon import utc_now

        store = await _open_store(cfg, auto_upgrade=False)
        try:
            vector: WeightVector = await _setter(cfg, store).compute()
            if explain is not None:
                workers.extend(await store.workers(utc_now()))
            return vector
        finally:
            await store.close()

    vector = _run(compute)
    if explain is not None:
        hotkey = next((h for h, uid in vector.inputs.uids.items() if uid == explain), None)
        if hotkey is None or hotkey not in vector.result.miners:
            raise fail(f"no registered miner has uid {explain}", code=EXIT_CONFIG)
        explanation = vector.result.explain(hotkey)
        notes = _device_notes(cfg, [w for w in workers if w.miner_hotkey == hotkey])
        if as_json:
            payload = {"uid": explain, **explanation.to_dict(), "devices": notes}
            typer.echo(json.dumps(payload, indent=2))
        else:
            typer.echo(f"uid {explain}")
            typer.echo(format_explanation(explanation))
            if notes:
                typer.echo("devices:")
                for worker_id, per_gpu in notes.items():
                    for uuid, note in per_gpu.items():
                        typer.echo(f"  {worker_id[:16]} {uuid}: {note}")
        return
    if as_json:
        payload = {
            "now": vector.result.now.isoformat(),
            "reason": vector.reason,
            "miners": _miner_rows(vector),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    out.print(_scores_table(vector))
    if vector.reason:
        err.print(vector.reason, highlight=False)


def _device_notes(cfg: ValidatorConfig, workers: list[Any]) -> dict[str, dict[str, str]]:
    """worker -> GPU -> why it is left out of epochs (or sized as unknown)."""
    from byteleap.sessions.round_planner import device_notes

    out: dict[str, dict[str, str]] = {}
    for worker in workers:
        notes = device_notes(worker, cpu_workers=cfg.challenge.cpu_workers)
        if notes:
            out[worker.worker_pubkey] = notes
    return out


# --------------------------------------------------------------------------- weights


@app.command()
def weights(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="compute and print, never touch the chain's state")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """The weight vector the validator would set now, from the database and the metagraph."""
    if not dry_run:
        raise fail(
            "only --dry-run is available here: the running validator sets weights itself",
            code=EXIT_CONFIG,
        )
    from neurons.chain import open_chain

    cfg = load_or_exit(ValidatorConfig, config)
    wallet = _wallet(cfg)

    async def compute() -> tuple[WeightVector, int]:
        chain = await open_chain(wallet, network=cfg.chain.network, netuid=cfg.chain.netuid)
        try:
            view = await chain.metagraph()
        finally:
            await chain.close()
        store = await _open_store(cfg, auto_upgrade=False)
        try:
            uids = {n.hotkey: n.uid for n in view.neurons}
            vector: WeightVector = await _setter(cfg, store).compute(uids=uids)
            return vector, view.block
        finally:
            await store.close()

    vector, block = _run(compute)
    import byteleap

    if as_json:
        payload = {
            "block": block,
            "version_key": byteleap.version_key(),
            "uids": list(vector.by_uid),
            "weights": list(vector.by_uid.values()),
            "reason": vector.reason,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    if not vector.by_uid:
        err.print(vector.reason or "no weights", highlight=False)
        out.print(f"nothing would be set (metagraph block {block})")
        return
    hotkeys = {uid: hotkey for hotkey, uid in vector.inputs.uids.items()}
    table = Table(title=f"weights that would be set (metagraph block {block}, dry run)")
    for column in ("uid", "hotkey", "weight"):
        table.add_column(column, justify="left" if column == "hotkey" else "right")
    for uid, weight in vector.by_uid.items():
        table.add_row(str(uid), hotkeys.get(uid, "?"), f"{weight:.6f}")
    out.print(table)


# --------------------------------------------------------------------------- renters


@renters_app.command("add")
def renters_add(
    name: Annotated[str, typer.Argument(help="the renter's name (unique)")],
    config: ConfigOption = None,
    limit: Annotated[
        float | None,
        typer.Option("--limit", min=0.0, help="most the renter may book in total (price unit)"),
    ] = None,
) -> None:
    """Add a renter and print its API key. The key is shown this once: only its hash is kept."""
    from neurons.validator.daemon import utc_now
    from neurons.validator.renter import hash_key, new_key

    if not 1 <= len(name) <= 128 or not name.isprintable():
        raise fail("a renter name is 1 to 128 printable characters", code=EXIT_CONFIG)
    cfg = load_or_exit(ValidatorConfig, config)
    key = new_key()

    async def add() -> None:
        # no migration here: stdout carries the key and nothing else
        store = await _open_store(cfg, auto_upgrade=False)
        try:
            await store.leases.add_renter(name, hash_key(key), spend_limit=limit, now=utc_now())
        finally:
            await store.close()

    try:
        _run(add)
    except ValueError as exc:
        raise fail(str(exc), code=EXIT_CONFIG) from None
    err.print(
        f"renter {name!r} added"
        + (f" with a spending limit of {limit:g}" if limit is not None else " without a limit")
        + "; give it this API key (it is not shown again):",
        highlight=False,
    )
    typer.echo(key)


@renters_app.command("list")
def renters_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Every renter: limit, amount booked, running leases, and whether its key is revoked."""
    cfg = load_or_exit(ValidatorConfig, config)

    async def read() -> list[Any]:
        store = await _open_store(cfg, auto_upgrade=False)
        try:
            return list(await store.leases.renters())
        finally:
            await store.close()

    summaries = _run(read)
    rows = [
        {
            "name": s.renter.name,
            "spend_limit": s.renter.spend_limit,
            "spent": round(s.spent, 6),
            "active_leases": s.active_leases,
            "created_at": s.renter.created_at.isoformat(timespec="seconds"),
            "revoked_at": (
                None if s.renter.revoked_at is None
                else s.renter.revoked_at.isoformat(timespec="seconds")
            ),
        }
        for s in summaries
    ]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="renters")
    for column in ("name", "limit", "booked", "active leases", "created", "key"):
        table.add_column(column, justify="left" if column in ("name", "key") else "right")
    for row in rows:
        table.add_row(
            row["name"],
            "-" if row["spend_limit"] is None else f"{row['spend_limit']:g}",
            f"{row['spent']:.4f}",
            str(row["active_leases"]),
            row["created_at"],
            "[red]revoked[/]" if row["revoked_at"] else "[green]active[/]",
        )
    out.print(table)


@renters_app.command("revoke")
def renters_revoke(
    name: Annotated[str, typer.Argument(help="the renter whose key stops working")],
    config: ConfigOption = None,
) -> None:
    """Revoke a renter's API key at once (its leases run on until they end)."""
    from neurons.validator.daemon import utc_now

    cfg = load_or_exit(ValidatorConfig, config)

    async def revoke() -> bool:
        store = await _open_store(cfg, auto_upgrade=False)
        try:
            return await store.leases.revoke_renter(name, utc_now())
        finally:
            await store.close()

    if not _run(revoke):
        raise fail(f"no renter named {name!r}", code=EXIT_CONFIG)
    err.print(f"the API key of {name!r} is revoked", highlight=False)


def main() -> None:
    app()
