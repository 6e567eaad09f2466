"""The miner's durable state: its leases and the receipts it countersigned, in one SQLite file.

Why SQLite from the standard library: the miner's state is small (leases it routes, receipts of
those leases), written rarely (hourly receipts), and must survive a crash, because countersigned
receipts are the evidence every validator fetches to compute this miner's lease score. One file
under ``paths.data_dir`` (``leases.database_file``), no server, no extra dependency.

All access goes through one dedicated thread (a single-worker executor), so the event loop never
blocks on the disk and the connection is never used from two threads at once. The journal is in
WAL mode with ``synchronous=FULL``: a receipt the API answered with is on disk.

Every failure of the database is raised as ``StorageError`` (HTTP 503, excused and retried by
the validator), except the receipt rules, which raise ``Forbidden`` (a conflicting receipt).

Schema (``PRAGMA user_version`` = 1)::

    leases(lease_id PK, owner, worker_pubkey, gpu_uuids JSON, ends_at, state,
           started_at, stopped_at, updated)
    receipts(cursor INTEGER PK AUTOINCREMENT, validator_hotkey, lease_id, seq, payload
             (the canonical receipt bytes), validator_signature, miner_signature, stored_at,
             UNIQUE(validator_hotkey, lease_id, seq))

``cursor`` is AUTOINCREMENT, so a cursor is never reused after old receipts are pruned, and a
validator paging with ``after=<cursor>`` never misses a receipt or sees one twice.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from byteleap.errors import ByteLeapError, Forbidden, StorageError
from byteleap.leases.receipts import (
    Receipt,
    SignedReceipt,
    canonical_bytes,
    check_successor,
    parse_canonical,
)
from byteleap.sessions.lease_table_events import LeaseRecord

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    lease_id      TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    worker_pubkey TEXT NOT NULL,
    gpu_uuids     TEXT NOT NULL,
    ends_at       INTEGER NOT NULL,
    state         TEXT NOT NULL,
    started_at    REAL NOT NULL,
    stopped_at    REAL,
    updated       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    cursor              INTEGER PRIMARY KEY AUTOINCREMENT,
    validator_hotkey    TEXT NOT NULL,
    lease_id            TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    payload             BLOB NOT NULL,
    validator_signature BLOB NOT NULL,
    miner_signature     BLOB NOT NULL,
    stored_at           REAL NOT NULL,
    UNIQUE (validator_hotkey, lease_id, seq)
);
CREATE INDEX IF NOT EXISTS receipts_stored_at ON receipts (stored_at);
"""


