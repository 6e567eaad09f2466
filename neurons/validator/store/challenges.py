"""Challenges: one row per (challenge, GPU) from dispatch through commit to its verdict.

An epoch's rows open in one transaction (:meth:`ChallengeStore.open_challenges`), which
PostgreSQL loads with ``COPY`` (several times faster for 200,000 rows), and close in one
(:meth:`ChallengeStore.close_challenges`). A row is closed exactly once: closing it again is a
:class:`~byteleap.errors.StorageError`. At start-up :meth:`ChallengeStore.close_in_flight`
excuses what a previous run left open (our fault, never the miner's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
import structlog

from byteleap.errors import Outcome, StorageError
from byteleap.scoring import OUR_FAILURES
from byteleap.scoring.observations import require_aware
from neurons.validator.store.base import (
    BULK_CHUNK_KEYS,
    BULK_CHUNK_ROWS,
    IN_FLIGHT,
    StoreBase,
    challenges_t,
    chunks,
)
from neurons.validator.store.challenge_rows import (
    CLOSE_UPDATE,
    LAST_CHALLENGE_UPDATE,
    ROOT_BYTES,
    challenge_row,
    challenge_rows,
    close_refusal,
    copy_rows,
    verdict_values,
)
from neurons.validator.store.records import (
    ChallengeOpen,
    ChallengeRow,
    ChallengeVerdict,
    MinerTally,
    VerifiedSample,
)

log = structlog.get_logger(__name__)

#: ``failure`` of the challenges closed by :meth:`ChallengeStore.close_in_flight`
RESTART_FAILURE = "restart"
assert RESTART_FAILURE in OUR_FAILURES, "a restart is the validator's fault, never the miner's"


class ChallengeStore(StoreBase):
    """Opening, committing and closing challenge rows, and what was learnt from them."""

    async def open_challenge(self, challenge: ChallengeOpen) -> None:
        rows = challenge_rows(challenge)
        async with self.transaction(f"opening challenge {challenge.challenge_id}") as conn:
            await conn.execute(challenges_t.insert(), rows)
            await conn.execute(
                LAST_CHALLENGE_UPDATE,
                {
                    "b_hotkey": challenge.miner_hotkey,
                    "b_pubkey": challenge.worker_pubkey,
                    "b_at": challenge.dispatched_at,
                },
            )

    async def open_challenges(self, challenges: Sequence[ChallengeOpen]) -> None:
        if not challenges:
            return
        rows = [row for challenge in challenges for row in challenge_rows(challenge)]
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
        async with self.transaction(what) as conn:
            # the workers first: this statement also begins the transaction the COPY joins
            for chunk in chunks(worker_params, BULK_CHUNK_ROWS):
                await conn.execute(LAST_CHALLENGE_UPDATE, chunk)
            if self._dialect == "postgresql":
                await copy_rows(conn, challenges_t, rows)
            else:
                for chunk in chunks(rows, BULK_CHUNK_ROWS):
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
        async with self.transaction(f"recording the commit of {challenge_id}") as conn:
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
        values = verdict_values(verdict)
        c = challenges_t.c
        where = (c.challenge_id == verdict.challenge_id, c.gpu_uuid == verdict.gpu_uuid)
        async with self.transaction(f"closing challenge {verdict.challenge_id}") as conn:
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
        values = [verdict_values(v) for v in verdicts]  # every verdict is checked first
        c = challenges_t.c
        pairs = list(dict.fromkeys((v.challenge_id, v.gpu_uuid) for v in verdicts))
        closed_before: list[tuple[str, str]] = []
        missing: list[tuple[str, str]] = []
        async with self.transaction(f"closing {len(verdicts)} challenge rows") as conn:
            status: dict[tuple[str, str], str] = {}
            for keys in chunks(pairs, BULK_CHUNK_KEYS):
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
            for chunk in chunks(updates, BULK_CHUNK_ROWS):
                await conn.execute(CLOSE_UPDATE, chunk)
        if closed_before or missing:
            raise StorageError(close_refusal(closed_before, missing, closed=len(updates)))

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
        async with self.transaction("reading verified throughputs") as conn:
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
        async with self.transaction("closing in-flight challenges") as conn:
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
        async with self.transaction(f"reading challenge {challenge_id}") as conn:
            rows = (await conn.execute(query)).all()
        return [challenge_row(r) for r in rows]

    async def recent_challenges(self, limit: int = 50) -> list[ChallengeRow]:
        c = challenges_t.c
        query = (
            sa.select(challenges_t)
            .order_by(c.dispatched_at.desc(), c.challenge_id, c.gpu_uuid)
            .limit(limit)
        )
        async with self.transaction("reading recent challenges") as conn:
            rows = (await conn.execute(query)).all()
        return [challenge_row(r) for r in rows]

    async def tally(self, since: datetime) -> list[MinerTally]:
        require_aware("since", since)
        c = challenges_t.c
        closed_since = (c.status == "closed", c.dispatched_at >= since)
        # one statement, so both tallies come from the same snapshot (pysqlite runs each
        # SELECT outside a transaction, so two statements could see different rows)
        async with self.transaction("tallying challenges") as conn:
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


__all__ = ["BULK_CHUNK_KEYS", "BULK_CHUNK_ROWS", "RESTART_FAILURE", "ChallengeStore"]
