"""Configuration of ``byteleap-validator``: its storage, its miners, its paths and the whole
:class:`ValidatorConfig` (challenges and scoring: :mod:`byteleap.config.challenge`; leasing:
:mod:`byteleap.config.leasing`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, Union

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from byteleap.config._base import (
    ExpandedPath,
    ListenPort,
    Seconds,
    Section,
    check_database_url,
    fill_default,
    mask_url_password,
    url_password,
)
from byteleap.config.challenge import ChallengeSection, ScoringSection
from byteleap.config.common import (
    ChainSection,
    LoggingSection,
    MetricsSection,
    WalletSection,
    cross_check,
)
from byteleap.config.leasing import LeasesSection, RenterApiSection
from byteleap.config.secrets import FileReader, Secret, inline_allowed
from byteleap.errors import ConfigError
from byteleap.protocol.common import MAX_GPUS, MAX_WORKERS, inventory_max_bytes

if TYPE_CHECKING:
    pass


def _url_kind(value: Any) -> str:
    return "secret" if isinstance(value, Mapping | Secret) else "plain"


#: a database URL written out, or a secret that holds one (because it may carry a password)
DatabaseUrl = Annotated[
    Union[  # noqa: UP007 - tagged members need the Union spelling
        Annotated[str, AfterValidator(check_database_url), Tag("plain")],
        Annotated[Secret, Tag("secret")],
    ],
    Discriminator(_url_kind),
]


class DatabaseSection(Section):
    """Where the validator stores its observations."""

    url: DatabaseUrl | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+asyncpg://byteleap@db/byteleap; a URL with "
        "a password must be a secret ({env: ...} or {file: ...}); default "
        "sqlite+aiosqlite:///<paths.data_dir>/validator.db",
    )
    auto_upgrade: bool = Field(
        default=True,
        description="apply pending Alembic migrations at start-up; when false, run "
        "'byteleap-validator db upgrade' yourself",
    )
    pool_size: int = Field(default=10, ge=1, le=1000, description="connection pool size")
    retention_days: int = Field(
        default=14,
        ge=1,
        description="challenges, receipts and weight submissions older than this are pruned",
    )
    availability_retention_hours: int = Field(
        default=169,
        ge=169,
        description="availability buckets older than this are pruned (at least 169 hours)",
    )

    @field_validator("url", mode="after")
    @classmethod
    def _no_plain_password(cls, value: str | Secret | None, info: ValidationInfo) -> Any:
        if isinstance(value, str) and url_password(value) and not inline_allowed(info):
            raise ValueError(
                "this URL carries a password; give the whole URL as a secret instead, e.g. "
                "url: {env: BYTELEAP_DATABASE_URL} or {file: /run/secrets/database_url}"
            )
        return value

    @field_serializer("url", mode="wrap")
    def _mask(self, value: Any, handler: SerializerFunctionWrapHandler) -> Any:
        return mask_url_password(value) if isinstance(value, str) else handler(value)

    def resolve_url(
        self, env: Mapping[str, str] | None = None, *, read_file: FileReader | None = None
    ) -> str:
        """The database URL, reading the secret if it is one."""
        if isinstance(self.url, Secret):
            url = self.url.resolve(env, read_file=read_file).strip()
            try:
                return check_database_url(url)
            except ValueError:
                raise ConfigError(
                    f"the secret from {self.url.source} does not hold an SQLAlchemy URL "
                    "(e.g. postgresql+asyncpg://user:password@host/db)",
                    key="database.url",
                ) from None
        assert self.url is not None, "database.url is filled in by ValidatorConfig"
        return self.url

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_url_password(value) if isinstance(value, str) else value


class MinersSection(Section):
    """How the validator polls miners for inventory, receipts and availability."""

    poll_interval_s: Seconds = Field(
        default=60.0,
        description="seconds between inventory polls of each miner; at most one bucket long",
    )
    request_timeout_s: Seconds = Field(
        default=10.0, description="seconds to wait for one miner request"
    )
    max_concurrency: int = Field(
        default=32, ge=1, le=10_000, description="miner requests in flight at once"
    )
    max_workers: int = Field(
        default=MAX_WORKERS,
        ge=1,
        le=MAX_WORKERS,
        description="most workers one miner's inventory may list; a larger one is refused whole",
    )
    max_gpus_per_worker: int = Field(
        default=MAX_GPUS,
        ge=1,
        le=MAX_GPUS,
        description="most GPUs one listed worker may report; a miner listing more is refused whole",
    )

    @property
    def max_inventory_bytes(self) -> int:
        """The largest inventory body read from a miner at these limits."""
        return inventory_max_bytes(self.max_workers, self.max_gpus_per_worker)


class ValidatorPaths(Section):
    """Where the validator keeps its state."""

    data_dir: ExpandedPath = Field(
        default=Path("~/.byteleap/validator"),
        description="directory for the default SQLite database and other state",
    )


class ValidatorMetricsSection(MetricsSection):
    """The Prometheus metrics endpoint (``http://host:port/metrics``)."""

    port: ListenPort = Field(default=9103, description="port of the metrics endpoint")


class ValidatorConfig(Section):
    """Everything ``byteleap-validator`` reads from its config file."""

    ENV_DEFAULTS: ClassVar[Mapping[str, str]] = {
        "chain.network": "BT_NETWORK",
        "wallet.name": "BT_WALLET_NAME",
        "wallet.hotkey": "BT_WALLET_HOTKEY",
        "wallet.path": "BT_WALLET_PATH",
    }

    wallet: WalletSection = Field(default_factory=WalletSection, description="validator hotkey")
    chain: ChainSection = Field(default_factory=ChainSection, description="chain and subnet")
    database: DatabaseSection = Field(default_factory=DatabaseSection, description="storage")
    challenge: ChallengeSection = Field(
        default_factory=ChallengeSection, description="compute challenges"
    )
    scoring: ScoringSection = Field(default_factory=ScoringSection, description="scores, weights")
    miners: MinersSection = Field(default_factory=MinersSection, description="miner polling")
    leases: LeasesSection = Field(default_factory=LeasesSection, description="leases")
    api: RenterApiSection = Field(default_factory=RenterApiSection, description="renter API")
    paths: ValidatorPaths = Field(default_factory=ValidatorPaths, description="local state")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="logging")
    metrics: ValidatorMetricsSection = Field(
        default_factory=ValidatorMetricsSection, description="metrics"
    )

    @model_validator(mode="after")
    def _cross_sections(self) -> Self:
        scoring, database = self.scoring, self.database
        cross_check(
            database.availability_retention_hours >= scoring.availability_hours,
            f"database.availability_retention_hours ({database.availability_retention_hours}) "
            f"must cover scoring.availability_hours ({scoring.availability_hours})",
        )
        leases = self.leases
        cross_check(
            leases.max_duration_hours + leases.verified_within_hours <= scoring.lease_window_hours,
            f"leases.max_duration_hours ({leases.max_duration_hours}) + "
            f"leases.verified_within_hours ({leases.verified_within_hours}) must not exceed "
            f"scoring.lease_window_hours ({scoring.lease_window_hours}): a leased GPU is not "
            "challenged, and its receipts earn only while its last verification is inside the "
            "lease window, so a longer lease would stop earning before it ends",
        )
        longest = max(scoring.challenge_window_hours, scoring.lease_window_hours)
        cross_check(
            database.retention_days * 24 >= longest,
            f"database.retention_days ({database.retention_days}) must cover the longest "
            f"scoring window ({longest} hours)",
        )
        cross_check(
            self.miners.poll_interval_s <= scoring.bucket_minutes * 60,
            f"miners.poll_interval_s ({self.miners.poll_interval_s:g}) must not exceed one "
            f"availability bucket (scoring.bucket_minutes = {scoring.bucket_minutes}), or "
            "online workers would miss buckets",
        )
        if database.url is None:
            path = (self.paths.data_dir / "validator.db").as_posix()
            url = f"sqlite+aiosqlite:///{path}"
            fill_default(self, "database", url=url)
        return self


__all__ = [
    "ChallengeSection",
    "DatabaseSection",
    "DatabaseUrl",
    "LeasesSection",
    "MinersSection",
    "RenterApiSection",
    "ScoringSection",
    "ValidatorConfig",
    "ValidatorMetricsSection",
    "ValidatorPaths",
]