class MinerStore:
    """Leases and receipts in SQLite at ``path`` (``None``: in memory, for tests and devnet)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miner-store")
        try:
            self._conn = self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    # ------------------------------------------------------------------ plumbing

    def _open(self) -> sqlite3.Connection:
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                ":memory:" if self.path is None else str(self.path),
                isolation_level=None,  # autocommit; transactions are explicit
                check_same_thread=False,  # opened here, used only by the executor's thread
            )
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {version}; this miner knows {SCHEMA_VERSION}"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the miner database {self.path}: {exc}") from None
        return conn

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self._guard, fn, *args))

    def _sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._executor.submit(self._guard, fn, *args).result()

    @staticmethod
    def _guard(fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except ByteLeapError:
            raise
        except sqlite3.Error as exc:
            raise StorageError(f"miner database: {exc}") from None

    def close(self) -> None:
        """Close the database (waits for queued writes)."""
        try:
            self._executor.submit(self._conn.close).result()
        finally:
            self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ leases

    def load_leases(self) -> list[LeaseRecord]:
        """Every stored lease (called once at start-up, before the API serves)."""
        return self._sync(self._load_leases)

    def _load_leases(self) -> list[LeaseRecord]:
        rows = self._conn.execute(
            "SELECT lease_id, owner, worker_pubkey, gpu_uuids, ends_at, state, started_at,"
            " stopped_at, updated FROM leases"
        ).fetchall()
        return [
            LeaseRecord(
                lease_id=row[0],
                owner=row[1],
                worker_pubkey=row[2],
                gpu_uuids=list(json.loads(row[3])),
                ends_at=int(row[4]),
                state=row[5],
                started_at=float(row[6]),
                stopped_at=None if row[7] is None else float(row[7]),
                updated=float(row[8]),
            )
            for row in rows
        ]

    async def save_lease(self, record: LeaseRecord) -> None:
        await self._call(self._save_lease, record)

    def _save_lease(self, r: LeaseRecord) -> None:
        self._conn.execute(
            "INSERT INTO leases (lease_id, owner, worker_pubkey, gpu_uuids, ends_at, state,"
            " started_at, stopped_at, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (lease_id) DO UPDATE SET owner = excluded.owner,"
            " worker_pubkey = excluded.worker_pubkey, gpu_uuids = excluded.gpu_uuids,"
            " ends_at = excluded.ends_at, state = excluded.state,"
            " started_at = excluded.started_at, stopped_at = excluded.stopped_at,"
            " updated = excluded.updated",
            (
                r.lease_id,
                r.owner,
                r.worker_pubkey,
                json.dumps(r.gpu_uuids),
                r.ends_at,
                r.state,
                r.started_at,
                r.stopped_at,
                r.updated,
            ),
        )

    async def delete_lease(self, lease_id: str) -> None:
        await self._call(self._delete_lease, lease_id)

    def _delete_lease(self, lease_id: str) -> None:
        self._conn.execute("DELETE FROM leases WHERE lease_id = ?", (lease_id,))

    # ------------------------------------------------------------------ receipts

    async def add_receipt(
        self,
        receipt: Receipt,
        validator_signature: bytes,
        miner_signature: bytes,
        *,
        now: float,
    ) -> tuple[SignedReceipt, int, bool]:
        """Store a countersigned receipt; returns it as stored, its cursor, and whether it is new.

        A receipt identical to a stored one (same validator, lease, seq and bytes) is a retry:
        the stored one is returned with its original signatures. The same seq with other bytes,
        or a receipt that may not follow the latest one (``check_successor``), is ``Forbidden``.
        The check and the insert are one transaction.
        """
        return await self._call(
            self._add_receipt, receipt, bytes(validator_signature), bytes(miner_signature), now
        )

    def _add_receipt(
        self, receipt: Receipt, validator_signature: bytes, miner_signature: bytes, now: float
    ) -> tuple[SignedReceipt, int, bool]:
        payload = canonical_bytes(receipt)
        key = (receipt.validator_hotkey, receipt.lease_id)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            row = self._conn.execute(
                "SELECT cursor, payload, validator_signature, miner_signature FROM receipts"
                " WHERE validator_hotkey = ? AND lease_id = ? AND seq = ?",
                (*key, receipt.seq),
            ).fetchone()
            if row is not None:
                if bytes(row[1]) != payload:
                    raise Forbidden(
                        f"seq {receipt.seq} of lease {receipt.lease_id} was already countersigned "
                        "with other content"
                    )
                self._conn.execute("COMMIT")
                stored = SignedReceipt(
                    receipt=receipt,
                    validator_signature=bytes(row[2]),
                    miner_signature=bytes(row[3]),
                )
                return stored, int(row[0]), False
            last = self._conn.execute(
                "SELECT payload FROM receipts WHERE validator_hotkey = ? AND lease_id = ?"
                " ORDER BY seq DESC LIMIT 1",
                key,
            ).fetchone()
            check_successor(parse_canonical(bytes(last[0])) if last else None, receipt)
            cursor = self._conn.execute(
                "INSERT INTO receipts (validator_hotkey, lease_id, seq, payload,"
                " validator_signature, miner_signature, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, receipt.seq, payload, validator_signature, miner_signature, now),
            ).lastrowid
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        signed = SignedReceipt(
            receipt=receipt,
            validator_signature=validator_signature,
            miner_signature=miner_signature,
        )
        assert cursor is not None
        return signed, int(cursor), True

    async def receipts_after(
        self, after: int, limit: int
    ) -> tuple[list[tuple[int, SignedReceipt]], bool]:
        """Up to ``limit`` receipts with a cursor above ``after``, oldest first, and whether
        more follow."""
        return await self._call(self._receipts_after, after, limit)

    def _receipts_after(
        self, after: int, limit: int
    ) -> tuple[list[tuple[int, SignedReceipt]], bool]:
        rows = self._conn.execute(
            "SELECT cursor, payload, validator_signature, miner_signature FROM receipts"
            " WHERE cursor > ? ORDER BY cursor LIMIT ?",
            (after, limit + 1),
        ).fetchall()
        page = [
            (
                int(row[0]),
                SignedReceipt(
                    receipt=parse_canonical(bytes(row[1])),
                    validator_signature=bytes(row[2]),
                    miner_signature=bytes(row[3]),
                ),
            )
            for row in rows[:limit]
        ]
        return page, len(rows) > limit

    async def prune(self, *, leases_before: float, receipts_before: float) -> tuple[int, int]:
        """Delete ended leases last changed before ``leases_before`` and receipts stored before
        ``receipts_before``; returns how many of each."""
        return await self._call(self._prune, leases_before, receipts_before)

    def _prune(self, leases_before: float, receipts_before: float) -> tuple[int, int]:
        leases = self._conn.execute(
            "DELETE FROM leases WHERE (state = 'ended' AND updated < ?) OR ends_at < ?",
            (leases_before, leases_before),
        ).rowcount
        receipts = self._conn.execute(
            "DELETE FROM receipts WHERE stored_at < ?", (receipts_before,)
        ).rowcount
        return leases, receipts


__all__ = ["SCHEMA_VERSION", "MinerStore"]
