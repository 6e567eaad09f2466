"""The availability counts of the scoring inputs: per worker, the healthy GPU-buckets of the
horizon, split into those its verification or leases cover and the rest.

The rows are the bitmaps of :mod:`.availability`. Whole periods are summed in SQL; the periods
at the horizon's edges and those a coverage range cuts are folded bucket by bucket here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.scoring import AvailabilityCount, ScoringParams, availability_bucket_range
from byteleap.scoring.availability import BucketRanges
from neurons.validator.store import availability as avail
from neurons.validator.store.base import (
    BULK_CHUNK_KEYS,
    BULK_CHUNK_ROWS,
    avail_t,
    chunks,
    registered,
    workers_t,
)
from neurons.validator.store.schema import Availability, Miner, Worker


async def availability_counts(
    conn: AsyncConnection,
    dialect: str,
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
    if coverage is not None and lo < hi and dialect == "postgresql":
        # the ids first: the scan needs the bitmap
        ids = {
            (hotkey, worker): wid
            for wid, hotkey, worker in await conn.execute(
                sa.select(w.id, w.miner_hotkey, w.worker_pubkey).where(
                    w.miner_hotkey.in_(registered())
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
                .where(w.miner_hotkey.in_(registered()))
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
                w.miner_hotkey.in_(registered()),
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
            await _covered_whole_periods(conn, size, plan, counted)
        await _covered_partial_periods(conn, size, plan, coverage, counted)
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
    conn: AsyncConnection, size: int, plan: _CoveragePlan, counted: dict[Any, int]
) -> None:
    """Add the healthy GPU-buckets of the whole periods ``plan`` covers (SQLite): each
    range is a primary-key range scan of ``(worker_id, bucket_seconds, period)``."""
    for chunk in chunks(plan.whole, BULK_CHUNK_ROWS):
        ranges = json.dumps([list(r) for r in chunk])
        rows = await conn.execute(_COVERED_SQLITE, {"ranges": ranges, "size": size})
        for wid, gpu_buckets in rows:
            key = plan.keys[wid]
            counted[key] = counted.get(key, 0) + int(gpu_buckets)


async def _covered_partial_periods(
    conn: AsyncConnection,
    size: int,
    plan: _CoveragePlan,
    coverage: Mapping[tuple[str, str], BucketRanges],
    counted: dict[tuple[str, str], int],
) -> None:
    """Add the covered buckets of the whole periods a range covers only in part."""
    a = avail_t.c
    per_row = plan.per_row
    for pairs in chunks(plan.partial, BULK_CHUNK_KEYS):
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


__all__ = ["availability_counts"]
