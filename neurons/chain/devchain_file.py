"""The devchain's SQLite file: its schema, its parameters (:class:`DevChainParams`, kept in the
``meta`` table), opening it (WAL, busy timeout), its transactions and its rows as values
(:class:`WeightsRecord`, :class:`~byteleap.chain.NeuronView`). :mod:`neurons.chain.devchain`
is the chain on top of it."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from byteleap.chain import (
    Endpoint,
    NeuronView,
)
from byteleap.errors import ChainError

SCHEMA_VERSION = 1


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS neurons (
    uid                INTEGER PRIMARY KEY,
    hotkey             TEXT NOT NULL UNIQUE,
    coldkey            TEXT NOT NULL,
    stake              REAL NOT NULL,
    validator_permit   INTEGER NOT NULL,
    ip                 TEXT,
    port               INTEGER,
    registered_block   INTEGER NOT NULL,
    last_serve_block   INTEGER,
    last_weights_block INTEGER
);
CREATE TABLE IF NOT EXISTS weights (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    validator_uid INTEGER NOT NULL,
    hotkey        TEXT NOT NULL,
    block         INTEGER NOT NULL,
    version_key   INTEGER NOT NULL,
    uids          TEXT NOT NULL,
    weight_values TEXT NOT NULL,
    submitted_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS weights_by_validator ON weights (validator_uid, id);
"""


@dataclass(frozen=True, slots=True)
class DevChainParams:
    """The subnet's parameters, fixed when the devchain file is created."""

    netuid: int = 128
    #: blocks per epoch (the real chain's default is 360)
    tempo: int = 360
    #: seconds per block; the real chain uses 12, devnet may use 0.25 (fast blocks)
    block_seconds: float = 12.0
    #: minimum blocks between two weight submissions of one hotkey (real default: 100)
    weights_rate_limit: int = 100
    #: minimum blocks between two endpoint publications of one hotkey (0: no limit)
    serving_rate_limit: int = 0
    #: submissions with a lower ``version_key`` are refused (the subnet's WeightsVersionKey)
    min_version_key: int = 0
    #: the subnet's capacity
    max_uids: int = 256

    def __post_init__(self) -> None:
        if not 0 <= self.netuid <= 65_535:
            raise ValueError(f"netuid must be in 0..65535, got {self.netuid}")
        if self.tempo < 1:
            raise ValueError(f"tempo must be >= 1, got {self.tempo}")
        if not (math.isfinite(self.block_seconds) and self.block_seconds > 0):
            raise ValueError(f"block_seconds must be > 0, got {self.block_seconds}")
        for name in ("weights_rate_limit", "serving_rate_limit", "min_version_key"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_uids < 1:
            raise ValueError(f"max_uids must be >= 1, got {self.max_uids}")


@dataclass(frozen=True, slots=True)
class WeightsRecord:
    """One stored weights submission."""

    id: int
    validator_uid: int
    hotkey: str
    block: int
    version_key: int
    uids: tuple[int, ...]
    #: u16 values from bittensor's ``normalize``, parallel to ``uids``
    values: tuple[int, ...]
    submitted_at: float

    @property
    def weights(self) -> dict[int, int]:
        """``uid -> u16 value``."""
        return dict(zip(self.uids, self.values, strict=True))

    def shares(self) -> dict[int, float]:
        """``uid -> value / sum(values)``: the vector as fractions summing to 1."""
        total = sum(self.values)
        return {uid: value / total for uid, value in zip(self.uids, self.values, strict=True)}


def connect_file(path: Path, busy_timeout_s: float, *, create: bool) -> sqlite3.Connection:
    uri = path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    try:
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=busy_timeout_s,
            isolation_level=None,  # transactions are explicit (BEGIN / COMMIT)
            check_same_thread=False,  # used from worker threads, guarded by a lock
        )
    except sqlite3.Error as exc:
        raise ChainError(f"cannot open the devchain at {path}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ChainError(f"cannot switch {path} to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        raise ChainError(f"cannot open the devchain at {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def chain_transaction(conn: sqlite3.Connection, *, immediate: bool = True) -> Iterator[None]:
    """BEGIN (IMMEDIATE: take the write lock up front, so no upgrade deadlock) ... COMMIT."""
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def load_meta(conn: sqlite3.Connection, path: Path) -> tuple[DevChainParams, float]:
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise ChainError(f"{path} is not a devchain: {exc}") from exc
    if not rows:
        raise ChainError(f"{path} is not an initialised devchain")
    version = json.loads(rows.get("schema_version", "0"))
    if version != SCHEMA_VERSION:
        raise ChainError(
            f"the devchain at {path} has schema version {version}; "
            f"this build reads version {SCHEMA_VERSION}: create a fresh one"
        )
    return params_from_meta(rows, path), float(json.loads(rows["genesis"]))


def params_from_meta(rows: Mapping[str, str], path: Path) -> DevChainParams:
    values: dict[str, Any] = {}
    for f in fields(DevChainParams):
        key = f"param.{f.name}"
        if key not in rows:
            raise ChainError(f"the devchain at {path} lacks parameter {f.name!r}")
        values[f.name] = json.loads(rows[key])
    return DevChainParams(**values)


def neuron_from_row(row: sqlite3.Row) -> NeuronView:
    axon = Endpoint(row["ip"], row["port"]) if row["ip"] is not None else None
    return NeuronView(
        uid=int(row["uid"]),
        hotkey=row["hotkey"],
        coldkey=row["coldkey"],
        stake=float(row["stake"]),
        validator_permit=bool(row["validator_permit"]),
        axon=axon,
    )


def record_from_row(row: sqlite3.Row) -> WeightsRecord:
    return WeightsRecord(
        id=int(row["id"]),
        validator_uid=int(row["validator_uid"]),
        hotkey=row["hotkey"],
        block=int(row["block"]),
        version_key=int(row["version_key"]),
        uids=tuple(json.loads(row["uids"])),
        values=tuple(json.loads(row["weight_values"])),
        submitted_at=float(row["submitted_at"]),
    )


__all__ = ["SCHEMA_VERSION", "DevChainParams", "WeightsRecord"]
