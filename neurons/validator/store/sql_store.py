"""The validator's store on SQLAlchemy 2 async: one implementation for PostgreSQL and SQLite.

Every public method is one short transaction. Every database failure (connection refused or
dropped, a locked SQLite file, a constraint violation, a closed store) surfaces as
:class:`byteleap.errors.StorageError`, which the rounds treat as transient; invalid arguments
(naive datetimes, a verified verdict without a throughput) raise ``ValueError`` before anything is
written. Queries are SQLAlchemy Core on the tables of :mod:`neurons.validator.store.schema`, with
the dialect's own ``INSERT ... ON CONFLICT`` for upserts, so both engines run the same statements.
The one exception is an epoch's bulk insert (:meth:`SqlStore.open_challenges`), which PostgreSQL
loads with ``COPY`` inside the same transaction (several times faster for 200,000 rows).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from byteleap.chain import NeuronView
from byteleap.challenge.params import ChallengeParams
from byteleap.errors import Outcome, StorageError
from byteleap.scoring import (
    OUR_FAILURES,
    AvailabilityCount,
    ChallengeObservation,
    GpuClaim,
    LeaseInterval,
    LeaseUsage,
    ScoringParams,
    availability_bucket_range,
    bucket_index,
    earliest_challenge_needed,
    hour_index,
    hour_start,
    resolve_gpu_ownership,
    verification_since,
    worker_coverage,
)
from byteleap.scoring.availability import EPOCH, HOUR, BucketRanges
from byteleap.scoring.observations import require_aware
from neurons.validator.store import availability as avail
from neurons.validator.store.receipts import ReceiptStore
from neurons.validator.store.records import (
    ChallengeOpen,
    ChallengeRow,
    ChallengeVerdict,
    GpuSnapshot,
    MinerRow,
    MinerTally,
    ScoringInputs,
    ValidatorStore,
    VerifiedSample,
    WeightSubmission,
    WorkerRow,
    WorkerSnapshot,
)
from neurons.validator.store.schema import (
    Availability,
    Challenge,
    Gpu,
    Lease,
    LeaseReceipt,
    Miner,
    UTCDateTime,
    WeightSubmissionRow,
    Worker,
    metadata,
)

if TYPE_CHECKING:
    from neurons.validator.store.leases import LeaseStore

log = structlog.get_logger(__name__)
T = TypeVar("T")

ROOT_BYTES = 32
#: longest poll error kept (the rest is cut: it is for an operator's eye, not for parsing)
MAX_ERROR_CHARS = 2000
#: ``failure`` of the challenges closed by :meth:`SqlStore.close_in_flight`
RESTART_FAILURE = "restart"
assert RESTART_FAILURE in OUR_FAILURES, "a restart is the validator's fault, never the miner's"
#: how long a GPU claim may go unseen before it lapses (``scoring.claim_expiry_days``)
DEFAULT_CLAIM_EXPIRY = ScoringParams().claim_expiry
IN_FLIGHT = ("dispatched", "committed")
#: rows (parameter sets) per statement of the bulk writes; keys per ``IN`` of their reads
BULK_CHUNK_ROWS = 10_000
BULK_CHUNK_KEYS = 2_000
#: rows per ``COPY`` of :meth:`SqlStore.open_challenges` on PostgreSQL
BULK_COPY_ROWS = 50_000

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
challenges_t = metadata.tables[Challenge.__tablename__]
weights_t = metadata.tables[WeightSubmissionRow.__tablename__]
leases_t = metadata.tables[Lease.__tablename__]
receipts_t = metadata.tables[LeaseReceipt.__tablename__]


def _registered() -> Any:
    """Hotkeys of registered miners, as a subquery for ``IN``."""
    return sa.select(miners_t.c.hotkey).where(miners_t.c.registered.is_(True))


class SqlStore:
    """:class:`~neurons.validator.store.records.ValidatorStore` on an :class:`AsyncEngine`.

    Build it with :func:`neurons.validator.store.open_store`, which also checks (or upgrades) the
    schema; the constructor only wraps an engine whose schema is already at head.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._closed = False
        self._receipts = ReceiptStore(self._tx, self._dialect)
        #: a GPU claim unseen this long has lapsed: it blocks nobody in :meth:`workers`, a new
        #: sighting starts it again, and :meth:`prune` never deletes a claim sooner. Set it to
        #: ``ScoringParams.claim_expiry`` (``scoring.claim_expiry_days``); the scorer takes its
        #: own value from the params.
        self.claim_expiry: timedelta = DEFAULT_CLAIM_EXPIRY

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def receipts(self) -> ReceiptStore:
        """Collected receipts and per-miner cursors, on this engine and its transactions."""
        return self._receipts

    @property
    def dialect(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._dialect

    @property
    def leases(self) -> LeaseStore:
        """Renters, leases and this validator's own receipts on the same engine."""
        from neurons.validator.store.leases import LeaseStore

        return LeaseStore(self)

    # ------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _tx(self, what: str) -> AsyncIterator[AsyncConnection]:
        """One transaction; database failures become :class:`StorageError`."""
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
            raise self._storage_error(what, exc) from exc
        except _DRIVER_ERRORS as exc:
            raise self._storage_error(what, exc) from exc

    @staticmethod
    def _storage_error(what: str, exc: BaseException) -> StorageError:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return StorageError(f"{what} failed: {type(cause).__name__}: {text}"[:500])

    def _insert(self, table: sa.Table) -> Any:
        return (pg_insert if self._dialect == "postgresql" else sqlite_insert)(table)

    # ------------------------------------------------------------------ metagraph

    async def sync_miners(self, now: datetime, neurons: Sequence[NeuronView]) -> None:
        require_aware("now", now)
        by_hotkey = {n.hotkey: n for n in neurons}
        rows = [
            {
                "hotkey": n.hotkey,
                "uid": n.uid,
                "coldkey": n.coldkey,
                "stake": float(n.stake),
                "validator_permit": bool(n.validator_permit),
                "endpoint": n.axon.url() if n.axon is not None else None,
                "registered": True,
                "first_synced": now,
                "last_synced": now,
            }
            for n in by_hotkey.values()
        ]
        async with self._tx("syncing miners") as conn:
            await conn.execute(
                miners_t.update()
                .where(miners_t.c.registered.is_(True), miners_t.c.hotkey.not_in(list(by_hotkey)))
                .values(registered=False)
            )
            if rows:
                stmt = self._insert(miners_t)
                new = stmt.excluded
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[miners_t.c.hotkey],
                        set_={
                            name: new[name]
                            for name in (
                                "uid",
                                "coldkey",
                                "stake",
                                "validator_permit",
                                "endpoint",
                                "registered",
                                "last_synced",
                            )
                        },
                    ),
                    rows,
                )

    async def miners(self, *, registered_only: bool = True) -> list[MinerRow]:
        query = sa.select(miners_t).order_by(miners_t.c.uid, miners_t.c.hotkey)
        if registered_only:
            query = query.where(miners_t.c.registered.is_(True))
        async with self._tx("reading miners") as conn:
            rows = (await conn.execute(query)).all()
        return [
            MinerRow(
                uid=r.uid,
                hotkey=r.hotkey,
                coldkey=r.coldkey,
                stake=r.stake,
                validator_permit=r.validator_permit,
                endpoint=r.endpoint,
                registered=r.registered,
                last_synced=r.last_synced,
                last_poll_ok=r.last_poll_ok,
                last_poll_error=r.last_poll_error,
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ inventory

    async def record_inventory(
        self,
        now: datetime,
        miner_hotkey: str,
        workers: Sequence[WorkerSnapshot],
        *,
        bucket_seconds: int,
    ) -> None:
        require_aware("now", now)
        listed = {w.worker_pubkey: w for w in workers}  # a worker listed twice: the last wins
        bucket = bucket_index(now, bucket_seconds)
        gpu_counts = {key: len({g.uuid for g in w.gpus}) for key, w in listed.items()}
        for key, count in gpu_counts.items():
            if count > avail.MAX_WORKER_GPUS:
                raise ValueError(
                    f"worker {key} reports {count} GPUs; at most {avail.MAX_WORKER_GPUS} are stored"
                )
        worker_rows = [
            {
                "miner_hotkey": miner_hotkey,
                "worker_pubkey": key,
                "state": w.state,
                "online": w.healthy,
                "first_seen": now,
                "last_seen": now,
            }
            for key, w in listed.items()
        ]
        gpu_rows = [
            {
                "gpu_uuid": g.uuid,
                "miner_hotkey": miner_hotkey,
                "worker_pubkey": key,
                "model": g.model,
                "memory_mib": g.memory_mib,
                "compute_capability": g.compute_capability,
                "first_seen": now,
                "last_seen": now,
                "present": True,
            }
            for key, w in listed.items()
            for g in {g.uuid: g for g in w.gpus}.values()
        ]
        async with self._tx(f"recording the inventory of {miner_hotkey}") as conn:
            found = await conn.execute(
                miners_t.update().where(miners_t.c.hotkey == miner_hotkey).values(last_poll_ok=now)
            )
            if found.rowcount == 0:
                raise StorageError(f"unknown miner {miner_hotkey}: sync_miners must come first")
            ids: dict[str, int] = {}
            if worker_rows:
                stmt = self._insert(workers_t)
                new = stmt.excluded
                result = await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[workers_t.c.miner_hotkey, workers_t.c.worker_pubkey],
                        set_={"state": new.state, "online": new.online, "last_seen": new.last_seen},
                    ).returning(workers_t.c.id, workers_t.c.worker_pubkey),
                    worker_rows,
                )
                ids = {pubkey: worker_id for worker_id, pubkey in result.all()}
            # every worker of the miner this poll did not list is offline now
            await conn.execute(
                workers_t.update()
                .where(
                    workers_t.c.miner_hotkey == miner_hotkey,
                    workers_t.c.online.is_(True),
                    workers_t.c.last_seen != now,
                )
                .values(online=False)
            )
            if gpu_rows:
                stmt = self._insert(gpus_t)
                new = stmt.excluded
                lapsed = sa.literal(now - self.claim_expiry, UTCDateTime)
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[
                            gpus_t.c.gpu_uuid,
                            gpus_t.c.miner_hotkey,
                            gpus_t.c.worker_pubkey,
                        ],
                        # first_seen stays (the earliest claim keeps the UUID) unless the claim
                        # lapsed, unseen for the claim expiry: then it starts again now, so a
                        # dormant claim cannot come back and take the UUID from a later claimant
                        set_={
                            "first_seen": sa.case(
                                (gpus_t.c.last_seen <= lapsed, new.first_seen),
                                else_=gpus_t.c.first_seen,
                            ),
                            "model": new.model,
                            "memory_mib": new.memory_mib,
                            "compute_capability": new.compute_capability,
                            "last_seen": new.last_seen,
                            "present": True,
                        },
                    ),
                    gpu_rows,
                )
            await conn.execute(
                gpus_t.update()
                .where(
                    gpus_t.c.miner_hotkey == miner_hotkey,
                    gpus_t.c.present.is_(True),
                    gpus_t.c.last_seen != now,
                )
                .values(present=False)
            )
            if ids:
                await conn.execute(
                    avail.upsert(self._dialect, bucket_seconds, bucket),
                    [
                        avail.row_values(
                            ids[key], bucket_seconds, bucket, gpu_counts[key], w.healthy
                        )
                        for key, w in listed.items()
                    ],
                )

    async def record_poll_failure(self, now: datetime, miner_hotkey: str, error: str) -> None:
        require_aware("now", now)
        async with self._tx(f"recording a poll failure of {miner_hotkey}") as conn:
            found = await conn.execute(
                miners_t.update()
                .where(miners_t.c.hotkey == miner_hotkey)
                .values(last_poll_failed=now, last_poll_error=error[:MAX_ERROR_CHARS])
            )
            if found.rowcount == 0:
                raise StorageError(f"unknown miner {miner_hotkey}: sync_miners must come first")
            await conn.execute(
                workers_t.update()
                .where(workers_t.c.miner_hotkey == miner_hotkey, workers_t.c.online.is_(True))
                .values(online=False)
            )

    async def workers(self, now: datetime) -> list[WorkerRow]:
        require_aware("now", now)
        registered = _registered()
        async with self._tx("reading workers") as conn:
            worker_rows = (
                await conn.execute(
                    sa.select(
                        workers_t.c.miner_hotkey,
                        workers_t.c.worker_pubkey,
                        workers_t.c.state,
                        workers_t.c.online,
                        workers_t.c.last_seen,
                        workers_t.c.last_challenge_at,
                        miners_t.c.uid,
                        miners_t.c.endpoint,
                    )
                    .join(miners_t, miners_t.c.hotkey == workers_t.c.miner_hotkey)
                    .where(miners_t.c.registered.is_(True))
                    .order_by(miners_t.c.uid, workers_t.c.worker_pubkey)
                )
            ).all()
            claims = await self._claims(conn)
            present = (
                await conn.execute(
                    sa.select(
                        gpus_t.c.miner_hotkey,
                        gpus_t.c.worker_pubkey,
                        gpus_t.c.gpu_uuid,
                        gpus_t.c.model,
                        gpus_t.c.memory_mib,
                        gpus_t.c.compute_capability,
                    )
                    .where(gpus_t.c.present.is_(True), gpus_t.c.miner_hotkey.in_(registered))
                    .order_by(gpus_t.c.gpu_uuid)
                )
            ).all()
            busy = {
                (r.miner_hotkey, r.worker_pubkey)
                for r in await conn.execute(
                    sa.select(challenges_t.c.miner_hotkey, challenges_t.c.worker_pubkey)
                    .where(challenges_t.c.status.in_(IN_FLIGHT))
                    .distinct()
                )
            }
        # the claims are registered miners' only; the planner applies the scorer's rule
        ownership = resolve_gpu_ownership(claims, now=now, claim_expiry=self.claim_expiry)
        gpus: dict[tuple[str, str], list[GpuSnapshot]] = {}
        for g in present:
            gpus.setdefault((g.miner_hotkey, g.worker_pubkey), []).append(
                GpuSnapshot(
                    uuid=g.gpu_uuid,
                    model=g.model,
                    memory_mib=g.memory_mib,
                    compute_capability=g.compute_capability,
                )
            )
        out = []
        for w in worker_rows:
            key = (w.miner_hotkey, w.worker_pubkey)
            mine = tuple(gpus.get(key, ()))
            out.append(
                WorkerRow(
                    miner_hotkey=w.miner_hotkey,
                    miner_uid=w.uid,
                    endpoint=w.endpoint,
                    worker_pubkey=w.worker_pubkey,
                    state=w.state,
                    online=w.online,
                    last_seen=w.last_seen,
                    gpus=mine,
                    conflicted_gpus=frozenset(
                        g.uuid for g in mine if not ownership.owns(*key, g.uuid)
                    ),
                    last_challenge_at=w.last_challenge_at,
                    in_flight=key in busy,
                )
            )
        return out

    async def _claims(self, conn: AsyncConnection) -> list[GpuClaim]:
        """Every GPU claim of a registered miner, with its first and last sighting."""
        rows = await conn.execute(
            sa.select(
                gpus_t.c.gpu_uuid,
                gpus_t.c.miner_hotkey,
                gpus_t.c.worker_pubkey,
                gpus_t.c.first_seen,
                gpus_t.c.last_seen,
            ).where(gpus_t.c.miner_hotkey.in_(_registered()))
        )
        return [GpuClaim(r[0], r[1], r[2], r[3], max(r[3], r[4])) for r in rows]

    # ------------------------------------------------------------------ challenges

    async def open_challenge(self, challenge: ChallengeOpen) -> None:
        rows = _challenge_rows(challenge)
        async with self._tx(f"opening challenge {challenge.challenge_id}") as conn:
            await conn.execute(challenges_t.insert(), rows)
            await conn.execute(
                _LAST_CHALLENGE_UPDATE,
                {
                    "b_hotkey": challenge.miner_hotkey,
                    "b_pubkey": challenge.worker_pubkey,
                    "b_at": challenge.dispatched_at,
                },
            )

    async def open_challenges(self, challenges: Sequence[ChallengeOpen]) -> None:
        if not challenges:
            return
        rows = [row for challenge in challenges for row in _challenge_rows(challenge)]
        newest: dict[tuple[str, str], datetime] = {}
        for challenge in challenges:
            key = (challenge.miner_hotkey, challenge.worker_pubkey)
            if key not in newest or challenge.dispatched_at > newest[key]:
                newest[key] = challenge.dispatched_at
        worker_params = [
            {"b_hotkey": hotkey, "b_pubkey": pubkey, "b_at": at}
            for (hotkey, pubkey), at in newest.items()
        ]
        what = f"opening {len(challenges)} challenges ({len(rows)} GPU rows)"
        async with self._tx(what) as conn:
            # the workers first: this statement also begins the transaction the COPY joins
            for chunk in _chunks(worker_params, BULK_CHUNK_ROWS):
                await conn.execute(_LAST_CHALLENGE_UPDATE, chunk)
            if self._dialect == "postgresql":
                await _copy_rows(conn, challenges_t, rows)
            else:
                for chunk in _chunks(rows, BULK_CHUNK_ROWS):
                    await conn.execute(challenges_t.insert(), chunk)

    async def record_commit(
        self,
        challenge_id: str,
        committed_at: datetime,
        roots: Mapping[str, Sequence[bytes]],
    ) -> None:
        require_aware("committed_at", committed_at)
        for uuid, gpu_roots in roots.items():
            bad = [i for i, r in enumerate(gpu_roots) if len(r) != ROOT_BYTES]
            if bad:
                raise ValueError(f"roots of {uuid} must be {ROOT_BYTES} bytes each (index {bad})")
        c = challenges_t.c
        async with self._tx(f"recording the commit of {challenge_id}") as conn:
            known = {
                r.gpu_uuid: r.status
                for r in await conn.execute(
                    sa.select(c.gpu_uuid, c.status).where(c.challenge_id == challenge_id)
                )
            }
            unknown = sorted(set(roots) - set(known))
            if unknown:
                raise StorageError(
                    f"challenge {challenge_id} has no row for GPU {', '.join(unknown)}"
                )
            for uuid, gpu_roots in roots.items():
                # a commit that arrives after its row was closed (a timeout) changes nothing
                await conn.execute(
                    challenges_t.update()
                    .where(
                        c.challenge_id == challenge_id,
                        c.gpu_uuid == uuid,
                        c.status == "dispatched",
                    )
                    .values(
                        committed_at=committed_at,
                        roots=b"".join(bytes(r) for r in gpu_roots),
                        status="committed",
                    )
                )

    async def close_challenge(self, verdict: ChallengeVerdict) -> None:
        values = _verdict_values(verdict)
        c = challenges_t.c
        where = (c.challenge_id == verdict.challenge_id, c.gpu_uuid == verdict.gpu_uuid)
        async with self._tx(f"closing challenge {verdict.challenge_id}") as conn:
            result = await conn.execute(
                challenges_t.update().where(*where, c.status != "closed").values(**values)
            )
            if result.rowcount == 0:
                exists = (await conn.execute(sa.select(c.status).where(*where))).first()
                state = "is already closed" if exists else "does not exist"
                raise StorageError(
                    f"challenge {verdict.challenge_id} GPU {verdict.gpu_uuid} {state}"
                )

    async def close_challenges(self, verdicts: Sequence[ChallengeVerdict]) -> None:
        if not verdicts:
            return
        values = [_verdict_values(v) for v in verdicts]  # every verdict is checked first
        c = challenges_t.c
        pairs = list(dict.fromkeys((v.challenge_id, v.gpu_uuid) for v in verdicts))
        closed_before: list[tuple[str, str]] = []
        missing: list[tuple[str, str]] = []
        async with self._tx(f"closing {len(verdicts)} challenge rows") as conn:
            status: dict[tuple[str, str], str] = {}
            for keys in _chunks(pairs, BULK_CHUNK_KEYS):
                # two plain INs, not a row-value IN (which SQLite answers with a table scan):
                # both search the primary key; pairs outside ``keys`` are dropped below.
                # Locked (PostgreSQL) so that what is open here is still open at the update.
                rows = await conn.execute(
                    sa.select(c.challenge_id, c.gpu_uuid, c.status)
                    .where(
                        c.challenge_id.in_(sorted({cid for cid, _ in keys})),
                        c.gpu_uuid.in_(sorted({uuid for _, uuid in keys})),
                    )
                    .with_for_update()
                )
                status.update({(r.challenge_id, r.gpu_uuid): r.status for r in rows})
            updates = []
            for verdict, value in zip(verdicts, values, strict=True):
                key = (verdict.challenge_id, verdict.gpu_uuid)
                state = status.get(key)
                if state is None:
                    missing.append(key)
                elif state == "closed":
                    closed_before.append(key)
                else:
                    status[key] = "closed"  # the same row twice in one call: the first wins
                    updates.append(
                        {"b_cid": key[0], "b_uuid": key[1]}
                        | {f"v_{name}": v for name, v in value.items()}
                    )
            for chunk in _chunks(updates, BULK_CHUNK_ROWS):
                await conn.execute(_CLOSE_UPDATE, chunk)
        if closed_before or missing:
            raise StorageError(_close_refusal(closed_before, missing, closed=len(updates)))

    async def verified_throughputs(self, since: datetime) -> list[VerifiedSample]:
        require_aware("since", since)
        c = challenges_t.c
        # a range scan of ix_challenges_dispatched_at: the rows of the window, nothing older
        query = sa.select(
            c.miner_hotkey, c.gpu_model, c.gpu_uuid, c.throughput_flops, c.dispatched_at
        ).where(
            c.dispatched_at >= since,
            c.outcome == Outcome.VERIFIED.value,
            c.throughput_flops.is_not(None),
        )
        async with self._tx("reading verified throughputs") as conn:
            rows = (await conn.execute(query)).all()
        return [
            VerifiedSample(
                miner_hotkey=hotkey,
                gpu_model=model,
                gpu_uuid=uuid,
                throughput_flops=throughput,
                dispatched_at=at,
            )
            for hotkey, model, uuid, throughput, at in rows
        ]

    async def close_in_flight(self, now: datetime, detail: str) -> int:
        require_aware("now", now)
        async with self._tx("closing in-flight challenges") as conn:
            result = await conn.execute(
                challenges_t.update()
                .where(challenges_t.c.status.in_(IN_FLIGHT))
                .values(
                    status="closed",
                    closed_at=now,
                    outcome=Outcome.EXCUSED.value,
                    failure=RESTART_FAILURE,
                    detail=detail,
                )
            )
        closed = int(result.rowcount)
        if closed:
            log.info("store.closed_in_flight", challenges=closed, detail=detail)
        return closed

    async def challenge(self, challenge_id: str) -> list[ChallengeRow]:
        query = (
            sa.select(challenges_t)
            .where(challenges_t.c.challenge_id == challenge_id)
            .order_by(challenges_t.c.gpu_uuid)
        )
        async with self._tx(f"reading challenge {challenge_id}") as conn:
            rows = (await conn.execute(query)).all()
        return [_challenge_row(r) for r in rows]

    async def recent_challenges(self, limit: int = 50) -> list[ChallengeRow]:
        c = challenges_t.c
        query = (
            sa.select(challenges_t)
            .order_by(c.dispatched_at.desc(), c.challenge_id, c.gpu_uuid)
            .limit(limit)
        )
        async with self._tx("reading recent challenges") as conn:
            rows = (await conn.execute(query)).all()
        return [_challenge_row(r) for r in rows]

    async def tally(self, since: datetime) -> list[MinerTally]:
        require_aware("since", since)
        c = challenges_t.c
        closed_since = (c.status == "closed", c.dispatched_at >= since)
        # one statement, so both tallies come from the same snapshot (pysqlite runs each
        # SELECT outside a transaction, so two statements could see different rows)
        async with self._tx("tallying challenges") as conn:
            rows = (
                await conn.execute(
                    sa.select(c.miner_hotkey, c.outcome, c.failure, sa.func.count())
                    .where(*closed_since)
                    .group_by(c.miner_hotkey, c.outcome, c.failure)
                )
            ).all()
        by_outcome: dict[str, dict[str, int]] = {}
        by_failure: dict[str, dict[str, int]] = {}
        failing = (Outcome.FRAUD.value, Outcome.TIMEOUT.value)
        for hotkey, outcome, failure, count in rows:
            counts = by_outcome.setdefault(hotkey, dict.fromkeys((o.value for o in Outcome), 0))
            counts[outcome] += int(count)
            if outcome in failing and failure is not None:
                failures = by_failure.setdefault(hotkey, {})
                failures[failure] = failures.get(failure, 0) + int(count)
        return [
            MinerTally(miner_hotkey=h, by_outcome=by_outcome[h], by_failure=by_failure.get(h, {}))
            for h in sorted(by_outcome)
        ]

    # ------------------------------------------------------------------ scoring

    async def scoring_inputs(self, now: datetime, params: ScoringParams) -> ScoringInputs:
        require_aware("now", now)
        async with self._tx("reading the scoring inputs") as conn:
            uids = {
                r.hotkey: r.uid
                for r in await conn.execute(
                    sa.select(miners_t.c.hotkey, miners_t.c.uid).where(
                        miners_t.c.registered.is_(True)
                    )
                )
            }
            intervals = await self._lease_intervals(conn, now)
            usage = await self._lease_usage(conn, now, params)
            earliest = earliest_challenge_needed(intervals, params, now)
            verified = _VerifiedHours(_verified_since(now, params))
            challenges = await self._challenge_observations(conn, earliest, now, verified)
            await self._verified_hours(conn, verified, min(earliest, now))
            claims = await self._claims(conn)
            coverage = verified.coverage(intervals, params, now)
            counts = await self._availability_counts(conn, now, params, coverage=coverage)
        return ScoringInputs(
            now=now,
            params=params,
            miners=tuple(sorted(uids)),
            uids=uids,
            challenges=challenges,
            gpu_claims=tuple(claims),
            availability_counts=counts,
            lease_intervals=tuple(intervals),
            lease_usage=tuple(usage),
            verified_hours=verified.by_gpu(),
            worker_verified_hours=verified.by_worker(),
        )

    async def _challenge_observations(
        self,
        conn: AsyncConnection,
        earliest: datetime,
        now: datetime,
        verified: _VerifiedHours | None = None,
    ) -> tuple[ChallengeObservation, ...]:
        """The closed challenges of registered miners dispatched in ``[earliest, now)``; their
        verified hours (from ``verified.since`` on) go into ``verified`` on the way."""
        c = challenges_t.c
        rows = await conn.execute(
            sa.select(
                c.miner_hotkey,
                c.worker_pubkey,
                c.gpu_uuid,
                c.dispatched_at,
                c.outcome,
                c.throughput_flops,
                c.failure,
            ).where(
                c.status == "closed",
                c.dispatched_at >= earliest,
                c.dispatched_at < now,
                c.miner_hotkey.in_(_registered()),
            )
        )
        outcomes = {o.value: o for o in Outcome}
        passed, excused = Outcome.VERIFIED, Outcome.EXCUSED
        since = verified.since if verified is not None else now
        triples = verified.triples if verified is not None else {}
        out = []
        for hotkey, worker, uuid, issued, outcome_text, throughput, failure in rows:
            outcome = outcomes[outcome_text]
            if outcome is passed:
                if issued >= since:  # inlined: this loop runs once per challenge row
                    hours = triples.get((hotkey, worker, uuid))
                    if hours is None:
                        hours = triples[(hotkey, worker, uuid)] = set()
                    hours.add((issued - EPOCH) // HOUR)
                out.append(ChallengeObservation(hotkey, worker, uuid, issued, outcome, throughput))
                continue
            # excused for our own fault (OUR_FAILURES) never counts against the miner
            ours = outcome is excused and failure in OUR_FAILURES
            out.append(ChallengeObservation(hotkey, worker, uuid, issued, outcome, None, ours))
        return tuple(out)

    def _hour_of(self, column: Any) -> Any:
        """SQL for :func:`byteleap.scoring.hour_index` of a datetime column."""
        per_hour = sa.literal_column("3600", sa.Integer)
        if self._dialect == "postgresql":  # epoch seconds of a timestamptz: no time zone involved
            return sa.cast(sa.func.floor(sa.extract("epoch", column) / per_hour), sa.BigInteger)
        # stored as UTC text, which strftime('%s') reads as UTC; integer division floors (> 1970)
        return sa.cast(sa.func.strftime("%s", column), sa.Integer) // per_hour

    async def _verified_hours(
        self, conn: AsyncConnection, verified: _VerifiedHours, until: datetime
    ) -> None:
        """Add the hours of verified challenges of registered miners dispatched in
        ``[verified.since, until)`` (the part :meth:`_challenge_observations` does not read),
        one row per distinct (miner, worker, GPU, hour), grouped by the database."""
        if verified.since >= until:
            return
        c = challenges_t.c
        hour = self._hour_of(c.dispatched_at)
        rows = await conn.execute(
            sa.select(c.miner_hotkey, c.worker_pubkey, c.gpu_uuid, hour)
            .where(
                c.outcome == Outcome.VERIFIED.value,
                c.dispatched_at >= verified.since,
                c.dispatched_at < until,
                c.miner_hotkey.in_(_registered()),
            )
            .distinct()
        )
        for hotkey, worker, uuid, h in rows:
            verified.add(hotkey, worker, uuid, int(h))

    async def _availability_counts(
        self,
        conn: AsyncConnection,
        now: datetime,
        params: ScoringParams,
        *,
        coverage: Mapping[tuple[str, str], BucketRanges] | None = None,
    ) -> tuple[AvailabilityCount, ...]:
        """One count per worker over the horizon. With ``coverage`` (per worker, the bucket
        ranges in which its GPUs count: verified within 24 h or leased, from
        :func:`byteleap.scoring.worker_coverage`) only the healthy GPU-buckets inside it count
        and the rest are ``unverified_gpu_buckets``; without it every healthy bucket counts.

        Whole periods are summed in SQL: on PostgreSQL in the same scan, which tests each row
        against a per-worker bitmap of the covered periods passed as one ``bigint[][]``; on
        SQLite by a second query that range-scans the primary key per covered range. The
        partial periods at the horizon's edges and the few periods a range covers only in part
        (a lease that starts or ends within an hour) are cut bucket by bucket here."""
        first, stop = availability_bucket_range(now, params)
        span = avail.horizon(first, stop, params.bucket_seconds)
        per_row = span.per_row
        size = params.bucket_seconds
        a = avail_t.c
        w = workers_t.c
        tallies: dict[tuple[str, str], avail.Tally] = {}
        counted: dict[tuple[str, str], int] = {}
        ids: dict[tuple[str, str], int] = {}
        lo, hi = span.full_periods
        plan: _CoveragePlan | None = None
        if coverage is not None and lo < hi and self._dialect == "postgresql":
            # the ids first: the scan needs the bitmap
            ids = {
                (hotkey, worker): wid
                for wid, hotkey, worker in await conn.execute(
                    sa.select(w.id, w.miner_hotkey, w.worker_pubkey).where(
                        w.miner_hotkey.in_(_registered())
                    )
                )
            }
            plan = _CoveragePlan(coverage, ids, (lo, hi), per_row)
        if lo < hi:
            if plan is not None:
                rows = await conn.execute(
                    _TOTALS_COVERED_PG,
                    {"size": size, "lo": lo, "hi": hi, **plan.bitmap_params()},
                )
            else:
                per_worker = (
                    sa.select(
                        a.worker_id,
                        sa.func.sum(a.online_count).label("online"),
                        sa.func.sum(a.gpu_buckets).label("gpu_buckets"),
                        sa.func.max(a.max_gpus).label("gpus"),
                        sa.literal_column("0", sa.Integer).label("covered"),
                    )
                    .where(a.bucket_seconds == size, a.period >= lo, a.period < hi)
                    .group_by(a.worker_id)
                    .subquery()
                )
                rows = await conn.execute(
                    sa.select(
                        w.id,
                        w.miner_hotkey,
                        w.worker_pubkey,
                        per_worker.c.gpus,
                        per_worker.c.online,
                        per_worker.c.gpu_buckets,
                        per_worker.c.covered,
                    )
                    .join(per_worker, per_worker.c.worker_id == w.id)
                    .where(w.miner_hotkey.in_(_registered()))
                )
            for wid, hotkey, worker, gpus, online, gpu_buckets, covered_sum in rows:
                key = (hotkey, worker)
                ids[key] = wid
                tallies[key] = avail.Tally(int(gpus), int(online), int(gpu_buckets))
                if plan is not None and covered_sum:
                    counted[key] = int(covered_sum)
        edges = span.edge_periods()
        if edges:
            edge_rows = await conn.execute(
                sa.select(
                    w.id,
                    w.miner_hotkey,
                    w.worker_pubkey,
                    a.period,
                    a.online_mask,
                    a.seen_mask,
                    a.bucket_gpus,
                    a.seen_gpus,
                )
                .select_from(avail_t)
                .join(workers_t, w.id == a.worker_id)
                .where(
                    a.bucket_seconds == size,
                    w.miner_hotkey.in_(_registered()),
                    a.period.in_(list(edges)),
                )
            )
            for (
                wid,
                hotkey,
                worker,
                period,
                online_mask,
                seen_mask,
                bucket_gpus,
                seen_gpus,
            ) in edge_rows:
                key = (hotkey, worker)
                tally = tallies.get(key) or avail.Tally()
                inside = edges[period]
                if avail.fold_edge(tally, inside, online_mask, seen_mask, bucket_gpus, seen_gpus):
                    tallies[key] = tally
                    ids[key] = wid
                    if coverage is not None and key in coverage:
                        mask = online_mask & inside & _period_mask(coverage[key], period, per_row)
                        counted[key] = counted.get(key, 0) + _gpu_buckets_in(mask, bucket_gpus)
        if coverage is not None and lo < hi:
            if plan is None:  # SQLite: the covered whole periods by a second query
                plan = _CoveragePlan(coverage, ids, (lo, hi), per_row)
                await self._covered_whole_periods(conn, size, plan, counted)
            await self._covered_partial_periods(conn, size, plan, coverage, counted)
        out = []
        for key, t in sorted(tallies.items()):
            online = t.online_gpu_buckets
            counts = online if coverage is None else counted.get(key, 0)
            out.append(
                AvailabilityCount(
                    miner_hotkey=key[0],
                    worker_id=key[1],
                    gpus=t.gpus,
                    online_buckets=t.online_buckets,
                    online_gpu_buckets=counts,
                    unverified_gpu_buckets=online - counts,
                )
            )
        return tuple(out)

    async def _covered_whole_periods(
        self, conn: AsyncConnection, size: int, plan: _CoveragePlan, counted: dict[Any, int]
    ) -> None:
        """Add the healthy GPU-buckets of the whole periods ``plan`` covers (SQLite): each
        range is a primary-key range scan of ``(worker_id, bucket_seconds, period)``."""
        for chunk in _chunks(plan.whole, BULK_CHUNK_ROWS):
            ranges = json.dumps([list(r) for r in chunk])
            rows = await conn.execute(_COVERED_SQLITE, {"ranges": ranges, "size": size})
            for wid, gpu_buckets in rows:
                key = plan.keys[wid]
                counted[key] = counted.get(key, 0) + int(gpu_buckets)

    async def _covered_partial_periods(
        self,
        conn: AsyncConnection,
        size: int,
        plan: _CoveragePlan,
        coverage: Mapping[tuple[str, str], BucketRanges],
        counted: dict[tuple[str, str], int],
    ) -> None:
        """Add the covered buckets of the whole periods a range covers only in part."""
        a = avail_t.c
        per_row = plan.per_row
        for pairs in _chunks(plan.partial, BULK_CHUNK_KEYS):
            rows = await conn.execute(
                sa.select(a.worker_id, a.period, a.online_mask, a.bucket_gpus).where(
                    a.bucket_seconds == size,
                    a.worker_id.in_(sorted({wid for wid, _ in pairs})),
                    a.period.in_(sorted({period for _, period in pairs})),
                )
            )
            chosen = set(pairs)
            for wid, period, online_mask, bucket_gpus in rows:
                if (wid, period) not in chosen:
                    continue
                key = plan.keys[wid]
                mask = online_mask & _period_mask(coverage[key], period, per_row)
                counted[key] = counted.get(key, 0) + _gpu_buckets_in(mask, bucket_gpus)

    async def _lease_intervals(self, conn: AsyncConnection, now: datetime) -> list[LeaseInterval]:
        """This validator's own leases, and every counted validator's leases from receipts (a
        worker leased by another validator is leased too)."""
        lt = leases_t.c
        rows = await conn.execute(
            sa.select(lt.miner_hotkey, lt.worker_pubkey, lt.started_at, lt.ended_at).where(
                lt.started_at.is_not(None),
                lt.started_at < now,
                lt.miner_hotkey.in_(_registered()),
            )
        )
        own = [
            LeaseInterval(hotkey, worker, start, None if end is None else max(end, start))
            for hotkey, worker, start, end in rows
        ]
        return own + await self._receipts.intervals_in(conn, now)

    async def _lease_usage(
        self, conn: AsyncConnection, now: datetime, params: ScoringParams
    ) -> list[LeaseUsage]:
        return await self._receipts.usage_in(conn, now, params)

    # ------------------------------------------------------------------ weights

    async def record_weights(self, submission: WeightSubmission) -> int:
        require_aware("submitted_at", submission.submitted_at)
        if len(submission.uids) != len(submission.weights):
            raise ValueError("uids and weights must have the same length")
        async with self._tx("recording a weight submission") as conn:
            result = await conn.execute(
                weights_t.insert()
                .values(
                    submitted_at=submission.submitted_at,
                    status=submission.status,
                    uids=[int(u) for u in submission.uids],
                    weights=[float(x) for x in submission.weights],
                    inputs=dict(submission.inputs),
                    block=submission.block,
                    version_key=submission.version_key,
                    reason=submission.reason,
                )
                .returning(weights_t.c.id)
            )
            return int(result.scalar_one())

    async def weight_submissions(self, limit: int = 20) -> list[WeightSubmission]:
        t = weights_t.c
        query = sa.select(weights_t).order_by(t.submitted_at.desc(), t.id.desc()).limit(limit)
        async with self._tx("reading weight submissions") as conn:
            rows = (await conn.execute(query)).all()
        return [
            WeightSubmission(
                submitted_at=r.submitted_at,
                status=r.status,
                uids=tuple(r.uids),
                weights=tuple(r.weights),
                inputs=r.inputs,
                block=r.block,
                version_key=r.version_key,
                reason=r.reason,
                id=r.id,
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ housekeeping

    async def prune(
        self, now: datetime, *, retention: timedelta, availability_retention: timedelta
    ) -> dict[str, int]:
        require_aware("now", now)
        cutoff = now - retention
        avail_cutoff = now - availability_retention
        deleted: dict[str, int] = {}
        async with self._tx("pruning") as conn:
            c = challenges_t.c
            result = await conn.execute(
                challenges_t.delete().where(c.status == "closed", c.dispatched_at < cutoff)
            )
            deleted["challenges"] = int(result.rowcount)
            result = await conn.execute(weights_t.delete().where(weights_t.c.submitted_at < cutoff))
            deleted["weight_submissions"] = int(result.rowcount)
            result = await conn.execute(receipts_t.delete().where(receipts_t.c.period_end < cutoff))
            deleted["lease_receipts"] = int(result.rowcount)
            # a claim unseen that long has lapsed anyway (never sooner than the claim expiry)
            unseen = now - max(retention, self.claim_expiry)
            result = await conn.execute(gpus_t.delete().where(gpus_t.c.last_seen < unseen))
            deleted["gpus"] = int(result.rowcount)
            sizes = (await conn.execute(sa.select(avail_t.c.bucket_seconds).distinct())).scalars()
            deleted["availability"] = 0
            for size in list(sizes):
                # whole periods ending at or before the cut-off go; the one straddling it stays
                period = bucket_index(avail_cutoff, size) // avail.buckets_per_row(size)
                result = await conn.execute(
                    avail_t.delete().where(
                        avail_t.c.bucket_seconds == size, avail_t.c.period < period
                    )
                )
                deleted["availability"] += int(result.rowcount)
        if any(deleted.values()):
            log.info("store.pruned", **deleted)
        return deleted

    async def ping(self) -> float:
        started = time.perf_counter()
        async with self._tx("pinging the database") as conn:
            await conn.execute(sa.text("SELECT 1"))
        return time.perf_counter() - started

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._engine.dispose()


#: bits of one ``bigint`` of the coverage bitmap (the sign bit stays clear)
_BITMAP_BITS = 63

#: the per-worker sums over the whole periods of the horizon, with the healthy GPU-buckets of
#: the periods a worker's coverage bitmap marks (``:bitmap[worker_id - :base][word]``, bit
#: ``(period - :lo) % 63`` of word ``(period - :lo) / 63 + 1``; a worker outside the bitmap
#: reads NULL: nothing covered). One scan, no join: a subscript of a fixed-width array is O(1).
_TOTALS_COVERED_PG = sa.text(
    "SELECT w.id, w.miner_hotkey, w.worker_pubkey, t.gpus, t.online, t.gpu_buckets, t.covered "
    "FROM (SELECT a.worker_id, SUM(a.online_count) AS online, SUM(a.gpu_buckets) AS gpu_buckets,"
    " MAX(a.max_gpus) AS gpus, SUM(CASE WHEN ((CAST(:bitmap AS BIGINT[]))"
    "[a.worker_id - :base][(a.period - :lo) / 63 + 1] >> CAST((a.period - :lo) % 63 AS INTEGER))"
    " & 1 = 1 THEN a.gpu_buckets ELSE 0 END) AS covered"
    " FROM availability AS a WHERE a.bucket_seconds = :size AND a.period >= :lo"
    " AND a.period < :hi GROUP BY a.worker_id) AS t "
    "JOIN workers AS w ON w.id = t.worker_id "
    "WHERE w.miner_hotkey IN (SELECT hotkey FROM miners WHERE registered)"
)
#: the healthy GPU-buckets of the rows inside each (worker id, first period, stop period) range
#: given as JSON, per worker (SQLite: each range a primary-key range scan)
_COVERED_SQLITE = sa.text(
    "SELECT a.worker_id, SUM(a.gpu_buckets) FROM "
    "(SELECT json_extract(value, '$[0]') AS wid, json_extract(value, '$[1]') AS p0, "
    "json_extract(value, '$[2]') AS p1 FROM json_each(:ranges)) AS cov "
    "JOIN availability AS a ON a.worker_id = cov.wid AND a.bucket_seconds = :size "
    "AND a.period >= cov.p0 AND a.period < cov.p1 GROUP BY a.worker_id"
)
assert (Availability.__tablename__, Worker.__tablename__, Miner.__tablename__) == (
    "availability",
    "workers",
    "miners",
)
assert _BITMAP_BITS == 63  # the literal 63 in _TOTALS_COVERED_PG


class _CoveragePlan:
    """Workers' coverage cut into the horizon's whole periods ``[lo, hi)``: ``whole`` ranges
    ``(worker id, first period, stop period)`` of periods covered from end to end, and
    ``partial`` ``(worker id, period)`` pairs of periods a range covers only in part."""

    __slots__ = ("keys", "lo", "partial", "per_row", "periods", "whole")

    def __init__(
        self,
        coverage: Mapping[tuple[str, str], BucketRanges],
        ids: Mapping[tuple[str, str], int],
        periods: tuple[int, int],
        per_row: int,
    ) -> None:
        lo, hi = periods
        self.lo, self.per_row, self.periods = lo, per_row, hi - lo
        self.keys: dict[int, tuple[str, str]] = {}
        self.whole: list[tuple[int, int, int]] = []
        partial: set[tuple[int, int]] = set()
        for key, ranges in coverage.items():
            wid = ids.get(key)
            if wid is None:
                continue  # no availability stored for this worker: nothing to count
            self.keys[wid] = key
            for b0, b1 in ranges:
                p0, p1 = max(lo, -(-b0 // per_row)), min(hi, b1 // per_row)
                if p0 < p1:
                    self.whole.append((wid, p0, p1))
                for period in (b0 // per_row, (b1 - 1) // per_row):
                    inside = period * per_row >= b0 and (period + 1) * per_row <= b1
                    if lo <= period < hi and not inside:
                        partial.add((wid, period))
        self.partial = sorted(partial)

    def bitmap_params(self) -> dict[str, Any]:
        """``bitmap`` (one row of 63-bit words per worker id from ``base + 1`` on, a bit per
        whole period covered) and ``base`` for :data:`_TOTALS_COVERED_PG`."""
        words = max(1, -(-self.periods // _BITMAP_BITS))
        if not self.whole:
            return {"bitmap": [[0] * words], "base": 0}
        base = min(wid for wid, _, _ in self.whole) - 1
        top = max(wid for wid, _, _ in self.whole)
        bitmap = [[0] * words for _ in range(top - base)]
        for wid, p0, p1 in self.whole:
            row = bitmap[wid - base - 1]
            begin, end = p0 - self.lo, p1 - self.lo
            for word in range(begin // _BITMAP_BITS, (end - 1) // _BITMAP_BITS + 1):
                low = max(begin - word * _BITMAP_BITS, 0)
                high = min(end - word * _BITMAP_BITS, _BITMAP_BITS)
                row[word] |= ((1 << high) - 1) & ~((1 << low) - 1)
        return {"bitmap": bitmap, "base": base}


def _verified_since(now: datetime, params: ScoringParams) -> datetime:
    """Where verified hours are read from: the availability horizon's first hour less 24 h,
    or the lease window's first hour, whichever is earlier."""
    lease_start = hour_start(hour_index(now - params.lease_window))
    return min(verification_since(now, params), lease_start)


class _VerifiedHours:
    """Collects the hours (:func:`byteleap.scoring.hour_index`) of verified challenges
    dispatched from ``since`` on, per (miner, worker, GPU); read per GPU and per worker."""

    __slots__ = ("_workers", "since", "triples")

    def __init__(self, since: datetime) -> None:
        self.since = since
        #: (miner_hotkey, worker_id, gpu_uuid) -> hours
        self.triples: dict[tuple[str, str, str], set[int]] = {}
        self._workers: dict[tuple[str, str], set[int]] | None = None

    def add(self, hotkey: str, worker: str, uuid: str, hour: int) -> None:
        hours = self.triples.get((hotkey, worker, uuid))
        if hours is None:
            hours = self.triples[(hotkey, worker, uuid)] = set()
        hours.add(hour)

    def _merged(self, by_worker: bool) -> dict[tuple[str, str], set[int]]:
        out: dict[tuple[str, str], set[int]] = {}
        for (hotkey, worker, uuid), hours in self.triples.items():
            key = (hotkey, worker) if by_worker else (hotkey, uuid)
            held = out.get(key)
            if held is None:
                out[key] = set(hours)
            else:
                held |= hours
        return out

    @property
    def workers(self) -> dict[tuple[str, str], set[int]]:
        if self._workers is None:
            self._workers = self._merged(by_worker=True)
        return self._workers

    def coverage(
        self, intervals: Sequence[LeaseInterval], params: ScoringParams, now: datetime
    ) -> dict[tuple[str, str], BucketRanges]:
        """Per worker, the buckets of the horizon in which its GPUs count."""
        leases: dict[tuple[str, str], list[LeaseInterval]] = {}
        for iv in intervals:
            leases.setdefault((iv.miner_hotkey, iv.worker_id), []).append(iv)
        out: dict[tuple[str, str], BucketRanges] = {}
        workers = self.workers
        for key in workers.keys() | leases.keys():
            ranges = worker_coverage(workers.get(key, ()), leases.get(key, ()), params, now)
            if ranges:
                out[key] = ranges
        return out

    @staticmethod
    def _as_times(
        hours: Mapping[tuple[str, str], set[int]],
    ) -> dict[tuple[str, str], tuple[datetime, ...]]:
        starts: dict[int, datetime] = {}
        out = {}
        for key, indexes in hours.items():
            times = []
            for h in sorted(indexes):
                at = starts.get(h)
                if at is None:
                    at = starts[h] = hour_start(h)
                times.append(at)
            out[key] = tuple(times)
        return out

    def by_gpu(self) -> dict[tuple[str, str], tuple[datetime, ...]]:
        return self._as_times(self._merged(by_worker=False))

    def by_worker(self) -> dict[tuple[str, str], tuple[datetime, ...]]:
        return self._as_times(self.workers)


def _period_mask(ranges: BucketRanges, period: int, per_row: int) -> int:
    """Bits of the period's buckets that lie in ``ranges``."""
    start, end = period * per_row, (period + 1) * per_row
    mask = 0
    for b0, b1 in ranges:
        lo, hi = max(b0, start), min(b1, end)
        if lo < hi:
            mask |= ((1 << (hi - start)) - 1) & ~((1 << (lo - start)) - 1)
    return mask


def _gpu_buckets_in(mask: int, bucket_gpus: str) -> int:
    """The healthy GPUs of a row's buckets selected by ``mask``."""
    if not mask:
        return 0
    return sum(g for slot, g in enumerate(avail.slot_values(bucket_gpus)) if mask >> slot & 1)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _copy_rows(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert ``rows`` (all with the same keys) into ``table`` with PostgreSQL's ``COPY``, inside
    ``conn``'s transaction, which must have begun (a statement ran on it).

    ``COPY`` is several times faster than ``executemany`` for an epoch's 200,000 rows. It goes
    to asyncpg directly, so SQLAlchemy's type processing is skipped: every value must already
    be what asyncpg binds (aware datetimes, ``bytes``), as :func:`_challenge_rows` makes them.
    A failure (a duplicate key) aborts the transaction like any other statement's."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None and driver.is_in_transaction(), "COPY outside the transaction"
    columns = list(rows[0])
    for chunk in _chunks(rows, BULK_COPY_ROWS):
        await driver.copy_records_to_table(
            table.name,
            records=[tuple(row[name] for name in columns) for row in chunk],
            columns=columns,
        )


def _challenge_rows(challenge: ChallengeOpen) -> list[dict[str, Any]]:
    """The ``dispatched`` rows of one challenge, one per GPU (a GPU listed twice: once);
    ``ValueError`` for a challenge that must not be stored."""
    require_aware("dispatched_at", challenge.dispatched_at)
    require_aware("deadline_at", challenge.deadline_at)
    if not challenge.gpu_uuids:
        raise ValueError("a challenge needs at least one GPU")
    missing = [u for u in challenge.gpu_uuids if u not in challenge.gpu_models]
    if missing:
        raise ValueError(f"gpu_models lacks the model of {', '.join(missing)}")
    p = challenge.params
    seed = bytes(challenge.seed)
    return [
        {
            "challenge_id": challenge.challenge_id,
            "gpu_uuid": uuid,
            "miner_hotkey": challenge.miner_hotkey,
            "worker_pubkey": challenge.worker_pubkey,
            "gpu_model": challenge.gpu_models[uuid],
            "m": p.m,
            "n": p.n,
            "k": p.k,
            "v": p.v,
            "stages": p.stages,
            "seed": seed,
            "dispatched_at": challenge.dispatched_at,
            "deadline_at": challenge.deadline_at,
            "status": "dispatched",
        }
        for uuid in dict.fromkeys(challenge.gpu_uuids)
    ]


def _close_refusal(
    closed_before: Sequence[tuple[str, str]], missing: Sequence[tuple[str, str]], *, closed: int
) -> str:
    """Why :meth:`SqlStore.close_challenges` raised: the rows it could not close."""
    parts = []
    for keys, state in ((closed_before, "already closed"), (missing, "does not exist")):
        if keys:
            named = ", ".join(f"challenge {cid} GPU {uuid}" for cid, uuid in keys[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            parts.append(f"{named}{more}: {state}")
    return "; ".join(parts) + f" ({closed} other rows were closed)"


_VERDICT_COLUMNS = (
    "status",
    "closed_at",
    "outcome",
    "failure",
    "detail",
    "throughput_flops",
    "elapsed_s",
    "verify_s",
    "checked_entries",
)


def _verdict_values(verdict: ChallengeVerdict) -> dict[str, Any]:
    """The columns a verdict sets; ``ValueError`` for one that would corrupt a score."""
    require_aware("closed_at", verdict.closed_at)
    outcome = Outcome(verdict.outcome)
    for name in ("throughput_flops", "elapsed_s", "verify_s"):
        value = getattr(verdict, name)
        if value is not None and not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    if outcome is Outcome.VERIFIED and not verdict.throughput_flops:
        raise ValueError("a verified verdict needs a positive throughput_flops")
    return {
        "status": "closed",
        "closed_at": verdict.closed_at,
        "outcome": outcome.value,
        "failure": verdict.failure,
        "detail": verdict.detail,
        "throughput_flops": verdict.throughput_flops,
        "elapsed_s": verdict.elapsed_s,
        "verify_s": verdict.verify_s,
        "checked_entries": verdict.checked_entries,
    }


#: a worker's newest dispatch time moves forward only (one parameter set per worker); each
#: bindparam takes the type of the column it meets
_LAST_CHALLENGE_UPDATE = (
    workers_t.update()
    .where(
        workers_t.c.miner_hotkey == sa.bindparam("b_hotkey"),
        workers_t.c.worker_pubkey == sa.bindparam("b_pubkey"),
        sa.or_(
            workers_t.c.last_challenge_at.is_(None),
            workers_t.c.last_challenge_at < sa.bindparam("b_at"),
        ),
    )
    .values(last_challenge_at=sa.bindparam("b_at"))
)

#: one verdict per parameter set (``b_*`` pick the row, ``v_*`` are :func:`_verdict_values`)
_CLOSE_UPDATE = (
    challenges_t.update()
    .where(
        challenges_t.c.challenge_id == sa.bindparam("b_cid"),
        challenges_t.c.gpu_uuid == sa.bindparam("b_uuid"),
        challenges_t.c.status != "closed",
    )
    .values({name: sa.bindparam(f"v_{name}") for name in _VERDICT_COLUMNS})
)


def _challenge_row(r: Any) -> ChallengeRow:
    roots = None
    if r.roots is not None:
        raw = bytes(r.roots)
        roots = tuple(raw[i : i + ROOT_BYTES] for i in range(0, len(raw), ROOT_BYTES))
    return ChallengeRow(
        challenge_id=r.challenge_id,
        miner_hotkey=r.miner_hotkey,
        worker_pubkey=r.worker_pubkey,
        gpu_uuid=r.gpu_uuid,
        gpu_model=r.gpu_model,
        params=ChallengeParams(m=r.m, n=r.n, k=r.k, v=r.v, stages=r.stages),
        seed=bytes(r.seed),
        dispatched_at=r.dispatched_at,
        deadline_at=r.deadline_at,
        status=r.status,
        committed_at=r.committed_at,
        roots=roots,
        closed_at=r.closed_at,
        outcome=None if r.outcome is None else Outcome(r.outcome),
        failure=r.failure,
        detail=r.detail,
        throughput_flops=r.throughput_flops,
        elapsed_s=r.elapsed_s,
        verify_s=r.verify_s,
    )


if TYPE_CHECKING:  # mypy proves that the implementation keeps the contract's signatures

    def _implements(store: SqlStore) -> ValidatorStore:
        return store


__all__ = ["DEFAULT_CLAIM_EXPIRY", "RESTART_FAILURE", "SqlStore"]
