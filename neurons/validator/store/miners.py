"""Miners and their inventory: the metagraph's miners, their workers and GPUs as the polls
report them, and each worker's availability bucket per poll (:mod:`.availability`).

A GPU UUID belongs to the earliest claim still alive (``byteleap.scoring.resolve_gpu_ownership``):
a claim unseen for :attr:`~neurons.validator.store.base.StoreBase.claim_expiry` lapses, and a new
sighting starts it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.chain import NeuronView
from byteleap.errors import StorageError
from byteleap.scoring import GpuClaim, bucket_index, resolve_gpu_ownership
from byteleap.scoring.observations import require_aware
from neurons.validator.store import availability as avail
from neurons.validator.store.base import (
    IN_FLIGHT,
    StoreBase,
    challenges_t,
    gpus_t,
    miners_t,
    registered,
    workers_t,
)
from neurons.validator.store.records import GpuSnapshot, MinerRow, WorkerRow, WorkerSnapshot
from neurons.validator.store.schema import UTCDateTime

#: longest poll error kept (the rest is cut: it is for an operator's eye, not for parsing)
MAX_ERROR_CHARS = 2000


class FleetStore(StoreBase):
    """Miners, workers, GPU claims and availability buckets."""

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
        async with self.transaction("syncing miners") as conn:
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
        async with self.transaction("reading miners") as conn:
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
        async with self.transaction(f"recording the inventory of {miner_hotkey}") as conn:
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
        async with self.transaction(f"recording a poll failure of {miner_hotkey}") as conn:
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
        of_registered = registered()
        async with self.transaction("reading workers") as conn:
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
            claims = await gpu_claims(conn)
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
                    .where(gpus_t.c.present.is_(True), gpus_t.c.miner_hotkey.in_(of_registered))
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


async def gpu_claims(conn: AsyncConnection) -> list[GpuClaim]:
    """Every GPU claim of a registered miner, with its first and last sighting."""
    rows = await conn.execute(
        sa.select(
            gpus_t.c.gpu_uuid,
            gpus_t.c.miner_hotkey,
            gpus_t.c.worker_pubkey,
            gpus_t.c.first_seen,
            gpus_t.c.last_seen,
        ).where(gpus_t.c.miner_hotkey.in_(registered()))
    )
    return [GpuClaim(r[0], r[1], r[2], r[3], max(r[3], r[4])) for r in rows]


__all__ = ["MAX_ERROR_CHARS", "FleetStore", "gpu_claims"]
