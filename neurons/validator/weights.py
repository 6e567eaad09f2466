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

A scoring pass is seconds of CPU at 256 miners (building every observation of the window, then
scoring it), and the challenge timer shares the daemon's event loop (SPEC 5.5). With an
:class:`OffLoop` (the daemon's background store: a process of its own, on PostgreSQL) the whole
pass runs there (:func:`scoring_pass`), and so does storing the submission with its explanation
(:func:`record_submission`): the explanation has an entry per GPU and per worker (megabytes at
256 miners), and only its compressed JSON, as bytes, comes back to this process, with the result
less those details.
Without one ``compute_weights`` runs in a worker thread and the rest on the caller's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

import byteleap
from byteleap.chain import ChainPort, ChainRateLimited, ChainRefused
from byteleap.errors import ByteLeapError, ChainError
from byteleap.scoring import ScoringParams, WeightResult, compute_weights
from neurons.validator.background_store import OffLoop
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import ScoringInputs, ValidatorStore, WeightSubmission

log = structlog.get_logger("byteleap.validator.weights")

#: sleeps between attempts of one submission when the chain fails (not when it refuses)
RETRY_DELAYS_S = (2.0, 8.0, 30.0)


def weigh(now: datetime, params: ScoringParams, inputs: ScoringInputs) -> WeightResult:
    """The pure part of a scoring pass (GPU ownership, scores, weights) on ``inputs``."""
    return compute_weights(
        now=now,
        params=params,
        challenges=inputs.challenges,
        gpu_claims=inputs.gpu_claims,
        lease_intervals=inputs.lease_intervals,
        lease_usage=inputs.lease_usage,
        availability_counts=inputs.availability_counts,
        miners=inputs.miners,
        verified_hours=inputs.verified_hours,
    )


def explanation(result: WeightResult, inputs: ScoringInputs) -> dict[str, Any]:
    """What is stored with a submission: the scorer's explanation and the uid map."""
    return {**result.to_dict(), "uids": dict(inputs.uids)}


async def scoring_pass(
    store: ValidatorStore,
    now: datetime,
    params: ScoringParams,
    uids: Mapping[str, int] | None,
) -> tuple[ScoringInputs, WeightResult, bytes]:
    """A background-store job: ``scoring_inputs`` and :func:`weigh`.

    What comes back is small where it has to be rebuilt object by object: the inputs without
    their observations (the uid map is all a submission needs), the result without its per-GPU
    and per-worker details (``MinerExplanation.gpus``, ``availability_detail``), and the full
    :func:`explanation` as compressed JSON (bytes: copied, not rebuilt), for
    :func:`record_submission`."""
    inputs = _scored(await store.scoring_inputs(now, params), uids)
    result = weigh(now, params, inputs)
    record = zlib.compress(json.dumps(explanation(result, inputs)).encode(), 1)
    summary = ScoringInputs(
        now=inputs.now,
        params=inputs.params,
        miners=inputs.miners,
        uids=dict(inputs.uids),
        challenges=(),
        gpu_claims=(),
        availability_counts=(),
    )
    lighter = {
        hotkey: replace(m, gpus=(), availability_detail=None) for hotkey, m in result.miners.items()
    }
    return summary, replace(result, miners=lighter), record


async def record_submission(
    store: ValidatorStore, submission: WeightSubmission, record: bytes
) -> int:
    """A background-store job: store ``submission`` with the explanation ``record`` (from
    :func:`scoring_pass`)."""
    return await store.record_weights(
        replace(submission, inputs=json.loads(zlib.decompress(record)))
    )


@dataclass(frozen=True, slots=True)
class WeightVector:
    """A computed weight vector: the scorer's result and the same weights by uid."""

    result: WeightResult
    inputs: ScoringInputs
    #: uid -> weight, zeros left out; empty when every score is 0
    by_uid: dict[int, float]
    #: the stored explanation as compressed JSON, when the pass ran off the loop: ``result``
    #: then lacks the per-GPU and per-worker details, which only this carries
    record: bytes | None = None

    @property
    def reason(self) -> str | None:
        return self.result.reason

    def record_inputs(self) -> dict[str, Any]:
        """The scorer's explanation and the uid map (without per-GPU and per-worker details
        when the pass ran off the loop; what is stored then is :attr:`record`)."""
        return explanation(self.result, self.inputs)


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
        off_loop: OffLoop | None = None,
    ) -> None:
        self.store = store
        #: where the scoring pass runs; None: ``compute_weights`` in a worker thread
        self.off_loop = off_loop
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
        those hotkeys are scored. By default the store's registered miners are. With an
        :class:`OffLoop` the vector's ``inputs`` keep the uid map but not the observations, and
        its ``result`` lacks the per-GPU and per-worker details (see :func:`scoring_pass`)."""
        at = now or self.wall_clock()
        if self.off_loop is not None:
            inputs, result, record = await self.off_loop.run(scoring_pass, at, self.params, uids)
            return WeightVector(result, inputs, by_uid(result.weights, inputs.uids), record)
        inputs = _scored(await self.store.scoring_inputs(at, self.params), uids)
        result = await asyncio.to_thread(weigh, at, self.params, inputs)
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
        if self.off_loop is not None and vector.record is not None:
            submission_id = await self.off_loop.run(record_submission, submission, vector.record)
        else:
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


def _scored(inputs: ScoringInputs, uids: Mapping[str, int] | None) -> ScoringInputs:
    """``inputs`` with exactly the hotkeys of ``uids`` scored, when given."""
    if uids is None:
        return inputs
    return replace(inputs, miners=tuple(sorted(uids)), uids=dict(uids))


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


def record_lease_revenue(metrics: ValidatorMetrics, inputs: Mapping[str, Any]) -> None:
    """Per-miner lease revenue of the scoring just done (the stored explanation)."""
    miners = inputs.get("miners")
    if not isinstance(miners, Mapping):
        return
    gauge = metrics.lease_revenue
    gauge.clear()
    for hotkey, explanation in miners.items():
        if isinstance(explanation, Mapping):
            gauge.labels(miner=hotkey).set(float(explanation.get("lease_revenue") or 0.0))


async def weights_loop(
    setter: WeightSetter,
    chain: ChainPort,
    stop: asyncio.Event,
    *,
    interval_blocks: int | None,
    check_interval_s: float,
) -> None:
    """Every ``check_interval_s`` until ``stop``: when the schedule says the block is due, score
    and submit (and refresh the lease revenue gauge); a failing check is logged, counted and
    tried again at the next interval."""
    metrics = setter.metrics
    schedule: WeightSchedule | None = None
    while not stop.is_set():
        metrics.rounds.labels(loop="weights").inc()
        try:
            if schedule is None:
                schedule = WeightSchedule(interval_blocks or await chain.tempo())
                schedule.resume(await setter.store.weight_submissions(limit=20))
                log.info("weights_schedule", interval_blocks=schedule.interval_blocks)
            block = await chain.current_block()
            if schedule.due(block):
                attempt = await setter.submit(stop)
                schedule.after(block, attempt)
                record_lease_revenue(metrics, attempt.submission.inputs)
        except ByteLeapError as exc:
            metrics.loop_errors.labels(loop="weights", code=exc.code).inc()
            log.warning("loop_failed", loop="weights", code=exc.code, error=exc.message)
        except Exception:
            metrics.loop_errors.labels(loop="weights", code="internal").inc()
            log.exception("loop_crashed", loop="weights")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=check_interval_s)


__all__ = [
    "RETRY_DELAYS_S",
    "Attempt",
    "WeightSchedule",
    "WeightSetter",
    "WeightVector",
    "by_uid",
    "explanation",
    "record_lease_revenue",
    "record_submission",
    "scoring_pass",
    "weigh",
    "weights_loop",
]
