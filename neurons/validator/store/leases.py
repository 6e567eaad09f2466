"""Renters, the leases this validator sold, and the receipts it issued: the lease side of the store.

:class:`LeaseStore` runs on the engine (and the error handling) of a store
(:class:`~neurons.validator.store.base.StoreBase`; ``SqlStore.leases``), so every method is one
short transaction and every database failure is a :class:`~byteleap.errors.StorageError`. It is
separate from the scoring store because only the renter API and the lease manager use it.

Lease statuses:

- ``pending``: reserved for a renter, ``lease_start`` not yet confirmed by the miner;
- ``active``: the worker holds it; receipts are issued;
- ``ended``: expired or terminated by the renter (``end_reason`` says which), end receipt issued;
- ``lost``: the worker disappeared; billing stopped at the last receipt (``ended_at``);
- ``failed``: it never started (the miner refused or could not be reached).

Money is in the validator's price unit as ``float`` (the columns are ``Float``); receipts carry
integer micro-units, and :func:`booked_amount` is what a renter is charged against its limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from byteleap.errors import StorageError
from byteleap.leases.receipts import MICROS, SignedReceipt, canonical_bytes
from byteleap.scoring.observations import require_aware
from byteleap.sessions.lease_events import LeaseStatus
from neurons.validator.store.lease_rows import (
    HOLDING,
    LeaseRow,
    ReceiptTip,
    RenterRow,
    RenterSummary,
    Verification,
    aware_utc,
    booked_amount,
    lease_row,
    renter_row,
    utc_from_seconds,
)
from neurons.validator.store.schema import (
    GpuChallenge,
    Lease,
    LeaseReceipt,
    Miner,
    Renter,
    metadata,
)

if TYPE_CHECKING:
    from neurons.validator.store.base import StoreBase


renters_t = metadata.tables[Renter.__tablename__]
leases_t = metadata.tables[Lease.__tablename__]
receipts_t = metadata.tables[LeaseReceipt.__tablename__]
challenges_t = metadata.tables[GpuChallenge.__tablename__]
miners_t = metadata.tables[Miner.__tablename__]


class LeaseStore:
    """Renters, leases and own receipts on the engine of ``store`` (see the module docstring)."""

    def __init__(self, store: StoreBase) -> None:
        self._tx = store.transaction

    # ------------------------------------------------------------------ renters

    async def add_renter(
        self, name: str, key_hash: str, *, spend_limit: float | None, now: datetime
    ) -> RenterRow:
        """Insert a renter; raises ``ValueError`` when the name is taken."""
        require_aware("now", now)
        async with self._tx(f"adding renter {name}") as conn:
            taken = await conn.execute(sa.select(renters_t.c.id).where(renters_t.c.name == name))
            if taken.first() is not None:
                raise ValueError(f"a renter named {name!r} exists already")
            result = await conn.execute(
                renters_t.insert()
                .values(name=name, key_hash=key_hash, spend_limit=spend_limit, created_at=now)
                .returning(renters_t.c.id)
            )
            renter_id = int(result.scalar_one())
        return RenterRow(renter_id, name, key_hash, spend_limit, now)

    async def renter_by_key_hash(self, key_hash: str) -> RenterRow | None:
        async with self._tx("looking up an API key") as conn:
            row = (
                await conn.execute(sa.select(renters_t).where(renters_t.c.key_hash == key_hash))
            ).first()
        return None if row is None else renter_row(row)

    async def renter_by_name(self, name: str) -> RenterRow | None:
        async with self._tx(f"reading renter {name}") as conn:
            row = (await conn.execute(sa.select(renters_t).where(renters_t.c.name == name))).first()
        return None if row is None else renter_row(row)

    async def revoke_renter(self, name: str, now: datetime) -> bool:
        """Revoke the renter's key; False when there is no such renter. Revoking twice keeps
        the first time."""
        require_aware("now", now)
        async with self._tx(f"revoking renter {name}") as conn:
            found = await conn.execute(sa.select(renters_t.c.id).where(renters_t.c.name == name))
            if found.first() is None:
                return False
            await conn.execute(
                renters_t.update()
                .where(renters_t.c.name == name, renters_t.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return True

    async def renters(self) -> list[RenterSummary]:
        """Every renter with what it booked and its running leases, by name."""
        async with self._tx("listing renters") as conn:
            renters = [
                renter_row(r)
                for r in await conn.execute(sa.select(renters_t).order_by(renters_t.c.name))
            ]
            leases = [lease_row(r) for r in await conn.execute(sa.select(leases_t))]
        spent: dict[int, float] = {}
        running: dict[int, int] = {}
        for lease in leases:
            spent[lease.renter_id] = spent.get(lease.renter_id, 0.0) + booked_amount(lease)
            if lease.holding:
                running[lease.renter_id] = running.get(lease.renter_id, 0) + 1
        return [RenterSummary(r, spent.get(r.id, 0.0), running.get(r.id, 0)) for r in renters]

    async def spent(self, renter_id: int) -> float:
        """What the renter booked so far (:func:`booked_amount` over its leases)."""
        return sum(booked_amount(lease) for lease in await self.renter_leases(renter_id))

    # ------------------------------------------------------------------ leases

    async def insert_lease(self, lease: LeaseRow) -> None:
        require_aware("created_at", lease.created_at)
        async with self._tx(f"inserting lease {lease.id}") as conn:
            await conn.execute(
                leases_t.insert().values(
                    id=lease.id,
                    renter_id=lease.renter_id,
                    miner_hotkey=lease.miner_hotkey,
                    worker_pubkey=lease.worker_pubkey,
                    gpu_uuids=list(lease.gpu_uuids),
                    price_per_gpu_hour=lease.price_per_gpu_hour,
                    created_at=lease.created_at,
                    started_at=lease.started_at,
                    ends_at=lease.ends_at,
                    ended_at=lease.ended_at,
                    status=lease.status,
                    end_reason=lease.end_reason,
                )
            )

    async def lease(self, lease_id: str) -> LeaseRow | None:
        async with self._tx(f"reading lease {lease_id}") as conn:
            row = (await conn.execute(sa.select(leases_t).where(leases_t.c.id == lease_id))).first()
        return None if row is None else lease_row(row)

    async def renter_leases(self, renter_id: int) -> list[LeaseRow]:
        """The renter's leases, newest first."""
        query = (
            sa.select(leases_t)
            .where(leases_t.c.renter_id == renter_id)
            .order_by(leases_t.c.created_at.desc(), leases_t.c.id)
        )
        async with self._tx("reading a renter's leases") as conn:
            return [lease_row(r) for r in await conn.execute(query)]

    async def leases_with_status(self, *statuses: LeaseStatus) -> list[LeaseRow]:
        query = (
            sa.select(leases_t)
            .where(leases_t.c.status.in_(statuses))
            .order_by(leases_t.c.created_at, leases_t.c.id)
        )
        async with self._tx("reading leases") as conn:
            return [lease_row(r) for r in await conn.execute(query)]

    async def held_workers(self) -> set[tuple[str, str]]:
        """``(miner, worker)`` of every pending or active lease (not offered, not challenged)."""
        query = sa.select(leases_t.c.miner_hotkey, leases_t.c.worker_pubkey).where(
            leases_t.c.status.in_(HOLDING)
        )
        async with self._tx("reading leased workers") as conn:
            return {(r.miner_hotkey, r.worker_pubkey) for r in await conn.execute(query)}

    async def set_status(
        self,
        lease_id: str,
        status: LeaseStatus,
        *,
        expect: Iterable[LeaseStatus],
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
        end_reason: str | None = None,
    ) -> bool:
        """Move the lease to ``status`` if it is in one of ``expect``; False otherwise (someone
        else moved it first: the renter's termination racing the expiry, say)."""
        values: dict[str, Any] = {"status": status}
        if started_at is not None:
            values["started_at"] = started_at
        if ended_at is not None:
            values["ended_at"] = ended_at
        if end_reason is not None:
            values["end_reason"] = end_reason
        async with self._tx(f"updating lease {lease_id}") as conn:
            result = await conn.execute(
                leases_t.update()
                .where(leases_t.c.id == lease_id, leases_t.c.status.in_(list(expect)))
                .values(**values)
            )
        return int(result.rowcount) == 1

    async def extend(self, lease_id: str, ends_at: datetime) -> bool:
        """Move an active lease's end; False when it is no longer active."""
        require_aware("ends_at", ends_at)
        async with self._tx(f"extending lease {lease_id}") as conn:
            result = await conn.execute(
                leases_t.update()
                .where(leases_t.c.id == lease_id, leases_t.c.status == "active")
                .values(ends_at=ends_at)
            )
        return int(result.rowcount) == 1

    async def miner_endpoint(self, miner_hotkey: str) -> str | None:
        query = sa.select(miners_t.c.endpoint).where(miners_t.c.hotkey == miner_hotkey)
        async with self._tx(f"reading the endpoint of {miner_hotkey}") as conn:
            endpoint = (await conn.execute(query)).scalar_one_or_none()
        return None if endpoint is None else str(endpoint)

    # ------------------------------------------------------------------ verification

    async def verification(self, since: datetime) -> Verification:
        """Verified GPUs (newest verdict per GPU) and fraudulent workers since ``since``."""
        require_aware("since", since)
        c = challenges_t.c
        closed = (c.status == "closed", c.closed_at >= since)
        async with self._tx("reading verification times") as conn:
            verified_rows = await conn.execute(
                sa.select(c.miner_hotkey, c.worker_pubkey, c.gpu_uuid, sa.func.max(c.closed_at))
                .where(*closed, c.outcome == "verified")
                .group_by(c.miner_hotkey, c.worker_pubkey, c.gpu_uuid)
            )
            verified: dict[tuple[str, str], dict[str, datetime]] = {}
            for miner, worker, uuid, at in verified_rows:
                verified.setdefault((miner, worker), {})[uuid] = aware_utc(at)
            fraud_rows = await conn.execute(
                sa.select(c.miner_hotkey, c.worker_pubkey)
                .where(*closed, c.outcome == "fraud")
                .distinct()
            )
            fraud = frozenset((r.miner_hotkey, r.worker_pubkey) for r in fraud_rows)
        return Verification(verified, fraud)

    # ------------------------------------------------------------------ own receipts

    async def insert_receipt(self, signed: SignedReceipt, received_at: datetime) -> bool:
        """Store a receipt this validator issued and the miner countersigned, in the same
        ``lease_receipts`` table the receipt collector fills. ``payload`` holds the receipt's
        canonical bytes (``byteleap.leases.receipts.canonical_bytes``). Storing the same
        receipt again is a no-op (False); another receipt with the same (validator, lease,
        seq) raises ``StorageError``."""
        require_aware("received_at", received_at)
        receipt = signed.receipt
        payload = canonical_bytes(receipt)
        r = receipts_t.c
        key = (
            r.validator_hotkey == receipt.validator_hotkey,
            r.lease_id == receipt.lease_id,
            r.seq == receipt.seq,
        )
        async with self._tx(f"storing receipt {receipt.lease_id}/{receipt.seq}") as conn:
            existing = (await conn.execute(sa.select(r.payload).where(*key))).first()
            if existing is not None:
                if bytes(existing.payload) == payload:
                    return False
                raise StorageError(
                    f"receipt {receipt.lease_id}/{receipt.seq} is stored with other content"
                )
            await conn.execute(
                receipts_t.insert().values(
                    lease_id=receipt.lease_id,
                    miner_hotkey=receipt.miner_hotkey,
                    validator_hotkey=receipt.validator_hotkey,
                    seq=receipt.seq,
                    period_start=utc_from_seconds(receipt.period_start),
                    period_end=utc_from_seconds(receipt.period_end),
                    gpus=receipt.gpus,
                    price_per_gpu_hour=receipt.price_per_gpu_hour_micros / MICROS,
                    payload=payload,
                    validator_signature=signed.validator_signature,
                    miner_signature=signed.miner_signature,
                    received_at=received_at,
                )
            )
        return True

    async def receipt_tip(self, validator_hotkey: str, lease_id: str) -> ReceiptTip:
        r = receipts_t.c
        query = sa.select(sa.func.max(r.seq), sa.func.max(r.period_end)).where(
            r.validator_hotkey == validator_hotkey, r.lease_id == lease_id
        )
        async with self._tx(f"reading the receipts of lease {lease_id}") as conn:
            seq, end = (await conn.execute(query)).one()
        return ReceiptTip(
            None if seq is None else int(seq),
            None if end is None else int(aware_utc(end).timestamp()),
        )

    async def receipts_of(self, validator_hotkey: str, lease_id: str) -> list[SignedReceipt]:
        """This validator's stored receipts of one lease, by ``seq``."""
        from byteleap.leases.receipts import parse_canonical

        r = receipts_t.c
        query = (
            sa.select(r.payload, r.validator_signature, r.miner_signature)
            .where(r.validator_hotkey == validator_hotkey, r.lease_id == lease_id)
            .order_by(r.seq)
        )
        async with self._tx(f"reading the receipts of lease {lease_id}") as conn:
            rows = (await conn.execute(query)).all()
        return [
            SignedReceipt(
                receipt=parse_canonical(bytes(p)),
                validator_signature=bytes(vs),
                miner_signature=bytes(ms),
            )
            for p, vs, ms in rows
        ]


__all__ = ["LeaseStatus", "LeaseStore"]
