"""The devchain: a local stand-in for the Bittensor chain, for ``byteleap devnet`` and tests.

One SQLite file is the whole chain. Every process of a devnet (validator, miners) opens the same
file; SQLite in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` write transactions keeps
concurrent writers correct. Blocks are derived from wall-clock time, so every process agrees on
the current block without a block producer::

    block = floor((clock() - genesis) / block_seconds)

What it holds: the subnet's parameters (netuid, tempo, block time, rate limits), the registered
neurons (hotkey, coldkey, stake, validator permit, served endpoint) and every weights submission.
What it enforces, like the real chain: weights and serving need a registered hotkey, weights need a
validator permit, only registered uids may be weighted, ``version_key`` must not be below the
subnet's minimum, and a hotkey may set weights only every ``weights_rate_limit`` blocks. Weights
are quantised with bittensor's own ``normalize``, so the stored u16 vectors are exactly what the
real chain would receive. Nothing is signed: anyone who can write the file is trusted.

Two layers:

- :class:`DevChain` is the file (blocking, thread-safe). Devnet uses its admin methods
  (:meth:`DevChain.create`, :meth:`DevChain.register`) to set the network up and
  :meth:`DevChain.latest_weights` to print the final table.
- :class:`DevChainClient` implements :class:`byteleap.chain.ChainPort` for one hotkey. Each call
  runs in a worker thread (``asyncio.to_thread``), so the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from bittensor.intents.weights import normalize

from byteleap.aliases import Clock
from byteleap.chain import (
    ChainRateLimited,
    ChainRefused,
    MetagraphView,
    NotRegistered,
    WeightsReceipt,
    check_serve_address,
    check_weights,
)
from byteleap.errors import ChainError
from neurons.chain.devchain_file import (
    SCHEMA,
    SCHEMA_VERSION,
    DevChainParams,
    WeightsRecord,
    chain_transaction,
    connect_file,
    load_meta,
    neuron_from_row,
    params_from_meta,
    record_from_row,
)

T = TypeVar("T")


class DevChain:
    """The devchain file. Blocking and thread-safe; see :class:`DevChainClient` for async use.

    ``DevChain(path)`` opens an existing devchain (``ChainError`` when there is none);
    :meth:`create` makes a new one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = time.time,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        if not self.path.is_file():
            raise ChainError(
                f"no devchain at {self.path}: create it first (byteleap devnet does this)"
            )
        conn = connect_file(self.path, busy_timeout_s, create=False)
        try:
            self.params, self.genesis = load_meta(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        params: DevChainParams | None = None,
        *,
        genesis: float | None = None,
        exist_ok: bool = False,
        clock: Clock = time.time,
        busy_timeout_s: float = 30.0,
    ) -> DevChain:
        """Create a devchain at ``path`` whose block 0 starts at ``genesis`` (default: now).

        With ``exist_ok``, an existing devchain with the same parameters is opened as it is
        (its genesis, neurons and weights are kept); one with different parameters is an error.
        """
        params = params or DevChainParams()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect_file(path, busy_timeout_s, create=True)
        try:
            with chain_transaction(conn):
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if rows:
                    if not exist_ok:
                        raise ChainError(f"a devchain already exists at {path}")
                    existing = params_from_meta(rows, path)
                    if existing != params:
                        raise ChainError(
                            f"the devchain at {path} was created with {existing}, not {params}"
                        )
                else:
                    meta = {f"param.{k}": json.dumps(v) for k, v in asdict(params).items()}
                    meta["schema_version"] = json.dumps(SCHEMA_VERSION)
                    meta["genesis"] = json.dumps(clock() if genesis is None else float(genesis))
                    conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        except sqlite3.Error as exc:
            raise ChainError(f"cannot create the devchain at {path}: {exc}") from exc
        finally:
            conn.close()
        return cls(path, clock=clock, busy_timeout_s=busy_timeout_s)

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, serialised within the process and across processes."""
        with self._lock:
            if self._conn is None:
                raise ChainError("the devchain is closed")
            try:
                with chain_transaction(self._conn, immediate=write):
                    yield self._conn
            except sqlite3.Error as exc:
                raise ChainError(f"devchain database error: {exc}") from exc

    def _block_now(self) -> int:
        return max(0, math.floor((self._clock() - self.genesis) / self.params.block_seconds + 1e-9))

    def _neuron_row(self, conn: sqlite3.Connection, hotkey: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM neurons WHERE hotkey = ?", (hotkey,)
        ).fetchone()
        return row

    # ------------------------------------------------------------------ reads

    def current_block(self) -> int:
        """The current block, from the clock (no database access)."""
        return self._block_now()

    def block_at(self, when: float) -> int:
        """The block at wall-clock time ``when``."""
        return max(0, math.floor((when - self.genesis) / self.params.block_seconds + 1e-9))

    def metagraph(self) -> MetagraphView:
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT * FROM neurons ORDER BY uid").fetchall()
            block = self._block_now()
        return MetagraphView(
            netuid=self.params.netuid, block=block, neurons=tuple(neuron_from_row(r) for r in rows)
        )

    def latest_weights(self) -> dict[int, WeightsRecord]:
        """The latest submission of every validator, keyed by validator uid."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT * FROM weights WHERE id IN "
                "(SELECT MAX(id) FROM weights GROUP BY validator_uid) ORDER BY validator_uid"
            ).fetchall()
        return {r["validator_uid"]: record_from_row(r) for r in rows}

    def weights_history(self, validator_uid: int | None = None) -> list[WeightsRecord]:
        """Every submission (of one validator, when given), oldest first."""
        with self._tx(write=False) as conn:
            if validator_uid is None:
                rows = conn.execute("SELECT * FROM weights ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM weights WHERE validator_uid = ? ORDER BY id", (validator_uid,)
                ).fetchall()
        return [record_from_row(r) for r in rows]

    # ------------------------------------------------------------------ admin

    def register(
        self,
        hotkey: str,
        coldkey: str,
        *,
        stake: float = 0.0,
        validator_permit: bool = False,
    ) -> int:
        """Register ``hotkey`` (owned by ``coldkey``) and return its uid.

        Uids are handed out in order from 0. Registering a hotkey again with the same coldkey
        keeps its uid and sets the given stake and permit (so devnet set-up can be re-run);
        with a different coldkey it is refused.
        """
        if not hotkey or not coldkey:
            raise ValueError("hotkey and coldkey must be non-empty")
        if not (math.isfinite(stake) and stake >= 0):
            raise ValueError(f"stake must be finite and >= 0, got {stake}")
        with self._tx(write=True) as conn:
            row = self._neuron_row(conn, hotkey)
            if row is not None:
                if row["coldkey"] != coldkey:
                    raise ChainRefused(
                        f"hotkey {hotkey} is already registered under another coldkey"
                    )
                conn.execute(
                    "UPDATE neurons SET stake = ?, validator_permit = ? WHERE uid = ?",
                    (float(stake), int(validator_permit), row["uid"]),
                )
                return int(row["uid"])
            uid = int(conn.execute("SELECT COALESCE(MAX(uid) + 1, 0) FROM neurons").fetchone()[0])
            if uid >= self.params.max_uids:
                raise ChainRefused(
                    f"netuid {self.params.netuid} is full ({self.params.max_uids} uids)"
                )
            conn.execute(
                "INSERT INTO neurons (uid, hotkey, coldkey, stake, validator_permit, "
                "registered_block) VALUES (?, ?, ?, ?, ?, ?)",
                (uid, hotkey, coldkey, float(stake), int(validator_permit), self._block_now()),
            )
            return uid

    def set_stake(self, hotkey: str, stake: float, *, validator_permit: bool | None = None) -> None:
        """Change a registered neuron's stake (and permit, when given)."""
        if not (math.isfinite(stake) and stake >= 0):
            raise ValueError(f"stake must be finite and >= 0, got {stake}")
        with self._tx(write=True) as conn:
            row = self._neuron_row(conn, hotkey)
            if row is None:
                raise NotRegistered(hotkey, self.params.netuid)
            permit = row["validator_permit"] if validator_permit is None else validator_permit
            conn.execute(
                "UPDATE neurons SET stake = ?, validator_permit = ? WHERE uid = ?",
                (float(stake), int(permit), row["uid"]),
            )

    # ------------------------------------------------------------------ hotkey-signed calls

    def serve(self, hotkey: str, ip: str, port: int) -> None:
        """Publish ``hotkey``'s endpoint."""
        endpoint = check_serve_address(ip, port)
        with self._tx(write=True) as conn:
            row = self._neuron_row(conn, hotkey)
            if row is None:
                raise NotRegistered(hotkey, self.params.netuid)
            block = self._block_now()
            limit = self.params.serving_rate_limit
            last = row["last_serve_block"]
            if limit and last is not None and block - last < limit:
                remaining = limit - (block - last)
                raise ChainRateLimited(
                    f"hotkey {hotkey} served its endpoint {block - last} blocks ago; the serving "
                    f"rate limit is {limit} blocks: retry in {remaining} blocks",
                    blocks_remaining=remaining,
                )
            conn.execute(
                "UPDATE neurons SET ip = ?, port = ?, last_serve_block = ? WHERE uid = ?",
                (endpoint.ip, endpoint.port, block, row["uid"]),
            )

    def set_weights(
        self, hotkey: str, weights: Mapping[int, float], *, version_key: int
    ) -> WeightsReceipt:
        """Store ``hotkey``'s weights, with the real chain's checks (see the module docstring)."""
        checked = check_weights(weights)
        uids, values = normalize(list(checked), list(checked.values()))
        with self._tx(write=True) as conn:
            row = self._neuron_row(conn, hotkey)
            netuid = self.params.netuid
            if row is None:
                raise NotRegistered(hotkey, netuid)
            if not row["validator_permit"]:
                raise ChainRefused(
                    f"hotkey {hotkey} (uid {row['uid']}) has no validator permit on netuid "
                    f"{netuid}: it cannot set weights"
                )
            if version_key < self.params.min_version_key:
                raise ChainRefused(
                    f"version_key {version_key} is below the subnet's minimum "
                    f"{self.params.min_version_key}: upgrade the validator"
                )
            known = {r[0] for r in conn.execute("SELECT uid FROM neurons")}
            unknown = sorted(set(uids) - known)
            if unknown:
                raise ChainRefused(f"weights name uids that are not registered: {unknown}")
            block = self._block_now()
            limit = self.params.weights_rate_limit
            last = row["last_weights_block"]
            if limit and last is not None and block - last < limit:
                remaining = limit - (block - last)
                raise ChainRateLimited(
                    f"weights on netuid {netuid} were last set {block - last} blocks ago; the "
                    f"rate limit is {limit} blocks: retry in {remaining} blocks",
                    blocks_remaining=remaining,
                )
            conn.execute(
                "INSERT INTO weights (validator_uid, hotkey, block, version_key, uids, "
                "weight_values, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    row["uid"],
                    hotkey,
                    block,
                    int(version_key),
                    json.dumps(uids),
                    json.dumps(values),
                    self._clock(),
                ),
            )
            conn.execute(
                "UPDATE neurons SET last_weights_block = ? WHERE uid = ?", (block, row["uid"])
            )
        return WeightsReceipt(
            success=True,
            message=f"weights of uid {row['uid']} stored at block {block}",
            block=block,
            uids=tuple(uids),
            values=tuple(values),
            version_key=int(version_key),
        )

    # ------------------------------------------------------------------ lifecycle

    def client(self, hotkey: str) -> DevChainClient:
        """A :class:`ChainPort` for ``hotkey`` sharing this file handle."""
        return DevChainClient(self, hotkey)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> DevChain:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DevChain(path={str(self.path)!r}, params={self.params})"


