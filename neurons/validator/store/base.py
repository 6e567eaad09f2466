"""What every aggregate of the validator's store shares: the engine, one transaction per call, the
mapping of database failures to :class:`~byteleap.errors.StorageError`, and the tables.

Every public method of the store is one short transaction (:meth:`StoreBase.transaction`).
Every database failure (connection refused or dropped, a locked SQLite file, a constraint
violation, a closed store) surfaces as :class:`byteleap.errors.StorageError`, which the rounds
treat as transient; invalid arguments (naive datetimes, a verified verdict without a throughput)
raise ``ValueError`` before anything is written. Queries are SQLAlchemy Core on the tables of
:mod:`neurons.validator.store.schema`, with the dialect's own ``INSERT ... ON CONFLICT`` for
upserts, so both engines run the same statements.

The aggregates (:mod:`.miners`, :mod:`.challenges`, :mod:`.scoring_inputs`,
:mod:`.weight_submissions`, :mod:`.retention`, :mod:`.leases`, :mod:`.receipts`) import this
module and never each other's classes; :class:`~neurons.validator.store.sql_store.SqlStore`
composes them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byteleap.errors import StorageError
from byteleap.scoring import ScoringParams
from neurons.validator.store.receipts import ReceiptStore
from neurons.validator.store.schema import (
    Availability,
    Gpu,
    GpuChallenge,
    Lease,
    LeaseReceipt,
    Miner,
    WeightSubmissionRow,
    Worker,
    metadata,
)

T = TypeVar("T")

#: how long a GPU claim may go unseen before it lapses (``scoring.claim_expiry_days``)
DEFAULT_CLAIM_EXPIRY = ScoringParams().claim_expiry
#: challenge statuses of a row still waiting for its verdict
IN_FLIGHT = ("dispatched", "committed")
#: rows (parameter sets) per statement of the bulk writes; keys per ``IN`` of their reads
BULK_CHUNK_ROWS = 10_000
BULK_CHUNK_KEYS = 2_000

#: exceptions of the drivers that may escape SQLAlchemy's wrapping (mostly while connecting)
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    sqlite3.Error,
)

miners_t = metadata.tables[Miner.__tablename__]
workers_t = metadata.tables[Worker.__tablename__]
gpus_t = metadata.tables[Gpu.__tablename__]
avail_t = metadata.tables[Availability.__tablename__]
challenges_t = metadata.tables[GpuChallenge.__tablename__]
weights_t = metadata.tables[WeightSubmissionRow.__tablename__]
leases_t = metadata.tables[Lease.__tablename__]
receipts_t = metadata.tables[LeaseReceipt.__tablename__]


def registered() -> Any:
    """Hotkeys of registered miners, as a subquery for ``IN``."""
    return sa.select(miners_t.c.hotkey).where(miners_t.c.registered.is_(True))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StoreBase:
    """An :class:`AsyncEngine` whose schema is at head, with the store's transaction rules.

    Every aggregate derives from it, so each of them runs on its own with an engine (its tests
    do) and :class:`~neurons.validator.store.sql_store.SqlStore` runs them all on one.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._closed = False
        self._receipts = ReceiptStore(self.transaction, self._dialect)
        #: a GPU claim unseen this long has lapsed: it blocks nobody in ``workers()``, a new
        #: sighting starts it again, and ``prune()`` never deletes a claim sooner. Set it to
        #: ``ScoringParams.claim_expiry`` (``scoring.claim_expiry_days``); the scorer takes its
        #: own value from the params.
        self.claim_expiry: timedelta = DEFAULT_CLAIM_EXPIRY

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._dialect

    @property
    def receipts(self) -> ReceiptStore:
        """Collected receipts and per-miner cursors, on this engine and its transactions."""
        return self._receipts

    @asynccontextmanager
    async def transaction(self, what: str) -> AsyncIterator[AsyncConnection]:
        """One transaction; database failures become :class:`StorageError` naming ``what``."""
        if self._closed:
            raise StorageError(f"{what}: the store is closed")
        try:
            async with self._engine.begin() as conn:
                yield conn
        except StorageError:
            raise
        except StatementError as exc:
            # a bad argument caught while binding it is the caller's bug, not the database's
            if not isinstance(exc, DBAPIError) and isinstance(exc.orig, ValueError | TypeError):
                raise exc.orig from None
            raise storage_error(what, exc) from exc
        except _DRIVER_ERRORS as exc:
            raise storage_error(what, exc) from exc

    def _insert(self, table: sa.Table) -> Any:
        return (pg_insert if self._dialect == "postgresql" else sqlite_insert)(table)

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self.transaction("pinging the database") as conn:
            await conn.execute(sa.text("SELECT 1"))
        return time.perf_counter() - started

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._engine.dispose()


def storage_error(what: str, exc: BaseException) -> StorageError:
    """``exc`` (a driver's or SQLAlchemy's) as the store's :class:`StorageError`."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return StorageError(f"{what} failed: {type(cause).__name__}: {text}"[:500])


__all__ = [
    "BULK_CHUNK_KEYS",
    "BULK_CHUNK_ROWS",
    "DEFAULT_CLAIM_EXPIRY",
    "IN_FLIGHT",
    "StoreBase",
    "avail_t",
    "challenges_t",
    "chunks",
    "gpus_t",
    "leases_t",
    "miners_t",
    "receipts_t",
    "registered",
    "storage_error",
    "weights_t",
    "workers_t",
]
