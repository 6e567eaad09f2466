"""Configuration of ``byteleap-validator``'s leasing: the renter API (``renter_api:``) and the
leases it sells, with their prices and price caps (``leases:``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from byteleap.config._base import (
    MIB,
    ByteLimit,
    Host,
    ListenPort,
    Seconds,
    Section,
)
from byteleap.config.common import (
    cross_check,
)
from byteleap.hardware import CATALOGUE


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
