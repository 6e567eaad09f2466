"""Lease usage for scorer tests: receipts' stretches with a seller, its share and GPUs, and the
verified hours that let them earn (SPEC 5.5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from byteleap.scoring.leases import ReceiptUsage

#: a cap no test price reaches: the caps rule has tests of its own
NO_CAP = 1e9
#: the seller of :func:`usage` when a test does not name one: the only validator, share 1
SELLER = "v"


def usage(
    miner: str,
    lease: str,
    price: float,
    gpus: int,
    start: datetime,
    end: datetime,
    *,
    seller: str = SELLER,
    share: float = 1.0,
    uuids: Iterable[str] | None = None,
    caps: Iterable[float] | None = None,
) -> ReceiptUsage:
    """A stretch of ``gpus`` GPUs (``<miner>/<lease>/<i>`` unless ``uuids`` are given)."""
    gpu_uuids = (
        tuple(uuids) if uuids is not None else tuple(f"{miner}/{lease}/{i}" for i in range(gpus))
    )
    return ReceiptUsage(
        miner,
        lease,
        price,
        gpus,
        start,
        end,
        validator_hotkey=seller,
        validator_share=share,
        gpu_uuids=gpu_uuids,
        gpu_price_caps=tuple(caps) if caps is not None else (NO_CAP,) * gpus,
    )


def verified_at(
    usages: Iterable[ReceiptUsage], when: datetime
) -> dict[tuple[str, str], tuple[datetime, ...]]:
    """Every GPU of ``usages`` verified in the hour of ``when``."""
    hour = when.replace(minute=0, second=0, microsecond=0)
    return {(u.miner_hotkey, g): (hour,) for u in usages for g in u.gpu_uuids}


def merged(
    *maps: Mapping[tuple[str, str], tuple[datetime, ...]],
) -> dict[tuple[str, str], tuple[datetime, ...]]:
    out: dict[tuple[str, str], tuple[datetime, ...]] = {}
    for m in maps:
        for key, hours in m.items():
            out[key] = tuple(sorted({*out.get(key, ()), *hours}))
    return out
