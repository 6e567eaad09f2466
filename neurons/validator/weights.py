"""From stored observations to weights on chain (SPEC 5.4, "Submission").

:meth:`WeightSetter.compute` is what ``byteleap-validator weights --dry-run`` shows:
``store.scoring_inputs`` at ``now`` through :func:`byteleap.scoring.compute_weights`, mapped from
hotkeys to uids. :meth:`WeightSetter.submit` sends it through ``ChainPort.set_weights`` with the
package's ``version_key`` and stores every attempt with its inputs:

- ``set``: the chain accepted it (the block is stored);
- ``skipped``: every score is 0, so nothing is set, and the reason says why;
- ``failed``: the chain refused it or could not be reached after retries with backoff.

:class:`WeightSchedule` decides when the next attempt is due, in blocks: every
``weights_interval_blocks`` (default the tempo) after the last one, sooner after a transient
failure, and never before the chain's rate limit has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

import byteleap
from byteleap.chain import ChainPort, ChainRateLimited, ChainRefused
from byteleap.errors import ChainError
from byteleap.scoring import ScoringParams, WeightResult, compute_weights
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import ScoringInputs, ValidatorStore, WeightSubmission

log = structlog.get_logger("byteleap.validator.weights")

#: sleeps between attempts of one submission when the chain fails (not when it refuses)
RETRY_DELAYS_S = (2.0, 8.0, 30.0)


@dataclass(frozen=True, slots=True)
class WeightVector:
    """A computed weight vector: the scorer's result and the same weights by uid."""

    result: WeightResult
    inputs: ScoringInputs
    #: uid -> weight, zeros left out; empty when every score is 0
    by_uid: dict[int, float]

    @property
    def reason(self) -> str | None:
        return self.result.reason

    def record_inputs(self) -> dict[str, Any]:
        """What is stored with the submission: the scorer's explanation and the uid map."""
        return {**self.result.to_dict(), "uids": dict(self.inputs.uids)}


def by_uid(weights: Mapping[str, float], uids: Mapping[str, int]) -> dict[int, float]:
    """``hotkey -> weight`` as ``uid -> weight``; hotkeys without a uid and zeros are dropped."""
    out: dict[int, float] = {}
    for hotkey, weight in weights.items():
        uid = uids.get(hotkey)
        if uid is not None and weight > 0.0:
            out[uid] = out.get(uid, 0.0) + weight
    return dict(sorted(out.items()))


