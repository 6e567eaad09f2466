"""Configuration of ``byteleap-validator``: challenges, scoring, storage, leases and weights."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from byteleap.challenge.params import (
    CPU_DEFAULT,
    DEFAULT_SAMPLING,
    GPU_DEFAULT,
    ChallengeParams,
    SamplingParams,
)
from byteleap.config._base import (
    MIB,
    ByteLimit,
    ExpandedPath,
    Host,
    ListenPort,
    Seconds,
    Section,
    check_database_url,
    fill_default,
    mask_url_password,
    url_password,
)
from byteleap.config.common import (
    ChainSection,
    LoggingSection,
    MetricsSection,
    WalletSection,
    cross_check,
)
from byteleap.config.secrets import FileReader, Secret, inline_allowed
from byteleap.errors import ConfigError

if TYPE_CHECKING:
    from byteleap.scoring.params import ScoringParams


def _over_default(default: BaseModel) -> Callable[[Any], Any]:
    """A before-validator that reads a partial mapping as changes to ``default``.

    So ``challenge.gpu: {stages: 32}`` (or ``BYTELEAP_CHALLENGE__GPU__STAGES=32``) keeps the
    other GPU defaults instead of demanding every field.
    """

    def merge(value: Any) -> Any:
        if value is None:
            return default
        if isinstance(value, Mapping):
            return {**default.model_dump(), **value}
        return value

    return merge


GpuParams = Annotated[ChallengeParams, BeforeValidator(_over_default(GPU_DEFAULT))]
CpuParams = Annotated[ChallengeParams, BeforeValidator(_over_default(CPU_DEFAULT))]
Sampling = Annotated[SamplingParams, BeforeValidator(_over_default(DEFAULT_SAMPLING))]


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


class ChallengeSection(Section):
    """How often and how hard workers are challenged (SPEC 4)."""

    interval_s: Seconds = Field(
        default=600.0, description="seconds between two challenges of the same idle worker"
    )
    jitter: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="a worker falls due a random 0 to jitter x interval_s later than interval_s "
        "(a new worker: that long after it is first seen), so challenges spread out",
    )
    plan_interval_s: Seconds = Field(
        default=5.0, description="seconds between two looks for workers that are due"
    )
    target_seconds: Seconds = Field(
        default=1.5,
        description="compute time a challenge should take on the GPU the worker claims; the "
        "number of stages is sized to it",
    )
    expected_peak_fraction: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of the claimed GPU's dense TF32 peak a challenge is sized to reach "
        "in target_seconds (stages = fraction x peak x target_seconds / FLOP per stage)",
    )
    cpu_expected_flops: float = Field(
        default=2e9,
        gt=0.0,
        le=1e15,
        description="FLOP/s assumed for a CPU device when its deadline is set (CPU challenges "
        "use challenge.cpu as given, not sized)",
    )
    deadline_factor: float = Field(
        default=3.0,
        ge=1.0,
        description="a commit is late after deadline_factor x expected compute time + "
        "deadline_grace_s",
    )
    deadline_grace_s: Seconds = Field(
        default=10.0, description="fixed allowance for the link and set-up in the deadline"
    )
    reveal_timeout_s: Seconds = Field(
        default=30.0, description="seconds a worker has to answer the reveal request"
    )
    max_concurrency: int = Field(
        default=16, ge=1, le=10_000, description="challenges in flight at once"
    )
    verifier_processes: int = Field(
        default=2,
        ge=1,
        le=256,
        description="processes that verify revealed rows, so verification never blocks the "
        "event loop",
    )
    excused_warning_rate: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="a miner whose recent challenges are excused more often than this is "
        "logged as a warning (excuses are the miner's own claims)",
    )
    impossible_throughput_factor: float = Field(
        default=1.1,
        gt=1.0,
        description="throughput above this multiple of the claimed GPU's dense peak is fraud",
    )
    gpu: GpuParams = Field(
        default=GPU_DEFAULT,
        description="matrix shape for GPU workers; stages is recomputed from target_seconds",
    )
    cpu: CpuParams = Field(
        default=CPU_DEFAULT, description="matrix shape for CPU-only workers (devnet)"
    )
    sampling: Sampling = Field(
        default=DEFAULT_SAMPLING,
        description="how much of each commitment is opened: r stages, s rows, e columns",
    )

    @model_validator(mode="after")
    def _sampling_fits(self) -> Self:
        rows = min(self.gpu.m, self.cpu.m)
        columns = min(self.gpu.n, self.cpu.n)
        cross_check(
            self.sampling.rows <= rows,
            f"challenge.sampling.rows ({self.sampling.rows}) exceeds the rows of a challenge "
            f"({rows})",
        )
        cross_check(
            self.sampling.columns <= columns,
            f"challenge.sampling.columns ({self.sampling.columns}) exceeds the columns of a "
            f"challenge ({columns})",
        )
        return self


class ScoringSection(Section):
    """How observations become weights (SPEC 5)."""

    lease_weight: float = Field(
        default=0.7, ge=0, le=1, description="share of the score from lease revenue"
    )
    challenge_weight: float = Field(
        default=0.3, ge=0, le=1, description="share of the score from proven compute"
    )
    challenge_window_hours: int = Field(
        default=24, ge=1, description="window of challenge results that counts"
    )
    lease_window_hours: int = Field(
        default=168, ge=1, description="window of lease receipts that counts"
    )
    bucket_minutes: int = Field(default=5, ge=1, le=1440, description="availability bucket length")
    availability_hours: int = Field(
        default=169, ge=1, description="availability window (169 h of 5-minute buckets = 2028)"
    )
    weights_interval_blocks: int | None = Field(
        default=None, ge=1, description="blocks between weight submissions; default the tempo"
    )
    weights_check_interval_s: Seconds = Field(
        default=12.0,
        description="seconds between looks at the current block to see whether weights are due",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        total = self.lease_weight + self.challenge_weight
        cross_check(
            math.isclose(total, 1.0, abs_tol=1e-9),
            f"scoring.lease_weight + scoring.challenge_weight must be 1, got {total:g}",
        )
        cross_check(
            (self.availability_hours * 60) % self.bucket_minutes == 0,
            f"scoring.bucket_minutes ({self.bucket_minutes}) must divide the availability "
            f"window of {self.availability_hours} hours evenly",
        )
        return self

    @property
    def availability_buckets(self) -> int:
        """Buckets in the availability window (2028 with the defaults)."""
        return self.availability_hours * 60 // self.bucket_minutes

    def to_params(self) -> ScoringParams:
        """The scorer's parameters (``byteleap.scoring.ScoringParams``) for this section."""
        from byteleap.scoring.params import ScoringParams

        return ScoringParams(
            challenge_window=timedelta(hours=self.challenge_window_hours),
            lease_window=timedelta(hours=self.lease_window_hours),
            bucket_seconds=self.bucket_minutes * 60,
            availability_horizon=timedelta(hours=self.availability_hours),
            lease_weight=self.lease_weight,
            challenge_weight=self.challenge_weight,
        )


