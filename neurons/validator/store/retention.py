"""Retention: what :meth:`RetentionStore.prune` deletes once it is older than the windows.

Closed challenges, weight submissions and collected receipts go after ``retention``; GPU claims
unseen that long (never sooner than the claim expiry); availability rows by whole periods after
``availability_retention``. Open challenges, miners, workers, renters and leases stay.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog

from byteleap.scoring import bucket_index
from byteleap.scoring.observations import require_aware
from neurons.validator.store import availability as avail
from neurons.validator.store.base import (
    StoreBase,
    avail_t,
    challenges_t,
    gpus_t,
    receipts_t,
    weights_t,
)

log = structlog.get_logger(__name__)


class RetentionStore(StoreBase):
    """Pruning every aggregate's old rows in one transaction."""

    async def prune(
        self, now: datetime, *, retention: timedelta, availability_retention: timedelta
    ) -> dict[str, int]:
        require_aware("now", now)
        cutoff = now - retention
        avail_cutoff = now - availability_retention
        deleted: dict[str, int] = {}
        async with self.transaction("pruning") as conn:
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


__all__ = ["RetentionStore"]
