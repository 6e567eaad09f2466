"""Availability rows: one per worker per *period* of buckets, kept exact and cheap to sum.

One row per (worker, 5-minute bucket) would be 16 million rows for 8,000 workers over 169 hours,
too many to aggregate on every scoring pass. A row instead covers a period of
:func:`buckets_per_row` buckets (an hour of twelve 5-minute buckets by default) and holds:

- ``online_mask``: bit ``s`` set when the worker reported healthy in the period's bucket ``s``;
  ``online_count`` its number of set bits; ``gpu_buckets`` the sum over those buckets of the
  largest healthy GPU count reported in each;
- ``seen_mask`` and ``max_gpus``: the same for every poll, healthy or not (the scorer's ``gpus``,
  the most GPUs reported in the horizon, counts unhealthy polls too);
- ``bucket_gpus`` / ``seen_gpus``: each bucket's largest healthy / any GPU count as two decimal
  digits a bucket, so a second poll in a bucket with more GPUs raises the count exactly as
  :func:`byteleap.scoring.count_availability` does, and so the partial periods at the edges of
  the horizon can be cut bucket by bucket.

A poll is one ``INSERT ... ON CONFLICT DO UPDATE`` that ORs the bucket's bit in and raises the
counters only by what is new, so repeating a poll within a bucket changes nothing. Scoring sums
``online_count``/``gpu_buckets``/``max_gpus`` over whole periods in SQL and folds in the (at most
two) partial periods in Python with :func:`fold_edge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from neurons.validator.store.schema import Availability, metadata

#: decimal digits per bucket in ``bucket_gpus`` / ``seen_gpus``
GPU_DIGITS = 2
#: the most GPUs one worker may report (the protocol caps an inventory at 64)
MAX_WORKER_GPUS = 10**GPU_DIGITS - 1
#: masks are signed 64-bit integers on both engines; stay well clear of the sign bit
MAX_BUCKETS_PER_ROW = 60
SECONDS_PER_HOUR = 3600


def buckets_per_row(bucket_seconds: int) -> int:
    """Buckets one row covers: the hour's buckets when ``bucket_seconds`` divides an hour (12 for
    5-minute buckets; at most 60, taking the largest divisor), else one row per bucket."""
    if bucket_seconds < 1:
        raise ValueError(f"bucket_seconds must be >= 1, got {bucket_seconds}")
    if SECONDS_PER_HOUR % bucket_seconds:
        return 1
    per_hour = SECONDS_PER_HOUR // bucket_seconds
    return max(d for d in range(1, min(per_hour, MAX_BUCKETS_PER_ROW) + 1) if per_hour % d == 0)


def slot_text(per_row: int, slot: int, value: int) -> str:
    """A per-bucket counter string with ``value`` in ``slot`` and zero everywhere else."""
    zero = "0" * GPU_DIGITS
    return zero * slot + f"{value:0{GPU_DIGITS}d}" + zero * (per_row - slot - 1)


def slot_values(text: str) -> list[int]:
    return [int(text[i : i + GPU_DIGITS]) for i in range(0, len(text), GPU_DIGITS)]


def row_values(
    worker_id: int,
    bucket_seconds: int,
    bucket: int,
    gpus: int,
    healthy: bool,
) -> dict[str, Any]:
    """The row one poll of one worker inserts (or merges into the existing row)."""
    if not 0 <= gpus <= MAX_WORKER_GPUS:
        raise ValueError(f"a worker may report 0..{MAX_WORKER_GPUS} GPUs, got {gpus}")
    per_row = buckets_per_row(bucket_seconds)
    period, slot = divmod(bucket, per_row)
    bit = 1 << slot
    return {
        "worker_id": worker_id,
        "bucket_seconds": bucket_seconds,
        "period": period,
        "online_mask": bit if healthy else 0,
        "online_count": 1 if healthy else 0,
        "gpu_buckets": gpus if healthy else 0,
        "seen_mask": bit,
        "max_gpus": gpus,
        "bucket_gpus": slot_text(per_row, slot, gpus if healthy else 0),
        "seen_gpus": slot_text(per_row, slot, gpus),
    }


def _substr(*args: Any) -> ColumnElement[str]:
    return sa.func.substr(*args, type_=sa.String)


def _int(value: int) -> ColumnElement[int]:
    # a literal, not a bind: positions are constants of the statement, and asyncpg wants typed
    # parameters where SQLite is happy with anything
    return sa.literal_column(str(int(value)), sa.Integer)


def upsert(dialect: str, bucket_seconds: int, bucket: int) -> Any:
    """``INSERT ... ON CONFLICT DO UPDATE`` merging polls of ``bucket`` into their rows; execute
    it with a list of :func:`row_values` (one per worker, each worker once)."""
    table = metadata.tables[Availability.__tablename__]
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    new = statement.excluded
    old = table.c
    per_row = buckets_per_row(bucket_seconds)
    slot = bucket % per_row
    start = slot * GPU_DIGITS + 1

    def splice(current: Any, incoming: Any) -> ColumnElement[str]:
        parts = []
        if slot > 0:
            parts.append(_substr(current, _int(1), _int(start - 1)))
        parts.append(_substr(incoming, _int(start), _int(GPU_DIGITS)))
        if slot < per_row - 1:
            parts.append(_substr(current, _int(start + GPU_DIGITS)))
        joined = parts[0]
        for part in parts[1:]:
            joined = joined.concat(part)
        return joined

    old_healthy = sa.cast(_substr(old.bucket_gpus, _int(start), _int(GPU_DIGITS)), sa.Integer)
    old_seen = sa.cast(_substr(old.seen_gpus, _int(start), _int(GPU_DIGITS)), sa.Integer)
    newly_online = sa.and_(new.online_mask != 0, old.online_mask.bitwise_and(new.online_mask) == 0)
    more_healthy = new.gpu_buckets > old_healthy
    more_seen = new.max_gpus > old_seen
    return statement.on_conflict_do_update(
        index_elements=[old.worker_id, old.bucket_seconds, old.period],
        set_={
            "online_mask": old.online_mask.bitwise_or(new.online_mask),
            "online_count": old.online_count + sa.case((newly_online, 1), else_=0),
            "gpu_buckets": old.gpu_buckets
            + sa.case((more_healthy, new.gpu_buckets - old_healthy), else_=0),
            "bucket_gpus": sa.case(
                (more_healthy, splice(old.bucket_gpus, new.bucket_gpus)), else_=old.bucket_gpus
            ),
            "seen_mask": old.seen_mask.bitwise_or(new.seen_mask),
            "max_gpus": sa.case((new.max_gpus > old.max_gpus, new.max_gpus), else_=old.max_gpus),
            "seen_gpus": sa.case(
                (more_seen, splice(old.seen_gpus, new.seen_gpus)), else_=old.seen_gpus
            ),
        },
    )


@dataclass(frozen=True, slots=True)
class Horizon:
    """The scorer's horizon ``[first, stop)`` of bucket indexes, cut into stored periods."""

    bucket_seconds: int
    per_row: int
    first: int
    stop: int

    @property
    def full_periods(self) -> tuple[int, int]:
        """``[lo, hi)``: the periods lying wholly inside the horizon."""
        lo = -(-self.first // self.per_row)  # ceil
        hi = self.stop // self.per_row
        return lo, max(lo, hi)

    def edge_periods(self) -> dict[int, int]:
        """Period -> mask of its buckets inside the horizon, for periods only partly inside."""
        lo, hi = self.full_periods
        edges: dict[int, int] = {}
        for period in {self.first // self.per_row, self.stop // self.per_row}:
            if lo <= period < hi:
                continue
            begin = max(self.first, period * self.per_row) - period * self.per_row
            end = min(self.stop, (period + 1) * self.per_row) - period * self.per_row
            if end > begin:
                edges[period] = ((1 << end) - 1) & ~((1 << begin) - 1)
        return edges


def horizon(first: int, stop: int, bucket_seconds: int) -> Horizon:
    return Horizon(bucket_seconds, buckets_per_row(bucket_seconds), first, stop)


@dataclass(slots=True)
class Tally:
    """One worker's availability over the horizon, summed period by period."""

    gpus: int = 0
    online_buckets: int = 0
    online_gpu_buckets: int = 0

    def add(self, gpus: int, online_buckets: int, online_gpu_buckets: int) -> None:
        self.gpus = max(self.gpus, gpus)
        self.online_buckets += online_buckets
        self.online_gpu_buckets += online_gpu_buckets


def fold_edge(
    tally: Tally,
    inside: int,
    online_mask: int,
    seen_mask: int,
    bucket_gpus: str,
    seen_gpus: str,
) -> bool:
    """Add the buckets of a partial period that lie ``inside`` the horizon (a bit mask) to
    ``tally``; False (and nothing added) when the worker was not seen in them."""
    if not seen_mask & inside:
        return False
    healthy = slot_values(bucket_gpus)
    seen = slot_values(seen_gpus)
    online = online_mask & inside
    tally.add(
        max(value for slot, value in enumerate(seen) if inside >> slot & 1),
        online.bit_count(),
        sum(value for slot, value in enumerate(healthy) if online >> slot & 1),
    )
    return True


__all__ = [
    "GPU_DIGITS",
    "MAX_WORKER_GPUS",
    "Horizon",
    "Tally",
    "buckets_per_row",
    "fold_edge",
    "horizon",
    "row_values",
    "slot_text",
    "slot_values",
    "upsert",
]
