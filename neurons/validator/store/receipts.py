"""Every validator's usage receipts as this validator collected them, and what the scorer reads.

:class:`ReceiptStore` works on the engine of :class:`~neurons.validator.store.SqlStore` and
through its transactions (get it as ``SqlStore.receipts``), so database failures surface as
:class:`~byteleap.errors.StorageError` exactly as in the rest of the store.

**Storing.** :meth:`ReceiptStore.store_page` adds the receipts of one ``GET /receipts`` page
(already checked by ``neurons.validator.receipts.checks``) and moves that miner's cursor in one
transaction, so a cursor never runs ahead of what was stored. Each receipt is keyed by
``(validator_hotkey, lease_id, seq)``:

- the same key with the same bytes is a ``duplicate`` (fetched again, or issued by this
  validator and stored when the miner countersigned it): nothing changes;
- the same key with other bytes is a ``conflict``: the first receipt stored stays;
- a new key must fit its lease's chain next to the stored neighbours: ``check_successor`` against
  the stored receipt with the next lower ``seq`` and the stored one with the next higher ``seq``
  (``broken_chain`` otherwise). A gap in the sequence numbers is allowed: the missing receipt's
  period is simply not billed, and if it shows up later it must fit between its neighbours.

``payload`` holds the receipt's canonical bytes (``byteleap.leases.receipts.canonical_bytes``);
the signatures are over ``signing_payload``, which frames them.

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

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.config.validator import DEFAULT_MAX_PRICES, max_price_for
from byteleap.errors import ByteLeapError, Forbidden, Outcome
from byteleap.hardware import CPU_UUID_PREFIX, UNKNOWN, identify
from byteleap.leases.receipts import (
    MICROS,
    RECEIPT_TAG,
    Receipt,
    canonical_bytes,
    check_successor,
    parse_canonical,
)
from byteleap.protocol.miner_api.receipts import SignedReceipt
from byteleap.scoring import LeaseInterval, LeaseUsage, ScoringParams
from byteleap.scoring.leases import ReceiptUsage
from byteleap.scoring.observations import require_aware
from neurons.validator.store.schema import (
    Challenge,
    Gpu,
    LeaseReceipt,
    Miner,
    ReceiptCursor,
    metadata,
)

log = structlog.get_logger(__name__)

receipts_t = metadata.tables[LeaseReceipt.__tablename__]
cursors_t = metadata.tables[ReceiptCursor.__tablename__]
miners_t = metadata.tables[Miner.__tablename__]
gpus_t = metadata.tables[Gpu.__tablename__]
challenges_t = metadata.tables[Challenge.__tablename__]

#: a lease whose chain has no end receipt is taken as still running while its latest receipt
#: ended less than this long ago (hourly receipts, one missed or late); after that the lease is
#: taken to have ended where its last receipt ended (worker loss ends billing there, SPEC 6)
OPEN_LEASE_GRACE = timedelta(hours=2)

#: how far back a GPU's verification lets its receipts' lease interval count, when the caller
#: gives no window (the scorer's default lease window)
DEFAULT_LEASE_WINDOW = ScoringParams().lease_window

#: ``transaction(what)``: one transaction whose database failures become ``StorageError``
Transaction = Callable[[str], AbstractAsyncContextManager[AsyncConnection]]


class StoreOutcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    BROKEN_CHAIN = "broken_chain"


def receipt_from_payload(payload: bytes) -> Receipt:
    """The receipt in a stored payload: its canonical bytes, or (tolerated) the framed signing
    payload; raises ``MalformedMessage`` for anything else."""
    data = bytes(payload)
    head = len(RECEIPT_TAG).to_bytes(4, "little") + RECEIPT_TAG
    if data.startswith(head):
        data = data[len(head) + 4 :]
    return parse_canonical(data)


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def permitted_sellers(min_stake: float) -> Any:
    """Hotkeys whose receipts count now, as a subquery for ``IN``."""
    m = miners_t.c
    return sa.select(m.hotkey).where(
        m.registered.is_(True), m.validator_permit.is_(True), m.stake >= min_stake
    )


class ReceiptStore:
    """Collected receipts and per-miner cursors (see the module docstring for the rules)."""

    def __init__(
        self,
        transaction: Transaction,
        dialect: str,
        *,
        min_validator_stake: float = 0.0,
        max_prices: Mapping[str, float] = DEFAULT_MAX_PRICES,
        lease_window: timedelta = DEFAULT_LEASE_WINDOW,
    ) -> None:
        self._tx = transaction
        self._dialect = dialect
        #: a receipt counts in scoring only when its seller has a permit and this much stake
        self.min_validator_stake = min_validator_stake
        #: ``leases.max_prices``: model id -> cap per GPU-hour (must hold ``default``)
        self.max_prices: Mapping[str, float] = max_prices
        #: lease intervals from receipts need their GPUs verified in this window before ``now``
        #: (``scoring.lease_window_hours``)
        self.lease_window = lease_window

    def _insert(self, table: sa.Table) -> Any:
        return (pg_insert if self._dialect == "postgresql" else sqlite_insert)(table)

    # ------------------------------------------------------------------ cursors

    async def cursor(self, miner_hotkey: str) -> int:
        """The cursor to read on from (0 for a miner never read)."""
        async with self._tx(f"reading the receipt cursor of {miner_hotkey}") as conn:
            value = (
                await conn.execute(
                    sa.select(cursors_t.c.cursor).where(cursors_t.c.miner_hotkey == miner_hotkey)
                )
            ).scalar_one_or_none()
        return 0 if value is None else int(value)

    async def cursors(self) -> dict[str, int]:
        async with self._tx("reading the receipt cursors") as conn:
            rows = (
                await conn.execute(sa.select(cursors_t.c.miner_hotkey, cursors_t.c.cursor))
            ).all()
        return {hotkey: int(cursor) for hotkey, cursor in rows}

    async def _move_cursor(
        self, conn: AsyncConnection, now: datetime, miner_hotkey: str, cursor: int
    ) -> None:
        stmt = self._insert(cursors_t).values(
            miner_hotkey=miner_hotkey, cursor=cursor, updated_at=now
        )
        c = cursors_t.c
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[c.miner_hotkey],
                # never backwards: a page answered late must not undo a later one
                set_={
                    "cursor": sa.case(
                        (c.cursor > stmt.excluded.cursor, c.cursor), else_=stmt.excluded.cursor
                    ),
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )

    # ------------------------------------------------------------------ receipts

    async def store_page(
        self,
        now: datetime,
        receipts: Sequence[SignedReceipt],
        *,
        miner_hotkey: str | None = None,
        cursor: int | None = None,
    ) -> list[StoreOutcome]:
        """Add ``receipts`` (checked already) in order and, with ``miner_hotkey`` and ``cursor``,
        move that miner's cursor, all in one transaction; one outcome per receipt."""
        require_aware("now", now)
        if (miner_hotkey is None) != (cursor is None):
            raise ValueError("give miner_hotkey and cursor together")
        outcomes: list[StoreOutcome] = []
        async with self._tx("storing receipts") as conn:
            for signed in receipts:
                outcomes.append(await self._add(conn, now, signed))
            if miner_hotkey is not None and cursor is not None:
                await self._move_cursor(conn, now, miner_hotkey, cursor)
        return outcomes

    async def add(self, now: datetime, signed: SignedReceipt) -> StoreOutcome:
        """Add one receipt (checked already)."""
        (outcome,) = await self.store_page(now, [signed])
        return outcome

    async def _add(
        self, conn: AsyncConnection, now: datetime, signed: SignedReceipt
    ) -> StoreOutcome:
        receipt = signed.receipt
        payload = canonical_bytes(receipt)
        r = receipts_t.c
        chain = (r.validator_hotkey == receipt.validator_hotkey, r.lease_id == receipt.lease_id)
        existing = (
            await conn.execute(sa.select(r.payload).where(*chain, r.seq == receipt.seq))
        ).scalar_one_or_none()
        if existing is not None:
            return self._same_key(existing, receipt)
        below = (
            await conn.execute(
                sa.select(r.payload)
                .where(*chain, r.seq < receipt.seq)
                .order_by(r.seq.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        above = (
            await conn.execute(
                sa.select(r.payload).where(*chain, r.seq > receipt.seq).order_by(r.seq).limit(1)
            )
        ).scalar_one_or_none()
        try:
            if below is not None:
                check_successor(receipt_from_payload(below), receipt)
            if above is not None:
                check_successor(receipt, receipt_from_payload(above))
        except Forbidden as exc:
            log.info(
                "receipt_breaks_chain",
                validator=receipt.validator_hotkey,
                lease=receipt.lease_id,
                seq=receipt.seq,
                error=exc.message,
            )
            return StoreOutcome.BROKEN_CHAIN
        except ByteLeapError as exc:  # a stored neighbour we cannot read: do not guess
            log.warning("receipt_neighbour_unreadable", lease=receipt.lease_id, error=exc.message)
            return StoreOutcome.BROKEN_CHAIN
        stmt = self._insert(receipts_t).values(
            lease_id=receipt.lease_id,
            miner_hotkey=receipt.miner_hotkey,
            validator_hotkey=receipt.validator_hotkey,
            seq=receipt.seq,
            period_start=_ts(receipt.period_start),
            period_end=_ts(receipt.period_end),
            gpus=receipt.gpus,
            price_per_gpu_hour=receipt.price_per_gpu_hour_micros / MICROS,
            payload=payload,
            validator_signature=bytes(signed.validator_signature),
            miner_signature=bytes(signed.miner_signature),
            received_at=now,
        )
        result = await conn.execute(
            stmt.on_conflict_do_nothing(index_elements=[r.validator_hotkey, r.lease_id, r.seq])
        )
        if result.rowcount == 1:
            return StoreOutcome.STORED
        # another writer (this validator's lease manager) stored the key in the meantime
        existing = (
            await conn.execute(sa.select(r.payload).where(*chain, r.seq == receipt.seq))
        ).scalar_one()
        return self._same_key(existing, receipt)

    @staticmethod
    def _same_key(stored: bytes, receipt: Receipt) -> StoreOutcome:
        try:
            same = canonical_bytes(receipt_from_payload(stored)) == canonical_bytes(receipt)
        except ByteLeapError:
            same = False
        if same:
            return StoreOutcome.DUPLICATE
        log.warning(
            "receipt_conflict",
            validator=receipt.validator_hotkey,
            lease=receipt.lease_id,
            seq=receipt.seq,
            miner=receipt.miner_hotkey,
        )
        return StoreOutcome.CONFLICT

    async def receipts(self, *, miner_hotkey: str | None = None) -> list[SignedReceipt]:
        """Stored receipts (oldest first by validator, lease and seq), for inspection."""
        r = receipts_t.c
        query = sa.select(r.payload, r.validator_signature, r.miner_signature).order_by(
            r.validator_hotkey, r.lease_id, r.seq
        )
        if miner_hotkey is not None:
            query = query.where(r.miner_hotkey == miner_hotkey)
        async with self._tx("reading receipts") as conn:
            rows = (await conn.execute(query)).all()
        return [
            SignedReceipt(
                receipt=receipt_from_payload(payload),
                validator_signature=bytes(vsig),
                miner_signature=bytes(msig),
            )
            for payload, vsig, msig in rows
        ]

    # ------------------------------------------------------------------ scoring

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
    "ReceiptStore",
    "StoreOutcome",
    "Transaction",
    "permitted_sellers",
    "receipt_from_payload",
]
