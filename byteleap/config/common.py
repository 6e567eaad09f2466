"""Sections that more than one process uses: logging, metrics, wallet and chain."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from byteleap.config._base import (
    ExpandedPath,
    Host,
    ListenPort,
    LogLevel,
    Seconds,
    Section,
    WalletName,
)


class LoggingSection(Section):
    """How the process logs."""

    level: LogLevel = Field(
        default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (case-insensitive)"
    )
    format: Literal["text", "json"] = Field(
        default="text", description="'text' for humans, 'json' for one JSON object per line"
    )


class MetricsSection(Section):
    """The Prometheus metrics endpoint (``http://host:port/metrics``)."""

    enabled: bool = Field(default=True, description="serve Prometheus metrics")
    host: Host = Field(default="127.0.0.1", description="interface the metrics endpoint binds to")
    port: ListenPort = Field(default=9100, description="port of the metrics endpoint")


class WalletSection(Section):
    """The bittensor wallet whose hotkey identifies this neuron (bittensor's conventions)."""

    name: WalletName = Field(
        default="default", description="wallet (coldkey) name; default $BT_WALLET_NAME"
    )
    hotkey: WalletName = Field(
        default="default", description="hotkey name inside the wallet; default $BT_WALLET_HOTKEY"
    )
    path: ExpandedPath = Field(
        default=Path("~/.bittensor/wallets"),
        description="directory that holds the wallets; default $BT_WALLET_PATH",
    )


class ChainSection(Section):
    """Which chain and subnet to use, and how often to re-read the metagraph."""

    network: str = Field(
        default="finney",
        min_length=1,
        max_length=2048,
        description="network name (finney, test, local) or a ws:// / wss:// chain endpoint; "
        "default $BT_NETWORK, else finney",
    )
    netuid: int = Field(default=128, ge=0, le=65_535, description="subnet uid")
    sync_interval_s: Seconds = Field(
        default=120.0, description="seconds between metagraph refreshes"
    )


def cross_check(condition: bool, message: str) -> None:
    """Raise the ``ValueError`` pydantic turns into a validation error when ``condition`` fails."""
    if not condition:
        raise ValueError(message)


__all__ = [
    "ChainSection",
    "LoggingSection",
    "MetricsSection",
    "WalletSection",
    "cross_check",
]
