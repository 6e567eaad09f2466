"""Lease revenue and the lease share (SPEC 5.2, 5.5): what receipts can and cannot buy.

Every validator counts every validator's receipts, and a receipt needs only two signatures, the
seller's and the miner's. A validator and a miner acting together can therefore sign anything.
The rules here bound what such a pair gains, using only what the scoring validator knows itself
(its metagraph, its inventory, its own challenges):

1. **Window.** Only the part of a usage stretch inside ``[now - lease_window, now)`` counts.
2. **Verified GPUs only.** A receipt earns only for the GPUs that *this* validator saw pass a
   challenge, for that miner, in an hour that overlaps the window (``verified_hours``). It is the
   one fact about a GPU a validator can check itself; a receipt's word about GPUs nobody verified
   is worth nothing.
3. **Price caps.** Each GPU is priced at ``min(receipt price, cap)``, where the cap is taken from
   this validator's table by the model of that GPU in this validator's inventory
   (:attr:`ReceiptUsage.gpu_price_caps`, resolved by the store).
4. **One lease counts its time once.** Stretches of one ``(seller, lease)`` on one GPU that
   overlap (the same receipt fetched twice, a cumulative stretch beside hourly ones) count their
   shared time once: a later-starting stretch counts only from where the earlier ones ended.
5. **One GPU-hour earns once, whoever sold it.** Where leases of different sellers (or different
   leases of one seller) bill the same ``(miner, GPU)`` at the same time, the time goes to one
   lease only, by :func:`lease_priority`: the seller with the larger stake share first, then the
   lease whose earliest stretch starts first, then the smaller seller hotkey, then the smaller
   lease id. Every validator with the same receipts and metagraph picks the same lease.
6. **Stake-share pools.** A seller ``v`` with stake share ``s_v`` among the validators whose
   receipts count (a permit and ``leases.min_receipt_validator_stake``, whether or not they sold
   anything) hands out exactly a pool of ``s_v``: what its leases *billed* (rules 1 to 4) is
   its pool's denominator, and what they *earned* (after rule 5) for miner ``m`` is the part of
   the pool that goes to ``m``::

       L_share(m) = Σ_v  s_v · earned(m, v) / billed(v)          (v with billed(v) > 0)

   ``Σ_m L_share(m) <= Σ_v s_v <= 1``: the part of a pool whose time another lease won, and the
   pools of validators that sold nothing, go to nobody.

**The bound.** Let ``c`` be any validator with stake share ``s_c`` and ``X`` any receipts it
signs, added to any set ``Y`` of receipts. For every miner ``m``::

    L_share(m; Y ∪ X) - L_share(m; Y) <= s_c

and for every miner that countersigned none of ``X``, ``|L_share(m; Y ∪ X) - L_share(m; Y)| <=
s_c``. Proof sketch: ``billed(v)`` of every other seller depends only on ``v``'s own receipts,
and rule 5 resolves each ``(miner, GPU)`` separately, where adding a lease can only take time
away from the others; so every other seller's term for ``m`` can only fall, and only for miners
``X`` bills. ``c``'s own term is ``s_c`` times a fraction in ``[0, 1]``. A miner can lose more
than ``s_c`` only by countersigning the same GPU-hours for two sellers.

Nothing here reads the metagraph or the inventory: the store passes each stretch with its
seller's share and its GPUs' caps (:class:`ReceiptUsage`), and the verified hours separately.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from byteleap.scoring.observations import LeaseUsage, require_aware
from byteleap.scoring.params import ScoringParams

SECONDS_PER_HOUR = 3600.0
HOUR = timedelta(hours=1)
#: how far the sellers' shares may add up beyond 1 (they are floats computed from stakes)
SHARE_TOLERANCE = 1e-9

#: ``(miner_hotkey, gpu_uuid) -> UTC hours`` in which this validator verified that GPU
VerifiedHours = Mapping[tuple[str, str], Iterable[datetime]]
#: ``(validator_hotkey, lease_id)``
LeaseKey = tuple[str, str]
#: ``(miner_hotkey, gpu_uuid)``
GpuKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ReceiptUsage(LeaseUsage):
    """A billed stretch of one receipt, with what the lease rules need to judge it.

    ``validator_hotkey`` sold the lease; ``validator_share`` is its stake share among the
    validators whose receipts count, at scoring time (``stake_v / Σ stake``). ``gpu_uuids`` are
    the receipt's GPUs (``gpus`` of them, no repeats) and ``gpu_price_caps`` the cap per GPU-hour
    of each, in the same order, from this validator's price table and its inventory's model of
    that GPU. ``lease_id`` need only be unique per seller.
    """

    validator_hotkey: str = field(kw_only=True)
    validator_share: float = field(kw_only=True)
    gpu_uuids: tuple[str, ...] = field(kw_only=True)
    gpu_price_caps: tuple[float, ...] = field(kw_only=True)

    def __post_init__(self) -> None:
        LeaseUsage.__post_init__(self)
        if not isinstance(self.validator_hotkey, str) or not self.validator_hotkey:
            raise ValueError("validator_hotkey must be a non-empty string")
        share = self.validator_share
        if isinstance(share, bool) or not (math.isfinite(share) and 0.0 <= share <= 1.0):
            raise ValueError(f"validator_share must be in [0, 1], got {share!r}")
        uuids = tuple(self.gpu_uuids)
        caps = tuple(self.gpu_price_caps)
        object.__setattr__(self, "gpu_uuids", uuids)
        object.__setattr__(self, "gpu_price_caps", caps)
        if len(uuids) != self.gpus or len(caps) != self.gpus:
            raise ValueError(
                f"a receipt of {self.gpus} GPUs needs {self.gpus} gpu_uuids and gpu_price_caps, "
                f"got {len(uuids)} and {len(caps)}"
            )
        if len(set(uuids)) != len(uuids) or not all(isinstance(u, str) and u for u in uuids):
            raise ValueError("gpu_uuids must be distinct non-empty strings")
        for cap in caps:
            if isinstance(cap, bool) or not (math.isfinite(cap) and cap >= 0.0):
                raise ValueError(f"gpu_price_caps must be finite and >= 0, got {cap!r}")
        object.__setattr__(self, "gpu_price_caps", tuple(float(cap) for cap in caps))


@dataclass(frozen=True, slots=True)
class MinerRevenue:
    """One miner's lease revenue in the window and its parts.

    ``revenue`` and ``gpu_hours`` are what the miner's receipts earned under rules 1 to 5 (capped
    prices, verified GPUs, each GPU-hour once), summed over sellers as money; ``share`` is its
    lease share, the stake-weighted sum of its parts of each seller's pool (``by_seller``).
    """

    miner_hotkey: str
    revenue: float
    gpu_hours: float
    leases: int
    share: float = 0.0
    #: seller hotkey -> ``s_v · earned(m, v) / billed(v)``, this seller's part of ``share``
    by_seller: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revenue": self.revenue,
            "gpu_hours": self.gpu_hours,
            "leases": self.leases,
            "share": self.share,
            "by_seller": dict(self.by_seller),
        }


@dataclass(frozen=True, slots=True)
class SellerPool:
    """One seller's pool: its stake share, what its leases billed and what they earned."""

    validator_hotkey: str
    share: float
    #: Σ capped price × verified GPU-hours of its leases in the window (the pool's denominator)
    billed: float
    #: the part of ``billed`` whose GPU-hours no other lease won first
    earned: float

    def to_dict(self) -> dict[str, Any]:
        return {"share": self.share, "billed": self.billed, "earned": self.earned}


