"""The typer/rich glue every command line shares: the ``--config`` option, ``check-config``
and printing an error before exiting with a code.

It lives in the shell, not in the pure core: ``byteleap/`` imports no terminal or CLI library."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from byteleap.config import dump_yaml, load_config
from byteleap.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="BYTELEAP_CONFIG",
        help="YAML config file (BYTELEAP_CONFIG); without one, defaults plus environment",
        dir_okay=False,
    ),
]

stderr = Console(stderr=True)


def fail(message: str, *, code: int = 2, label: str = "error") -> typer.Exit:
    """Print ``message`` to stderr and return the ``typer.Exit`` to raise."""
    stderr.print(f"[bold red]{label}[/]: {message}", highlight=False)
    return typer.Exit(code=code)


def load_or_exit(model: type[T], path: Path | None) -> T:
    """Load and validate the config; on error print it (naming the key) and exit with 2."""
    try:
        return load_config(model, path)
    except ConfigError as exc:
        raise fail(exc.message, label="config error") from None


def add_check_config(app: typer.Typer, model: type[BaseModel], process: str) -> None:
    """Register ``check-config`` on ``app``: validate, then print the effective configuration
    with every secret redacted."""

    @app.command("check-config")
    def check_config(config: ConfigOption = None) -> None:
        """Validate the config file and print the effective configuration (secrets redacted)."""
        cfg = load_or_exit(model, config)
        typer.echo(dump_yaml(cfg), nl=False)
        source = str(config) if config else "defaults and environment"
        stderr.print(f"[green]{process} config OK[/] ({source})", highlight=False)
