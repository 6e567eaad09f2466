"""The scoring inputs: everything the scorer reads, in one transaction so that it sees one
snapshot (the miners, challenge observations, GPU claims, availability counts, lease intervals
and usage, verified hours).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from byteleap.errors import Outcome
from byteleap.scoring import (
    OUR_FAILURES,
    ChallengeObservation,
    LeaseInterval,
    LeaseUsage,
    ScoringParams,
    earliest_challenge_needed,
    hour_index,
    hour_start,
    verification_since,
    worker_coverage,
)
from byteleap.scoring.availability import EPOCH, HOUR, BucketRanges
from byteleap.scoring.observations import require_aware
from neurons.validator.store.availability_counts import availability_counts
from neurons.validator.store.base import StoreBase, challenges_t, leases_t, miners_t, registered
from neurons.validator.store.miners import gpu_claims
from neurons.validator.store.records import ScoringInputs


class ScoringInputStore(StoreBase):
    """:meth:`scoring_inputs` and the reads it is made of."""

    async def scoring_inputs(self, now: datetime, params: ScoringParams) -> ScoringInputs:
        require_aware("now", now)
        async with self.transaction("reading the scoring inputs") as conn:
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
            claims = await gpu_claims(conn)
            coverage = verified.coverage(intervals, params, now)
            counts = await availability_counts(conn, self._dialect, now, params, coverage=coverage)
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
                c.miner_hotkey.in_(registered()),
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
                c.miner_hotkey.in_(registered()),
            )
            .distinct()
        )
        for hotkey, worker, uuid, h in rows:
            verified.add(hotkey, worker, uuid, int(h))

    async def _lease_intervals(self, conn: AsyncConnection, now: datetime) -> list[LeaseInterval]:
        """This validator's own leases, and every counted validator's leases from receipts (a
        worker leased by another validator is leased too)."""
        lt = leases_t.c
        rows = await conn.execute(
            sa.select(lt.miner_hotkey, lt.worker_pubkey, lt.started_at, lt.ended_at).where(
                lt.started_at.is_not(None),
                lt.started_at < now,
                lt.miner_hotkey.in_(registered()),
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


__all__ = ["ScoringInputStore"]