class DevChainClient:
    """:class:`byteleap.chain.ChainPort` on a devchain, acting as one hotkey.

    Build it from an open :class:`DevChain` (shared, not closed by :meth:`close`) or with
    :meth:`open` from a path (owned, closed by :meth:`close`).
    """

    def __init__(self, chain: DevChain, hotkey: str, *, owns_chain: bool = False) -> None:
        self.chain = chain
        self.hotkey = hotkey
        self.netuid = chain.params.netuid
        self._owns_chain = owns_chain
        self._closed = False

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], hotkey: str, *, clock: Clock = time.time
    ) -> DevChainClient:
        """Open the devchain at ``path`` (in a worker thread) for ``hotkey``."""
        chain = await asyncio.to_thread(DevChain, path, clock=clock)
        return cls(chain, hotkey, owns_chain=True)

    @classmethod
    async def for_wallet(
        cls, path: str | os.PathLike[str], wallet: Any, *, clock: Clock = time.time
    ) -> DevChainClient:
        """Open the devchain at ``path`` for a bittensor wallet's hotkey."""
        hotkey = await asyncio.to_thread(lambda: wallet.hotkey.ss58_address)
        return await cls.open(path, hotkey, clock=clock)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise ChainError("the devchain client is closed")
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def metagraph(self) -> MetagraphView:
        return await self._run(self.chain.metagraph)

    async def serve(self, ip: str, port: int) -> None:
        await self._run(self.chain.serve, self.hotkey, ip, port)

    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int
    ) -> WeightsReceipt:
        return await self._run(
            self.chain.set_weights, self.hotkey, dict(weights), version_key=version_key
        )

    async def current_block(self) -> int:
        if self._closed:
            raise ChainError("the devchain client is closed")
        return self.chain.current_block()

    async def tempo(self) -> int:
        if self._closed:
            raise ChainError("the devchain client is closed")
        return self.chain.params.tempo

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_chain:
            await asyncio.to_thread(self.chain.close)

    def __repr__(self) -> str:
        return f"DevChainClient(hotkey={self.hotkey!r}, chain={self.chain!r})"


# ---------------------------------------------------------------------- helpers


__all__ = ["DevChain", "DevChainClient"]
