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
from byteleap.hardware import CATALOGUE
from byteleap.protocol.common import MAX_GPUS, MAX_WORKERS, inventory_max_bytes

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
    """How often and how hard workers are challenged (SPEC 4, 4.5)."""

    interval_s: Seconds = Field(
        default=600.0,
        description="mean seconds between two challenge epochs; at each epoch every idle, "
        "challengeable GPU of every miner is challenged at once",
    )
    jitter: float = Field(
        default=0.25,
        ge=0.0,
        le=0.9,
        description="each epoch starts interval_s x a random factor in [1 - jitter, 1 + jitter] "
        "after the previous one, drawn from the operating system's CSPRNG, so no miner can "
        "predict it",
    )
    plan_interval_s: Seconds = Field(
        default=5.0, description="seconds between two looks for an epoch that is due"
    )
    epoch_spread_s: Seconds = Field(
        default=2.0,
        description="target time from the first to the last dispatch of an epoch; every "
        "deadline runs from the first dispatch, so a GPU dispatched later has less slack. A "
        "longer spread is logged (metric byteleap_validator_epoch_spread_seconds)",
    )
    target_seconds: Seconds = Field(
        default=5.0,
        description="compute time a GPU challenge should take at the claimed model's expected "
        "throughput; the number of stages is sized to it. (2 - deadline_factor) x "
        "target_seconds must exceed deadline_grace_s (one card cannot answer two claims) and "
        "(deadline_factor - 1) x target_seconds must cover epoch_spread_s",
    )
    cpu_expected_flops: float = Field(
        default=2e9,
        gt=0.0,
        le=1e15,
        description="FLOP/s expected of a CPU device before calibration (CPU challenges use "
        "challenge.cpu as given, not sized)",
    )
    cpu_workers: bool = Field(
        default=False,
        description="challenge and lease CPU devices (uuid CPU-...); for the devnet and tests "
        "only: a CPU device is never priced or shown as a GPU",
    )
    unknown_flops: float | None = Field(
        default=None,
        gt=0.0,
        le=1e16,
        description="FLOP/s a GPU of unknown model is sized at; default: the slowest model in "
        "the catalogue",
    )
    deadline_factor: float = Field(
        default=1.5,
        ge=1.0,
        le=1.5,
        description="a commit is late deadline_factor x expected seconds + the miner's round "
        "trip after the epoch's first dispatch; at most 1.5, so no card can finish two "
        "challenges of its own model before one deadline",
    )
    deadline_grace_s: Seconds = Field(
        default=0.25,
        description="most seconds of the miner's measured round trip the deadline adds (a miner "
        "controls how slowly it answers polls, so this stays small next to target_seconds)",
    )
    calibration_hours: int = Field(
        default=24,
        ge=1,
        le=24 * 14,
        description="verified throughputs of this window calibrate each model's expected "
        "throughput",
    )
    calibration_percentile: float = Field(
        default=25.0,
        gt=0.0,
        lt=100.0,
        description="the expected throughput of a model is this low percentile of the per-miner "
        "median throughputs verified for it",
    )
    calibration_min_miners: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description="miners with verified challenges of a model needed before the network's "
        "figure replaces the catalogue's",
    )
    calibration_min_samples: int = Field(
        default=12,
        ge=1,
        le=100_000,
        description="verified challenges of a model a miner needs in the window before it votes "
        "in that model's calibration",
    )
    calibration_floor: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="the calibrated throughput never falls below this share of the catalogue "
        "figure (bounds what slow sybils can do to everyone's deadlines)",
    )
    verify_utilization: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of an epoch the verifier processes may spend verifying; past it, a "
        "random subset of the reveals is verified (every reveal is still requested)",
    )
    reveal_timeout_s: Seconds = Field(
        default=30.0, description="seconds a worker has to answer the reveal request"
    )
    max_concurrency: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="reveal exchanges and verifications in flight at once (dispatch is not "
        "limited: an epoch challenges everything at once)",
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
        description="throughput above this multiple of the claimed model's fastest exact "
        "format peak (int8) is fraud",
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
        # every deadline of an epoch runs from its first dispatch. One card behind two claims
        # finishes the second 2 x expected after it: late, as long as the round-trip allowance
        # is smaller than (2 - deadline_factor) x expected
        cross_check(
            (2.0 - self.deadline_factor) * self.target_seconds > self.deadline_grace_s,
            f"challenge.deadline_grace_s ({self.deadline_grace_s:g}) must stay below "
            f"(2 - deadline_factor) x target_seconds "
            f"({(2.0 - self.deadline_factor) * self.target_seconds:g}), or one card could "
            "answer two claims before the deadline",
        )
        # and an honest claim dispatched at the end of the spread still has its full time
        cross_check(
            (self.deadline_factor - 1.0) * self.target_seconds >= self.epoch_spread_s,
            f"challenge.epoch_spread_s ({self.epoch_spread_s:g}) must not exceed "
            f"(deadline_factor - 1) x target_seconds "
            f"({(self.deadline_factor - 1.0) * self.target_seconds:g}), or an honest GPU "
            "dispatched late in the epoch could miss its deadline",
        )
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
    excuse_budget: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="share of a GPU's challenges in the window its miner may excuse (busy, "
        "unavailable, a dropped link); excuses beyond it count as failures, so one card behind "
        "several claims gains at most 1 / (1 - excuse_budget)",
    )
    claim_expiry_days: int = Field(
        default=7,
        ge=1,
        description="a GPU claim that no worker of its miner has reported for this many days no "
        "longer blocks a later claimant (a miner may move its UUIDs between its own workers)",
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
            excuse_budget=self.excuse_budget,
            claim_expiry=timedelta(days=self.claim_expiry_days),
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


#: highest price per GPU-hour a receipt can carry (``MAX_PRICE_MICROS`` micro-units)
MAX_PRICE = 1e9
Price = Annotated[float, Field(ge=0.0, le=MAX_PRICE, allow_inf_nan=False)]
PriceKey = Annotated[str, Field(min_length=1, max_length=128)]
#: example prices per GPU-hour, in the validator's price unit, by canonical model id
DEFAULT_PRICES: Mapping[str, float] = {
    "default": 1.0,
    "a100-sxm": 1.5,
    "h100-sxm": 2.5,
    "h200-sxm": 3.5,
}
#: price keys beside the catalogue's model ids
SPECIAL_PRICE_KEYS = ("default", "unknown", "cpu")
#: a key of ``leases.prices`` without its own ``leases.max_prices`` entry is capped at this many
#: times its price
MAX_PRICE_FACTOR = 2.0


class LeasesSection(Section):
    """Leases sold to renters (SPEC 6)."""

    receipt_interval_s: Seconds = Field(
        default=3600.0, description="seconds between usage receipts of a running lease"
    )
    max_duration_hours: int = Field(
        default=144,
        ge=1,
        description="longest lease a renter may create or extend to; with verified_within_hours "
        "it must fit in scoring.lease_window_hours, because a leased GPU is not challenged and "
        "receipts earn only for GPUs verified within the lease window",
    )
    verified_within_hours: int = Field(
        default=24, ge=1, description="only workers verified this recently are leased"
    )
    prices: dict[PriceKey, Price] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="price per GPU-hour by canonical model id (see docs/gpu-catalogue.md), "
        "plus 'unknown' (names that match no model or several), 'cpu' (CPU devices, devnet) "
        "and 'default' (every model without its own key)",
    )
    max_prices: dict[PriceKey, Price] = Field(
        default_factory=dict,
        description="cap per GPU-hour at which a receipt's price counts in the lease score, by "
        "the model of each GPU in this validator's inventory; keys as in leases.prices, and "
        "every key of leases.prices without its own entry (always 'default') is capped at "
        "twice its price",
    )
    worker_lost_after_s: Seconds = Field(
        default=600.0,
        description="a leased worker missing from its miner's polls (or whose miner cannot be "
        "reached) this long is lost: its lease ends, billed up to the last receipt",
    )

    @field_validator("prices", "max_prices", mode="after")
    @classmethod
    def _model_ids(cls, value: dict[str, float]) -> dict[str, float]:
        wrong = sorted(k for k in value if k not in CATALOGUE and k not in SPECIAL_PRICE_KEYS)
        if wrong:
            raise ValueError(
                f"unknown model id(s) {', '.join(repr(k) for k in wrong)}: prices are keyed by "
                f"the catalogue's model ids ({', '.join(sorted(CATALOGUE))}) or "
                f"{', '.join(SPECIAL_PRICE_KEYS)}"
            )
        return value

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
        # the caps a key leaves out derive from its price; set once, the table is complete
        caps = {k: min(MAX_PRICE_FACTOR * v, MAX_PRICE) for k, v in self.prices.items()}
        caps.update(self.max_prices)
        object.__setattr__(self, "max_prices", caps)
        return self

    def price_for(self, model_id: str) -> float:
        """Price per GPU-hour of the canonical ``model_id``, else ``prices['default']``. An
        ``unknown`` model is priced only as ``unknown``, whatever its name says."""
        return self.prices.get(model_id, self.prices["default"])

    def max_price_for(self, model_id: str) -> float:
        """The cap per GPU-hour of the canonical ``model_id`` (``unknown`` and ``cpu``
        included), else ``max_prices['default']``: what a receipt's price counts at, at most."""
        return max_price_for(self.max_prices, model_id)

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


def max_price_for(max_prices: Mapping[str, float], model_id: str) -> float:
    """``max_prices[model_id]``, else ``max_prices['default']`` (a complete ``leases.max_prices``
    table always has it)."""
    return max_prices.get(model_id, max_prices["default"])


#: ``leases.max_prices`` when nothing is configured: twice each default price
DEFAULT_MAX_PRICES: Mapping[str, float] = {
    k: min(MAX_PRICE_FACTOR * v, MAX_PRICE) for k, v in DEFAULT_PRICES.items()
}


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
    "ValidatorMetrics",
    "ValidatorPaths",
]
