"""Rows of the ``challenges`` table: what a :class:`ChallengeOpen` inserts, what a verdict sets,
the bulk statements that apply them and a stored row read back as :class:`ChallengeRow`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.challenge.params import ChallengeParams
from byteleap.errors import Outcome
from byteleap.scoring.observations import require_aware
from neurons.validator.store.base import challenges_t, chunks, workers_t
from neurons.validator.store.records import ChallengeOpen, ChallengeRow, ChallengeVerdict

ROOT_BYTES = 32
#: rows per ``COPY`` of ``ChallengeStore.open_challenges`` on PostgreSQL
BULK_COPY_ROWS = 50_000


async def copy_rows(conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) into ``table`` with PostgreSQL's ``COPY``, inside
    ``conn``'s transaction, which must have begun (a statement ran on it).

    ``COPY`` is several times faster than ``executemany`` for an epoch's 200,000 rows. It goes
    to asyncpg directly, so SQLAlchemy's type processing is skipped: every value must already
    be what asyncpg binds (aware datetimes, ``bytes``), as :func:`challenge_rows` makes them.
    A failure (a duplicate key) aborts the transaction like any other statement's."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None and driver.is_in_transaction(), "COPY outside the transaction"
    columns = list(rows[0])
    for chunk in chunks(rows, BULK_COPY_ROWS):
        await driver.copy_records_to_table(
            table.name,
            records=[tuple(row[name] for name in columns) for row in chunk],
            columns=columns,
        )


def challenge_rows(challenge: ChallengeOpen) -> list[dict[str, Any]]:
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


def close_refusal(
    closed_before: Sequence[tuple[str, str]], missing: Sequence[tuple[str, str]], *, closed: int
) -> str:
    """Why :meth:`ChallengeStore.close_challenges` raised: the rows it could not close."""
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


def verdict_values(verdict: ChallengeVerdict) -> dict[str, Any]:
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
LAST_CHALLENGE_UPDATE = (
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

#: one verdict per parameter set (``b_*`` pick the row, ``v_*`` are :func:`verdict_values`)
CLOSE_UPDATE = (
    challenges_t.update()
    .where(
        challenges_t.c.challenge_id == sa.bindparam("b_cid"),
        challenges_t.c.gpu_uuid == sa.bindparam("b_uuid"),
        challenges_t.c.status != "closed",
    )
    .values({name: sa.bindparam(f"v_{name}") for name in _VERDICT_COLUMNS})
)


def challenge_row(r: Any) -> ChallengeRow:
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


__all__ = [
    "BULK_COPY_ROWS",
    "CLOSE_UPDATE",
    "LAST_CHALLENGE_UPDATE",
    "ROOT_BYTES",
    "challenge_row",
    "challenge_rows",
    "close_refusal",
    "copy_rows",
    "verdict_values",
]
