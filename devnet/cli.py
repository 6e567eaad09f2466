"""``byteleap``: the umbrella command (``devnet``, ``challenge reference``, ``version``).

It lives in the devnet package because ``byteleap devnet`` starts every daemon, while no daemon
package may import the devnet (import-linter). Its other subcommands need only the pure core."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

import byteleap
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import run_reference
from devnet.cheat_modes import CheatMode

app = typer.Typer(
    name="byteleap",
    help="ByteLeap, Bittensor subnet 128: a decentralized GPU cloud.",
    no_args_is_help=True,
    add_completion=False,
)
challenge_app = typer.Typer(help="Compute-challenge tools for operators.", no_args_is_help=True)
app.add_typer(challenge_app, name="challenge")

err = Console(stderr=True)


@app.command()
def version() -> None:
    """Print the package version and the weights version key it sets on chain."""
    typer.echo(f"byteleap {byteleap.__version__} (weights version_key {byteleap.version_key()})")


@app.command()
def devnet(
    miners: Annotated[int, typer.Option(min=1, help="honest miners")] = 3,
    workers: Annotated[int, typer.Option(min=1, help="workers per miner (cheaters too)")] = 2,
    cheaters: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="cheating miners in the fraud modes; cheater i cheats in mode i mod 4: "
            "fake_rows, skipped_stages, copied_roots, phantom_gpu; default 2, or 0 when --cheat "
            "is given",
            show_default=False,
        ),
    ] = None,
    cheat: Annotated[
        list[CheatMode] | None,
        typer.Option(
            "--cheat",
            help="add one cheating miner in this mode (repeatable; sybil adds two miners whose "
            "three workers claim four devices on one shared device; receipt_mint also starts a "
            "colluding validator)",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    validators: Annotated[
        int,
        typer.Option(
            min=1,
            help="validators (at most 4) with stakes 10000, 5000, 2500, 1250, each with its own "
            "database, judging the same miners; the renters rent through the first; from 2 on, "
            "their weight vectors must agree (cosine >= 0.95)",
        ),
    ] = 1,
    rounds: Annotated[
        int, typer.Option(min=1, help="stop once every honest worker has this many challenges")
    ] = 3,
    renters: Annotated[
        int,
        typer.Option(
            min=0,
            help="simulated renters: after the rounds, each leases 1 GPU of an honest worker, "
            "runs a job on it and ends the lease, so lease revenue shows in the weights; 0: none",
        ),
    ] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="print only the final state as JSON on stdout")
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the run directory (configs, logs, databases)")
    ] = False,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="run in this (new or empty) directory instead of a temporary one; kept"),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            envvar="BYTELEAP_DEVNET_DATABASE_URL",
            help="the validator's database, e.g. postgresql+asyncpg://user@host/db (use an "
            "empty one); default SQLite in the run directory",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=10, help="give up after this many seconds")] = 300.0,
) -> None:
    """Run a whole local network (devchain, validator, honest and cheating miners and workers)
    on this machine's CPU, watch it judge every miner, and print the weights it sets.

    Exits 0 when every cheater is judged as its mode requires (weight 0; a sybil or phantom_busy
    miner no more than an honest miner's weight per device; a receipt_mint miner's lease share no
    more than its colluder's stake share), the honest miners are paid and the validators agree,
    1 when the network did not run or judged wrongly, 130 when interrupted."""
    from devnet.command import run_command
    from devnet.specs import DevnetOptions

    cheats = tuple(cheat or ())
    try:
        options = DevnetOptions(
            miners=miners,
            workers=workers,
            cheaters=cheaters if cheaters is not None else (0 if cheats else 2),
            rounds=rounds,
            database_url=database_url,
            renters=renters,
            cheats=cheats,
            validators=validators,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    code = run_command(
        options,
        as_json=as_json,
        keep=keep,
        run_dir=run_dir,
        timeout_s=timeout,
        # a table piped to a file keeps its columns instead of wrapping at 80
        out=Console() if sys.stdout.isatty() else Console(width=180),
        err=err,
    )
    raise typer.Exit(code=code)


def _hex32(value: str, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise typer.BadParameter(f"{name} must be hexadecimal") from None
    if len(raw) != 32:
        raise typer.BadParameter(f"{name} must be 32 bytes (64 hex digits), got {len(raw)}")
    return raw


@challenge_app.command("reference")
def challenge_reference(
    seed: Annotated[str, typer.Option(help="the challenge seed, 32 bytes in hex")],
    miner_hotkey: Annotated[str, typer.Option(help="the miner's hotkey (ss58)")],
    worker_pubkey: Annotated[str, typer.Option(help="the worker's ed25519 public key in hex")],
    gpu_uuid: Annotated[str, typer.Option(help="the GPU UUID as NVML prints it")],
    m: Annotated[int, typer.Option("--m", help="output rows (power of two)")] = 256,
    n: Annotated[int, typer.Option("--n", help="output columns")] = 256,
    k: Annotated[int, typer.Option("--k", help="inner dimension")] = 256,
    v: Annotated[int, typer.Option("--v", help="entries lie in [-v, v]")] = 15,
    stages: Annotated[int, typer.Option("--stages", help="chained stages R")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Compute a challenge's roots with the NumPy reference.

    Use it to settle a dispute: the roots it prints are what an honest worker must commit."""
    seed_bytes = _hex32(seed, "--seed")
    pubkey = _hex32(worker_pubkey, "--worker-pubkey")
    try:
        params = ChallengeParams(m=m, n=n, k=k, v=v, stages=stages)
        binding = Binding(miner_hotkey=miner_hotkey, worker_pubkey=pubkey, gpu_uuid=gpu_uuid)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise typer.BadParameter(problems) from None
    started = time.perf_counter()
    run = run_reference(binding, seed_bytes, params, clock=time.perf_counter)
    roots = [root.hex() for root in run.roots]
    if as_json:
        typer.echo(json.dumps({"roots": roots}))
        return
    for stage, root in enumerate(roots):
        typer.echo(f"stage {stage:>4}  {root}  ({run.stage_seconds[stage] * 1e3:.1f} ms)")
    elapsed = time.perf_counter() - started
    err.print(f"{params.flops / elapsed / 1e9:.2f} GFLOP/s over {elapsed:.2f} s (NumPy reference)")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
