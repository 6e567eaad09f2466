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

What the receipts count for in scoring is :mod:`~neurons.validator.store.receipt_scoring`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.config.leasing import DEFAULT_MAX_PRICES
from byteleap.errors import ByteLeapError, Forbidden
from byteleap.leases.receipts import (
    MICROS,
    Receipt,
    canonical_bytes,
    check_successor,
)
from byteleap.protocol.miner_api.receipts import SignedReceipt
from byteleap.scoring.observations import require_aware
from neurons.validator.store.receipt_scoring import (
    DEFAULT_LEASE_WINDOW,
    ReceiptScoring,
    Transaction,
    receipt_from_payload,
)
from neurons.validator.store.schema import (
    LeaseReceipt,
    ReceiptCursor,
    metadata,
)

log = structlog.get_logger(__name__)

receipts_t = metadata.tables[LeaseReceipt.__tablename__]
cursors_t = metadata.tables[ReceiptCursor.__tablename__]


class StoreOutcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    BROKEN_CHAIN = "broken_chain"


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class ReceiptStore(ReceiptScoring):
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


__all__ = ["ReceiptStore", "StoreOutcome"]
