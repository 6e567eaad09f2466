"""``byteleap``: the umbrella command (``devnet``, ``challenge reference``, ``version``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

import byteleap
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import run_reference

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


DEVNET_PLAN = """\
byteleap devnet: a whole ByteLeap network on this machine, on CPU and SQLite.

It starts a local stand-in for the chain (the devchain), one validator, several
miners with NumPy workers each, and miners whose workers cheat in different ways
(fake rows, skipped stages, copied roots, GPUs that never compute). Every process
runs through its real command line and talks over 127.0.0.1. You watch the rounds
live: challenges, verdicts, scores and the weights the validator sets; cheaters
end with weight 0.

The worker and the miner are ready (docs/running-a-worker.md, docs/running-a-miner.md);
the validator it needs is still being built (see the project's open issues), so this
build of devnet stops here. Today you can already check any challenge's roots:

    byteleap challenge reference --seed <64 hex> --miner-hotkey <ss58> \\
        --worker-pubkey <64 hex> --gpu-uuid GPU-... --json
"""


@app.command()
def devnet(
    miners: Annotated[int, typer.Option(min=1, help="honest miners")] = 3,
    workers: Annotated[int, typer.Option(min=1, help="workers per miner")] = 2,
    cheaters: Annotated[int, typer.Option(min=0, help="cheating miners")] = 2,
    rounds: Annotated[int, typer.Option(min=1, help="challenge rounds before it stops")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="print the final state as JSON")] = False,
) -> None:
    """Run a complete local network (validator, miners, workers, devchain) on CPU and SQLite."""
    typer.echo(DEVNET_PLAN)
    typer.echo(
        f"(requested: {miners} honest miners x {workers} workers, {cheaters} cheaters, "
        f"{rounds} rounds{', JSON output' if as_json else ''})"
    )


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
