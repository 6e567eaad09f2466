"""``byteleap-validator``: the validator daemon's command line."""

from __future__ import annotations

import typer

from byteleap.cli_support import add_check_config
from byteleap.config import ValidatorConfig

app = typer.Typer(
    name="byteleap-validator",
    help="ByteLeap validator: challenges workers, rents capacity, sets weights.",
    no_args_is_help=True,
    add_completion=False,
)
add_check_config(app, ValidatorConfig, "validator")


@app.callback()
def _root() -> None:
    """ByteLeap validator: challenges workers, rents capacity, sets weights."""


def main() -> None:
    app()