@dataclass(frozen=True, slots=True)
class LeaseScores:
    """Every miner's lease revenue and share, and every seller's pool."""

    miners: dict[str, MinerRevenue]
    sellers: dict[str, SellerPool]


def lease_priority(share: float, first_start: datetime, validator: str, lease_id: str) -> Any:
    """Sort key of a lease in an overlap (rule 5): smallest first wins the shared time."""
    return (-share, first_start, validator, lease_id)


def _fsum(values: Iterable[float], what: str) -> float:
    try:
        total = math.fsum(values)
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise ValueError(f"lease {what} overflowed: an input is absurdly large")
    return total


def _hour_floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass
class _Lease:
    """One ``(seller, lease)`` inside the window, during the computation."""

    key: LeaseKey
    share: float
    first_start: datetime
    stretches: list[ReceiptUsage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Track:
    """What one lease bills one verified GPU: disjoint ``(start_s, end_s, price)`` segments in
    seconds from the window start, each priced at ``min(price, cap)``."""

    lease: _Lease
    gpu: GpuKey
    segments: list[tuple[float, float, float]]
    cap: float
    #: Σ (end - start) · min(price, cap), in money·seconds
    money: float
    seconds: float


def _tracks(
    lease: _Lease, window_start: datetime, now: datetime, verified: Callable[[GpuKey], bool]
) -> list[_Track]:
    """Rules 1 to 4 for one lease: its verified GPUs' segments inside the window, where a
    later-starting stretch of the lease counts only from where the earlier ones ended."""
    stretches = sorted(
        lease.stretches,
        key=lambda u: (u.start, u.end, u.price_per_gpu_hour, u.miner_hotkey, u.gpu_uuids),
    )

    def span(u: ReceiptUsage) -> tuple[float, float]:
        return (
            max((u.start - window_start).total_seconds(), 0.0),
            (min(u.end, now) - window_start).total_seconds(),
        )

    first = stretches[0]
    terms = (first.miner_hotkey, first.gpu_uuids, first.gpu_price_caps)
    out: list[_Track] = []
    if all((u.miner_hotkey, u.gpu_uuids, u.gpu_price_caps) == terms for u in stretches):
        # a chain: one miner, one set of GPUs (check_successor keeps them), segments shared
        segments: list[tuple[float, float, float]] = []
        covered = 0.0
        for u in stretches:
            a, b = span(u)
            start = max(a, covered)
            if b > start:
                segments.append((start, b, u.price_per_gpu_hour))
                covered = b
        if not segments:
            return out
        seconds = math.fsum(e - s for s, e, _ in segments)
        money: dict[float, float] = {}
        for uuid, cap in zip(first.gpu_uuids, first.gpu_price_caps, strict=True):
            gpu = (first.miner_hotkey, uuid)
            if not verified(gpu):
                continue
            if cap not in money:
                money[cap] = math.fsum((e - s) * min(p, cap) for s, e, p in segments)
            out.append(_Track(lease, gpu, segments, cap, money[cap], seconds))
        return out
    # anything else (hand-made input): each GPU on its own
    per_gpu: dict[GpuKey, list[tuple[float, float, float]]] = {}
    ends: dict[GpuKey, float] = {}
    for u in stretches:
        a, b = span(u)
        for uuid, cap in zip(u.gpu_uuids, u.gpu_price_caps, strict=True):
            gpu = (u.miner_hotkey, uuid)
            start = max(a, ends.get(gpu, 0.0))
            if b <= start or not verified(gpu):
                continue
            per_gpu.setdefault(gpu, []).append((start, b, min(u.price_per_gpu_hour, cap)))
            ends[gpu] = b
    for gpu, segs in per_gpu.items():
        out.append(
            _Track(
                lease, gpu, segs, math.inf,
                math.fsum((e - s) * p for s, e, p in segs), math.fsum(e - s for s, e, _ in segs),
            )
        )  # fmt: skip
    return out


def _uncovered(
    covered: list[tuple[float, float]], start: float, end: float
) -> list[tuple[float, float]]:
    """The parts of ``[start, end)`` outside the sorted disjoint ``covered``."""
    out: list[tuple[float, float]] = []
    i = max(0, bisect_left(covered, (start, start)) - 1)
    cursor = start
    while i < len(covered) and covered[i][0] < end:
        a, b = covered[i]
        if b > cursor:
            if a > cursor:
                out.append((cursor, a))
            cursor = max(cursor, b)
        i += 1
    if cursor < end:
        out.append((cursor, end))
    return out


def _merge(covered: list[tuple[float, float]], add: Iterable[tuple[float, float]]) -> None:
    spans = sorted([*covered, *add])
    covered.clear()
    for a, b in spans:
        if covered and a <= covered[-1][1]:
            if b > covered[-1][1]:
                covered[-1] = (covered[-1][0], b)
        else:
            covered.append((a, b))


def lease_scores(
    usages: Iterable[LeaseUsage],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
    verified_hours: VerifiedHours | None = None,
) -> LeaseScores:
    """Revenue, lease share and seller pools over ``[now - lease_window, now)`` (module rules).

    Every usage must be a :class:`ReceiptUsage`: a stretch without its seller, share and GPUs
    cannot be checked, and a ``TypeError`` says so. ``verified_hours`` maps ``(miner, GPU)`` to
    the UTC hours in which this validator verified that GPU; ``None`` is no verification at all,
    so nothing earns. With ``miners`` given, every other miner's stretches are ignored, also in
    the sellers' pools.
    """
    require_aware("now", now)
    allowed = None if miners is None else frozenset(miners)
    window_start = now - params.lease_window
    verified_from = _hour_floor(window_start)
    hours = verified_hours or {}
    verified_cache: dict[GpuKey, bool] = {}

    def verified(key: GpuKey) -> bool:
        known = verified_cache.get(key)
        if known is None:
            known = any(verified_from <= h < now for h in hours.get(key, ()))
            verified_cache[key] = known
        return known

    shares: dict[str, float] = {}
    leases: dict[LeaseKey, _Lease] = {}
    touched: set[str] = set()
    for usage in usages:
        if not isinstance(usage, ReceiptUsage):
            raise TypeError(
                "lease usage must be ReceiptUsage (seller, stake share and GPUs): a stretch "
                f"without them cannot be checked, got {type(usage).__name__}"
            )
        if allowed is not None and usage.miner_hotkey not in allowed:
            continue
        seller = usage.validator_hotkey
        if shares.setdefault(seller, usage.validator_share) != usage.validator_share:
            raise ValueError(f"seller {seller} has two stake shares in one scoring round")
        if usage.end <= window_start or usage.start >= now:
            continue
        touched.add(usage.miner_hotkey)
        key = (seller, usage.lease_id)
        lease = leases.get(key)
        if lease is None:
            lease = leases[key] = _Lease(key, usage.validator_share, usage.start)
        elif usage.start < lease.first_start:
            lease.first_start = usage.start
        lease.stretches.append(usage)
    if _fsum(shares.values(), "shares") > 1.0 + SHARE_TOLERANCE:
        raise ValueError("the sellers' stake shares add up to more than 1")

    # rules 1 to 4, per lease: window, verified GPUs, capped prices, each instant once
    billed: dict[str, list[float]] = {}
    by_gpu: dict[GpuKey, list[_Track]] = {}
    for lease in leases.values():
        for track in _tracks(lease, window_start, now, verified):
            billed.setdefault(lease.key[0], []).append(track.money)
            by_gpu.setdefault(track.gpu, []).append(track)

    # rule 5, per GPU: each instant goes to the lease that comes first by lease_priority
    earned_money: dict[tuple[str, str], list[float]] = {}  # (miner, seller) -> money·seconds
    earned_seconds: dict[str, list[float]] = {}
    earning_leases: dict[str, set[LeaseKey]] = {}
    for (miner, _uuid), sharing in by_gpu.items():
        if len(sharing) == 1:
            won = [(sharing[0], sharing[0].money, sharing[0].seconds)]
        else:
            sharing.sort(
                key=lambda t: lease_priority(t.lease.share, t.lease.first_start, *t.lease.key)
            )
            won = []
            taken: list[tuple[float, float]] = []
            for track in sharing:
                pieces = [
                    (s2, e2, p) for s, e, p in track.segments for s2, e2 in _uncovered(taken, s, e)
                ]
                _merge(taken, ((s, e) for s, e, _ in track.segments))
                won.append((
                    track,
                    math.fsum((e - s) * min(p, track.cap) for s, e, p in pieces),
                    math.fsum(e - s for s, e, _ in pieces),
                ))  # fmt: skip
        for track, money, seconds in won:
            if seconds <= 0.0:
                continue
            earned_money.setdefault((miner, track.lease.key[0]), []).append(money)
            earned_seconds.setdefault(miner, []).append(seconds)
            earning_leases.setdefault(miner, set()).add(track.lease.key)

    pools = {
        seller: _fsum(amounts, "revenue") / SECONDS_PER_HOUR for seller, amounts in billed.items()
    }
    parts: dict[str, dict[str, float]] = {}
    money_of: dict[str, list[float]] = {}
    earned_of: dict[str, list[float]] = {}
    for (miner, seller), amounts in sorted(earned_money.items()):
        earned = _fsum(amounts, "revenue") / SECONDS_PER_HOUR
        money_of.setdefault(miner, []).append(earned)
        earned_of.setdefault(seller, []).append(earned)
        pool = pools[seller]
        if pool > 0.0 and shares[seller] > 0.0:
            parts.setdefault(miner, {})[seller] = shares[seller] * min(1.0, earned / pool)

    result = {
        miner: MinerRevenue(
            miner_hotkey=miner,
            revenue=math.fsum(money_of.get(miner, ())),
            gpu_hours=math.fsum(earned_seconds.get(miner, ())) / SECONDS_PER_HOUR,
            leases=len(earning_leases.get(miner, ())),
            share=min(1.0, math.fsum(parts.get(miner, {}).values())),
            by_seller=dict(sorted(parts.get(miner, {}).items())),
        )
        for miner in sorted(touched)
    }
    sellers = {
        seller: SellerPool(
            validator_hotkey=seller,
            share=shares[seller],
            billed=pools[seller],
            earned=math.fsum(earned_of.get(seller, ())),
        )
        for seller in sorted(pools)
    }
    return LeaseScores(miners=result, sellers=sellers)


def lease_revenue(
    usages: Iterable[LeaseUsage],
    params: ScoringParams,
    now: datetime,
    *,
    miners: Iterable[str] | None = None,
    verified_hours: VerifiedHours | None = None,
) -> dict[str, MinerRevenue]:
    """Revenue and lease share per miner over ``[now - lease_window, now)``
    (:func:`lease_scores` without the sellers' pools)."""
    return lease_scores(usages, params, now, miners=miners, verified_hours=verified_hours).miners


__all__ = [
    "LeaseScores",
    "MinerRevenue",
    "ReceiptUsage",
    "SellerPool",
    "VerifiedHours",
    "lease_priority",
    "lease_revenue",
    "lease_scores",
]
