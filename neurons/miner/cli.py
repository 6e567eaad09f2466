"""``byteleap-miner``: the miner daemon's command line."""

from __future__ import annotations

import typer

from byteleap.cli_support import add_check_config
from byteleap.config import MinerConfig

app = typer.Typer(
    name="byteleap-miner",
    help="ByteLeap miner: aggregates workers and serves validators.",
    no_args_is_help=True,
    add_completion=False,
)
add_check_config(app, MinerConfig, "miner")


@app.callback()
def _root() -> None:
    """ByteLeap miner: aggregates workers and serves validators."""


def main() -> None:
    app()