class WeightSetter:
    def __init__(
        self,
        *,
        store: ValidatorStore,
        chain: ChainPort | None,
        params: ScoringParams,
        wall_clock: Callable[[], datetime],
        metrics: ValidatorMetrics | None = None,
        version_key: int | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.chain = chain
        self.params = params
        self.wall_clock = wall_clock
        self.metrics = metrics or ValidatorMetrics()
        self.version_key = byteleap.version_key() if version_key is None else version_key
        self.sleep = sleep

    async def compute(
        self, now: datetime | None = None, *, uids: Mapping[str, int] | None = None
    ) -> WeightVector:
        """The vector the validator would set at ``now``.

        ``uids`` (hotkey -> uid, e.g. from a fresh metagraph) replaces the stored miners: exactly
        those hotkeys are scored. By default the store's registered miners are."""
        now = now or self.wall_clock()
        inputs = await self.store.scoring_inputs(now, self.params)
        if uids is not None:
            inputs = ScoringInputs(
                now=inputs.now,
                params=inputs.params,
                miners=tuple(sorted(uids)),
                uids=dict(uids),
                challenges=inputs.challenges,
                gpu_claims=inputs.gpu_claims,
                availability_counts=inputs.availability_counts,
                lease_intervals=inputs.lease_intervals,
                lease_usage=inputs.lease_usage,
            )
        result = compute_weights(
            now=now,
            params=self.params,
            challenges=inputs.challenges,
            gpu_claims=inputs.gpu_claims,
            lease_intervals=inputs.lease_intervals,
            lease_usage=inputs.lease_usage,
            availability_counts=inputs.availability_counts,
            miners=inputs.miners,
        )
        return WeightVector(result, inputs, by_uid(result.weights, inputs.uids))

    async def submit(self, stop: asyncio.Event | None = None) -> Attempt:
        """Compute, set on chain (retrying transient chain failures), and store the attempt."""
        assert self.chain is not None, "submit needs a chain"
        now = self.wall_clock()
        vector = await self.compute(now)
        base: dict[str, Any] = {
            "submitted_at": now,
            "uids": tuple(vector.by_uid),
            "weights": tuple(vector.by_uid.values()),
            "inputs": vector.record_inputs(),
            "version_key": self.version_key,
        }
        if not vector.by_uid:
            reason = vector.reason or "no weights: no registered miner has a score"
            log.warning("weights_skipped", reason=reason)
            attempt = Attempt(WeightSubmission(status="skipped", reason=reason, **base))
        else:
            attempt = await self._send(vector, base, stop)
        submission = attempt.submission
        submission_id = await self.store.record_weights(submission)
        self.metrics.weights.labels(status=submission.status).inc()
        if submission.status == "set":
            self.metrics.last_weights_time.set(now.timestamp())
            if submission.block is not None:
                self.metrics.last_weights_block.set(submission.block)
        return replace(attempt, submission=replace(submission, id=submission_id))

    async def _send(
        self, vector: WeightVector, base: dict[str, Any], stop: asyncio.Event | None
    ) -> Attempt:
        assert self.chain is not None
        tries = 0
        while True:
            tries += 1
            try:
                receipt = await self.chain.set_weights(vector.by_uid, version_key=self.version_key)
            except ChainRateLimited as exc:
                log.info("weights_rate_limited", blocks_remaining=exc.blocks_remaining)
                return Attempt(
                    WeightSubmission(
                        status="failed", reason=f"rate limited: {exc.message}", **base
                    ),
                    rate_limited_blocks=max(1, exc.blocks_remaining or 1),
                )
            except ChainRefused as exc:
                log.error("weights_refused", error=exc.message)
                return Attempt(
                    WeightSubmission(status="failed", reason=f"refused: {exc.message}", **base)
                )
            except ChainError as exc:
                if tries > len(RETRY_DELAYS_S) or (stop is not None and stop.is_set()):
                    log.error("weights_failed", error=exc.message, attempts=tries)
                    reason = f"chain error after {tries} attempt(s): {exc.message}"
                    return Attempt(
                        WeightSubmission(status="failed", reason=reason, **base),
                        transient=True,
                    )
                delay = RETRY_DELAYS_S[tries - 1]
                log.warning("weights_retry", error=exc.message, in_s=delay, attempt=tries)
                await self.sleep(delay)
                continue
            log.info(
                "weights_set",
                block=receipt.block,
                miners=len(vector.by_uid),
                message=receipt.message,
            )
            return Attempt(WeightSubmission(status="set", block=receipt.block, **base))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One stored submission, and what it tells the schedule."""

    submission: WeightSubmission
    #: the chain failed (rather than refused) even after retries: try again sooner
    transient: bool = False
    #: the chain's rate limit: blocks before it accepts weights from us again
    rate_limited_blocks: int | None = None


class WeightSchedule:
    """When the next submission is due, in blocks."""

    def __init__(self, interval_blocks: int) -> None:
        if interval_blocks < 1:
            raise ValueError("interval_blocks must be >= 1")
        self.interval_blocks = interval_blocks
        self.next_block: int | None = None

    def resume(self, submissions: list[WeightSubmission]) -> None:
        """Continue after a restart: the next submission is an interval after the last set."""
        for submission in submissions:
            if submission.status == "set" and submission.block is not None:
                self.next_block = submission.block + self.interval_blocks
                return

    def due(self, block: int) -> bool:
        return self.next_block is None or block >= self.next_block

    def after(self, block: int, attempt: Attempt) -> None:
        """Schedule the next attempt after ``attempt`` was made at ``block``."""
        submission = attempt.submission
        if submission.status == "set" and submission.block is not None:
            self.next_block = submission.block + self.interval_blocks
        elif attempt.rate_limited_blocks is not None:
            self.next_block = block + attempt.rate_limited_blocks
        elif attempt.transient:
            self.next_block = block + max(1, self.interval_blocks // 4)
        else:
            self.next_block = block + self.interval_blocks


__all__ = [
    "RETRY_DELAYS_S",
    "Attempt",
    "WeightSchedule",
    "WeightSetter",
    "WeightVector",
    "by_uid",
]