class RenterApiSection(Section):
    """The REST API renters use (FastAPI)."""

    enabled: bool = Field(default=True, description="serve the renter API")
    host: Host = Field(
        default="127.0.0.1",
        description="interface to listen on; put a TLS reverse proxy in front for the internet",
    )
    port: ListenPort = Field(default=8093, description="port to listen on")
    max_body_bytes: ByteLimit = Field(
        default=1 * MIB, description="largest request body accepted, in bytes"
    )
    rate_limit_per_minute: int = Field(
        default=120, ge=1, le=1_000_000, description="requests per minute one API key may make"
    )
    rate_limit_burst: int = Field(
        default=30, ge=1, le=1_000_000, description="requests one API key may make at once"
    )


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


#: highest price per GPU-hour a receipt can carry (``MAX_PRICE_MICROS`` micro-units)
MAX_PRICE = 1e9
Price = Annotated[float, Field(ge=0.0, le=MAX_PRICE, allow_inf_nan=False)]
PriceFragment = Annotated[str, Field(min_length=1, max_length=128)]
#: example prices per GPU-hour, in the validator's price unit
DEFAULT_PRICES: Mapping[str, float] = {"default": 1.0, "A100": 1.5, "H100": 2.5, "H200": 3.5}


class LeasesSection(Section):
    """Leases sold to renters (SPEC 6)."""

    receipt_interval_s: Seconds = Field(
        default=3600.0, description="seconds between usage receipts of a running lease"
    )
    max_duration_hours: int = Field(
        default=720, ge=1, description="longest lease a renter may create or extend to"
    )
    verified_within_hours: int = Field(
        default=24, ge=1, description="only workers verified this recently are leased"
    )
    prices: dict[PriceFragment, Price] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="price per GPU-hour by GPU model: the longest key found in the model name "
        "(case-insensitive) wins, 'default' prices every other model",
    )
    worker_lost_after_s: Seconds = Field(
        default=600.0,
        description="a leased worker missing from its miner's polls (or whose miner cannot be "
        "reached) this long is lost: its lease ends, billed up to the last receipt",
    )

    @model_validator(mode="after")
    def _leases_consistent(self) -> Self:
        cross_check(
            "default" in self.prices,
            "leases.prices needs a 'default' entry: the price of models no other key matches",
        )
        cross_check(
            self.receipt_interval_s <= 24 * 3600,
            f"leases.receipt_interval_s ({self.receipt_interval_s:g}) must not exceed 86400: "
            "one receipt bills at most 24 hours",
        )
        return self

    def price_for(self, model: str) -> float:
        """Price per GPU-hour of ``model``: the longest ``prices`` key contained in the name
        (case-insensitive), else ``prices['default']``."""
        name = model.lower()
        for fragment in sorted(self.prices, key=len, reverse=True):
            if fragment != "default" and fragment.lower() in name:
                return self.prices[fragment]
        return self.prices["default"]

    receipt_poll_interval_s: Seconds = Field(
        default=300.0,
        description="seconds between two collections of every miner's usage receipts "
        "(GET /receipts), the input of the lease score",
    )
    min_receipt_validator_stake: float = Field(
        default=0.0,
        ge=0.0,
        description="a receipt counts only when the validator that sold it has a validator "
        "permit and at least this much stake, when it is collected and when scores are computed",
    )


class ValidatorPaths(Section):
    """Where the validator keeps its state."""

    data_dir: ExpandedPath = Field(
        default=Path("~/.byteleap/validator"),
        description="directory for the default SQLite database and other state",
    )


class ValidatorMetrics(MetricsSection):
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
    metrics: ValidatorMetrics = Field(default_factory=ValidatorMetrics, description="metrics")

    @model_validator(mode="after")
    def _cross_sections(self) -> Self:
        scoring, database = self.scoring, self.database
        cross_check(
            database.availability_retention_hours >= scoring.availability_hours,
            f"database.availability_retention_hours ({database.availability_retention_hours}) "
            f"must cover scoring.availability_hours ({scoring.availability_hours})",
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
    "ValidatorMetrics",
    "ValidatorPaths",
]
