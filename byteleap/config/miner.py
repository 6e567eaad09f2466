"""Configuration of ``byteleap-miner``: the gateway between a miner's workers and validators."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, model_validator

from byteleap.config._base import (
    MIB,
    ByteLimit,
    ExpandedPath,
    HexPublicKey,
    Host,
    IpAddress,
    ListenPort,
    Port,
    Seconds,
    Section,
    Ss58Address,
    UrlPath,
    fill_default,
)
from byteleap.config.common import (
    ChainSection,
    LoggingSection,
    MetricsSection,
    WalletSection,
    cross_check,
)
from byteleap.config.secrets import Secret


class WorkerServerSection(Section):
    """The websocket server the miner's workers connect to."""

    host: Host = Field(default="0.0.0.0", description="interface to listen on for workers")  # noqa: S104
    port: ListenPort = Field(default=8091, description="port to listen on for workers")
    path: UrlPath = Field(default="/worker", description="URL path of the websocket endpoint")
    tls_cert_file: ExpandedPath | None = Field(
        default=None, description="PEM certificate chain; set with tls_key_file to serve wss://"
    )
    tls_key_file: ExpandedPath | None = Field(
        default=None, description="PEM private key of tls_cert_file"
    )
    authorized_keys_file: ExpandedPath | None = Field(
        default=None,
        description="file of authorized worker public keys (hex, one per line); keys pinned "
        "through join tokens are appended to it; default <paths.data_dir>/authorized_workers",
    )
    authorized_keys: list[HexPublicKey] = Field(
        default_factory=list,
        description="worker ed25519 public keys (64 hex characters) always allowed, in "
        "addition to the file",
    )
    join_tokens: Secret | None = Field(
        default=None,
        description="one-time join tokens, one per line; a secret. A worker presenting one has "
        "its key pinned, and the token is spent",
    )
    max_workers: int = Field(default=256, ge=1, le=100_000, description="connected workers cap")
    max_message_bytes: ByteLimit = Field(
        default=16 * MIB, description="largest message accepted from a worker, in bytes"
    )
    messages_per_second: float = Field(
        default=50.0, gt=0, description="sustained message rate allowed per worker"
    )
    message_burst: int = Field(
        default=100, ge=1, description="messages a worker may send in a burst above the rate"
    )
    handshake_timeout_s: Seconds = Field(
        default=10.0, description="seconds a new connection has to authenticate"
    )
    heartbeat_timeout_s: Seconds = Field(
        default=30.0, description="a worker silent for this long is dropped"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        cross_check(
            (self.tls_cert_file is None) == (self.tls_key_file is None),
            "workers.tls_cert_file and workers.tls_key_file must be set together",
        )
        return self


class MinerApiSection(Section):
    """The HTTP API validators call (btauth/1-signed requests)."""

    host: Host = Field(default="0.0.0.0", description="interface to listen on for validators")  # noqa: S104
    port: ListenPort = Field(default=8092, description="port to listen on for validators")
    external_ip: IpAddress | None = Field(
        default=None,
        description="public IP published on chain; default: detected at start-up",
    )
    external_port: Port | None = Field(
        default=None, description="public port published on chain; default api.port"
    )
    min_validator_stake: float = Field(
        default=1000.0,
        ge=0,
        description="stake a hotkey with a validator permit needs before the miner answers it",
    )
    allowed_validators: list[Ss58Address] = Field(
        default_factory=list,
        description="validator hotkeys (ss58) answered in addition to the permitted ones",
    )
    request_timeout_s: Seconds = Field(
        default=30.0, description="seconds to answer one validator request"
    )
    max_body_bytes: ByteLimit = Field(
        default=16 * MIB, description="largest request body accepted, in bytes"
    )


class MinerLeasesSection(Section):
    """Leases the miner routes and the usage receipts it countersigns (SPEC 5.2, 6)."""

    database_file: ExpandedPath | None = Field(
        default=None,
        description="SQLite file of leases and countersigned receipts; default "
        "<paths.data_dir>/miner.sqlite3",
    )
    receipt_retention_days: int = Field(
        default=30,
        ge=8,
        le=3650,
        description="countersigned receipts are kept this many days (validators count 7)",
    )
    receipt_clock_skew_s: int = Field(
        default=120,
        ge=0,
        le=3600,
        description="seconds of clock difference tolerated between a receipt's period and "
        "this miner's record of the lease",
    )


class MinerPaths(Section):
    """Where the miner keeps its state."""

    data_dir: ExpandedPath = Field(
        default=Path("~/.byteleap/miner"),
        description="directory for authorized worker keys, spent join tokens and the lease "
        "database",
    )


class MinerMetrics(MetricsSection):
    """The Prometheus metrics endpoint (``http://host:port/metrics``)."""

    port: ListenPort = Field(default=9102, description="port of the metrics endpoint")


class MinerConfig(Section):
    """Everything ``byteleap-miner`` reads from its config file."""

    ENV_DEFAULTS: ClassVar[Mapping[str, str]] = {
        "chain.network": "BT_NETWORK",
        "wallet.name": "BT_WALLET_NAME",
        "wallet.hotkey": "BT_WALLET_HOTKEY",
        "wallet.path": "BT_WALLET_PATH",
    }

    wallet: WalletSection = Field(default_factory=WalletSection, description="miner hotkey")
    chain: ChainSection = Field(default_factory=ChainSection, description="chain and subnet")
    workers: WorkerServerSection = Field(
        default_factory=WorkerServerSection, description="server for workers"
    )
    api: MinerApiSection = Field(
        default_factory=MinerApiSection, description="server for validators"
    )
    leases: MinerLeasesSection = Field(
        default_factory=MinerLeasesSection, description="leases and receipts"
    )
    paths: MinerPaths = Field(default_factory=MinerPaths, description="local state")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="logging")
    metrics: MinerMetrics = Field(default_factory=MinerMetrics, description="metrics")

    @model_validator(mode="after")
    def _derived_defaults(self) -> Self:
        if self.workers.authorized_keys_file is None:
            keys_file = self.paths.data_dir / "authorized_workers"
            fill_default(self, "workers", authorized_keys_file=keys_file)
        if self.leases.database_file is None:
            fill_default(self, "leases", database_file=self.paths.data_dir / "miner.sqlite3")
        return self

    @property
    def database_file(self) -> Path:
        """The lease and receipt database (always set after validation)."""
        assert self.leases.database_file is not None
        return self.leases.database_file


__all__ = [
    "MinerApiSection",
    "MinerConfig",
    "MinerLeasesSection",
    "MinerMetrics",
    "MinerPaths",
    "WorkerServerSection",
]
