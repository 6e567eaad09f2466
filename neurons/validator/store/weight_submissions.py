"""Weight submissions: every weight vector the validator set (or tried to), with its inputs."""

from __future__ import annotations

import sqlalchemy as sa

from byteleap.scoring.observations import require_aware
from neurons.validator.store.base import StoreBase, weights_t
from neurons.validator.store.records import WeightSubmission


class WeightSubmissionStore(StoreBase):
    """Recording and reading weight submissions."""

    async def record_weights(self, submission: WeightSubmission) -> int:
        require_aware("submitted_at", submission.submitted_at)
        if len(submission.uids) != len(submission.weights):
            raise ValueError("uids and weights must have the same length")
        async with self.transaction("recording a weight submission") as conn:
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
        async with self.transaction("reading weight submissions") as conn:
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


__all__ = ["WeightSubmissionStore"]
