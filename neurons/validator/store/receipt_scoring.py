"""What collected receipts count for in scoring: :class:`ReceiptScoring`, the read side of
:class:`~neurons.validator.store.receipts.ReceiptStore`.

**Scoring.** :meth:`usage_in` and :meth:`intervals_in` run inside ``SqlStore.scoring_inputs``'
transaction. Both count only receipts whose seller is, *at scoring time*, a registered validator
with a permit and at least :attr:`ReceiptStore.min_validator_stake`: every validator applies the
same rule to the same metagraph, so they agree even when they collected at different times, and a
validator that loses its permit stops contributing lease revenue from then on (its receipts stay
stored and count again if it regains the permit within the window).

:meth:`usage_in` gives each billed stretch what the scorer's lease rules need
(:class:`~byteleap.scoring.leases.ReceiptUsage`, SPEC 5.5): the seller's stake share among the
validators whose receipts count (stakes from the synced metagraph), the receipt's GPUs (from the
chain's stored payload: a chain never changes its GPUs) and each GPU's price cap, looked up in
:attr:`ReceiptStore.max_prices` by the model *this* validator's inventory holds for that GPU
(``byteleap.hardware.identify``; a GPU it never saw is ``unknown``). Whether a GPU was verified is
the scorer's question (``ScoringInputs.verified_hours``).

:meth:`intervals_in` gives a lease interval (which carries a worker's challenge perf over the
lease, and explains its ``leased`` answers) only for a chain whose every GPU this validator saw
pass a challenge *on that worker* in an hour that overlaps the lease window. A receipt for
hardware nobody verified freezes no challenge record, and one for verified hardware freezes it at
most for the lease window after the last verification.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.config.leasing import max_price_for
from byteleap.errors import ByteLeapError, Outcome
from byteleap.hardware import CPU_UUID_PREFIX, UNKNOWN, identify
from byteleap.leases.receipts import (
    RECEIPT_TAG,
    Receipt,
    parse_canonical,
)
from byteleap.scoring import LeaseInterval, LeaseUsage, ScoringParams
from byteleap.scoring.leases import ReceiptUsage
from byteleap.scoring.observations import require_aware
from neurons.validator.store.schema import (
    Gpu,
    GpuChallenge,
    LeaseReceipt,
    Miner,
    metadata,
)

log = structlog.get_logger(__name__)

receipts_t = metadata.tables[LeaseReceipt.__tablename__]
miners_t = metadata.tables[Miner.__tablename__]
gpus_t = metadata.tables[Gpu.__tablename__]
challenges_t = metadata.tables[GpuChallenge.__tablename__]

#: a lease whose chain has no end receipt is taken as still running while its latest receipt
#: ended less than this long ago (hourly receipts, one missed or late); after that the lease is
#: taken to have ended where its last receipt ended (worker loss ends billing there, SPEC 6)
OPEN_LEASE_GRACE = timedelta(hours=2)

#: how far back a GPU's verification lets its receipts' lease interval count, when the caller
#: gives no window (the scorer's default lease window)
DEFAULT_LEASE_WINDOW = ScoringParams().lease_window

#: ``transaction(what)``: one transaction whose database failures become ``StorageError``
Transaction = Callable[[str], AbstractAsyncContextManager[AsyncConnection]]


def receipt_from_payload(payload: bytes) -> Receipt:
    """The receipt in a stored payload: its canonical bytes, or (tolerated) the framed signing
    payload; raises ``MalformedMessage`` for anything else."""
    data = bytes(payload)
    head = len(RECEIPT_TAG).to_bytes(4, "little") + RECEIPT_TAG
    if data.startswith(head):
        data = data[len(head) + 4 :]
    return parse_canonical(data)


def permitted_sellers(min_stake: float) -> Any:
    """Hotkeys whose receipts count now, as a subquery for ``IN``."""
    m = miners_t.c
    return sa.select(m.hotkey).where(
        m.registered.is_(True), m.validator_permit.is_(True), m.stake >= min_stake
    )


class ReceiptScoring:
    """The scorer's reads of the collected receipts (the module docstring has the rules); the
    base of :class:`~neurons.validator.store.receipts.ReceiptStore`, which sets these."""

    _tx: Transaction
    #: a receipt counts in scoring only when its seller has a permit and this much stake
    min_validator_stake: float
    #: ``leases.max_prices``: model id -> cap per GPU-hour (must hold ``default``)
    max_prices: Mapping[str, float]
    #: lease intervals from receipts need their GPUs verified in this window before ``now``
    lease_window: timedelta

    async def lease_usage(self, now: datetime, params: ScoringParams) -> list[LeaseUsage]:
        require_aware("now", now)
        async with self._tx("reading lease usage") as conn:
            return await self.usage_in(conn, now, params)

    async def lease_intervals(self, now: datetime) -> list[LeaseInterval]:
        require_aware("now", now)
        async with self._tx("reading lease intervals") as conn:
            return await self.intervals_in(conn, now)

    async def usage_in(
        self, conn: AsyncConnection, now: datetime, params: ScoringParams
    ) -> list[LeaseUsage]:
        """Billed stretches in the lease window, of registered miners, sold by validators that
        count now, as :class:`~byteleap.scoring.leases.ReceiptUsage` (seller's stake share, GPUs,
        price caps). Lease ids are unique per selling validator only, so they are qualified with
        its hotkey. A chain whose stored payload cannot be read is left out (and logged)."""
        shares = await self._seller_shares(conn)
        if not shares:
            return []
        r = receipts_t.c
        in_window = (
            r.period_end > now - params.lease_window,
            r.period_start < now,
            r.miner_hotkey.in_(_registered()),
            r.validator_hotkey.in_(permitted_sellers(self.min_validator_stake)),
        )
        rows = (
            await conn.execute(
                sa.select(
                    r.miner_hotkey,
                    r.validator_hotkey,
                    r.lease_id,
                    r.price_per_gpu_hour,
                    r.gpus,
                    r.period_start,
                    r.period_end,
                ).where(*in_window)
            )
        ).all()
        if not rows:
            return []
        terms = await self._chain_terms(conn, in_window)
        caps = await self._price_caps(conn, {hotkey for hotkey, *_ in rows})
        unknown_cap = max_price_for(self.max_prices, UNKNOWN)
        out: list[LeaseUsage] = []
        for hotkey, validator, lease, price, gpus, start, end in rows:
            chain = terms.get((validator, lease))
            share = shares.get(validator)
            if chain is None or share is None:
                continue
            if chain.miner_hotkey != hotkey or chain.gpus != gpus:
                log.warning("receipt_row_disagrees_with_payload", lease=lease, miner=hotkey)
                continue
            out.append(
                ReceiptUsage(
                    hotkey, f"{validator}/{lease}", price, gpus, start, end,
                    validator_hotkey=validator,
                    validator_share=share,
                    gpu_uuids=tuple(chain.gpu_uuids),
                    gpu_price_caps=tuple(
                        caps.get((hotkey, uuid), unknown_cap) for uuid in chain.gpu_uuids
                    ),
                )
            )  # fmt: skip
        return out

    async def _seller_shares(self, conn: AsyncConnection) -> dict[str, float]:
        """Each validator whose receipts count now -> its share of their summed stake (empty
        when they hold no stake at all: then no receipt counts)."""
        m = miners_t.c
        rows = (
            await conn.execute(
                sa.select(m.hotkey, m.stake).where(
                    m.registered.is_(True),
                    m.validator_permit.is_(True),
                    m.stake >= self.min_validator_stake,
                )
            )
        ).all()
        stakes = {hotkey: max(float(stake), 0.0) for hotkey, stake in rows}
        total = math.fsum(stakes.values())
        if not (total > 0.0 and math.isfinite(total)):
            return {}
        return {hotkey: min(1.0, stake / total) for hotkey, stake in stakes.items()}

    async def _chain_terms(
        self, conn: AsyncConnection, where: tuple[Any, ...]
    ) -> dict[tuple[str, str], Receipt]:
        """``(validator, lease) -> the latest receipt`` of every chain with a receipt matching
        ``where``: its miner, worker and GPUs are those of the whole chain (``check_successor``
        keeps them fixed)."""
        r = receipts_t.c
        latest = (
            sa.select(r.validator_hotkey, r.lease_id, sa.func.max(r.seq).label("seq"))
            .where(*where)
            .group_by(r.validator_hotkey, r.lease_id)
            .subquery()
        )
        rows = await conn.execute(
            sa.select(r.validator_hotkey, r.lease_id, r.payload).join(
                latest,
                sa.and_(
                    r.validator_hotkey == latest.c.validator_hotkey,
                    r.lease_id == latest.c.lease_id,
                    r.seq == latest.c.seq,
                ),
            )
        )
        out: dict[tuple[str, str], Receipt] = {}
        for validator, lease, payload in rows:
            try:
                out[(validator, lease)] = receipt_from_payload(payload)
            except ByteLeapError:
                log.warning("receipt_payload_unreadable", validator=validator, lease=lease)
        return out

    async def _price_caps(
        self, conn: AsyncConnection, miners: set[str]
    ) -> dict[tuple[str, str], float]:
        """``(miner, GPU UUID) -> cap per GPU-hour`` for every GPU this validator's inventory
        holds for ``miners``: ``max_prices`` of the model ``identify`` gives the reported name,
        memory and compute capability. A UUID a miner reported on several workers gets the
        lowest of their caps."""
        if not miners:
            return {}
        g = gpus_t.c
        rows = await conn.execute(
            sa.select(
                g.miner_hotkey, g.gpu_uuid, g.model, g.memory_mib, g.compute_capability
            ).where(g.miner_hotkey.in_(sorted(miners)))
        )
        model_ids: dict[tuple[bool, str, int, str | None], str] = {}
        caps: dict[tuple[str, str], float] = {}
        for hotkey, uuid, model, memory_mib, capability in rows:
            report = (uuid.startswith(CPU_UUID_PREFIX), model, memory_mib, capability)
            model_id = model_ids.get(report)
            if model_id is None:
                model_id = model_ids[report] = identify(
                    CPU_UUID_PREFIX if report[0] else "GPU-", model, memory_mib, capability
                ).model_id
            cap = max_price_for(self.max_prices, model_id)
            key = (hotkey, uuid)
            caps[key] = min(cap, caps.get(key, cap))
        return caps

    async def intervals_in(
        self, conn: AsyncConnection, now: datetime, *, window: timedelta | None = None
    ) -> list[LeaseInterval]:
        """When workers were leased according to the receipts, by any validator that counts now:
        one interval per lease chain, from its earliest stored period start to its end receipt;
        a chain without one is still running while its latest receipt ended less than
        :data:`OPEN_LEASE_GRACE` ago, else it ended where that receipt ended.

        Only a chain whose every GPU this validator verified on the chain's worker, in an hour
        that overlaps ``[now - window, now)`` (default :attr:`lease_window`), gives an interval:
        the same rule that lets a receipt earn (SPEC 5.5)."""
        r = receipts_t.c
        chains = (
            sa.select(
                r.validator_hotkey,
                r.lease_id,
                sa.func.min(r.period_start).label("first_start"),
                sa.func.max(r.seq).label("last_seq"),
            )
            .where(
                r.period_start < now,
                r.miner_hotkey.in_(_registered()),
                r.validator_hotkey.in_(permitted_sellers(self.min_validator_stake)),
            )
            .group_by(r.validator_hotkey, r.lease_id)
            .subquery()
        )
        rows = await conn.execute(
            sa.select(r.miner_hotkey, r.payload, chains.c.first_start, r.period_end).join(
                chains,
                sa.and_(
                    r.validator_hotkey == chains.c.validator_hotkey,
                    r.lease_id == chains.c.lease_id,
                    r.seq == chains.c.last_seq,
                ),
            )
        )
        found: list[tuple[str, Receipt, datetime, datetime]] = []
        for hotkey, payload, start, last_end in rows:
            try:
                found.append((hotkey, receipt_from_payload(payload), start, last_end))
            except ByteLeapError:
                log.warning("receipt_payload_unreadable", miner=hotkey)
        since = _hour_floor(now - (self.lease_window if window is None else window))
        verified = await self._verified_gpus(conn, {f[0] for f in found}, since, now)
        out: list[LeaseInterval] = []
        for hotkey, last, start, last_end in found:
            if not all((hotkey, last.worker_pubkey, u) in verified for u in last.gpu_uuids):
                continue
            end: datetime | None = last_end
            if last.kind != "end" and now - last_end < OPEN_LEASE_GRACE:
                end = None
            out.append(LeaseInterval(hotkey, last.worker_pubkey, start, end))
        return out

    async def _verified_gpus(
        self, conn: AsyncConnection, miners: set[str], since: datetime, now: datetime
    ) -> set[tuple[str, str, str]]:
        """``(miner, worker, GPU UUID)`` of every GPU of ``miners`` with a verified challenge
        dispatched in ``[since, now)``."""
        if not miners:
            return set()
        c = challenges_t.c
        rows = await conn.execute(
            sa.select(c.miner_hotkey, c.worker_pubkey, c.gpu_uuid)
            .where(
                c.miner_hotkey.in_(sorted(miners)),
                c.dispatched_at >= since,
                c.dispatched_at < now,
                c.status == "closed",
                c.outcome == Outcome.VERIFIED.value,
            )
            .distinct()
        )
        return {(hotkey, worker, uuid) for hotkey, worker, uuid in rows}


def _hour_floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _registered() -> Any:
    return sa.select(miners_t.c.hotkey).where(miners_t.c.registered.is_(True))


__all__ = [
    "DEFAULT_LEASE_WINDOW",
    "OPEN_LEASE_GRACE",
    "ReceiptScoring",
    "Transaction",
    "permitted_sellers",
    "receipt_from_payload",
]
