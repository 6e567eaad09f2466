"""One compute challenge, end to end: store, dispatch, time, check, reveal, verify, close.

The order is the protocol's (SPEC 4.4, docs/protocol.md):

1. The challenge is stored (``open_challenge``) *before* the request leaves, so a crash or a
   restart can never lose it (it is closed as excused at the next start).
2. The validator's own monotonic clock runs from dispatch until the commit arrives; a commit
   after the deadline is a timeout. Throughput per GPU is ``R·2·m·n·k / elapsed``; above the
   claimed model's impossible-throughput limit it is fraud.
3. Each GPU's commit is checked (present, signed by the worker, the right number of roots) and
   stored (``record_commit``).
4. Only then is the sample drawn, from fresh randomness, and the rows requested. A missing or
   invalid reveal after a valid commit is a timeout, whatever the miner says the reason was.
5. Each GPU is verified on its own in the process pool, and each GPU's row is closed with its
   outcome and typed failure.

Every failure becomes a verdict through :func:`judge` (``outcome_of`` plus the reveal rule);
anything that is not a ``ByteLeapError`` is our own bug and is excused. Nothing a miner sends can
raise out of :meth:`Challenger.run`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from byteleap.challenge.params import Binding
from byteleap.challenge.timing import check_plausible
from byteleap.challenge.verify import Commitment, StageSample, check_shape, draw_sample
from byteleap.config.validator import ChallengeSection
from byteleap.errors import (
    ByteLeapError,
    FraudError,
    FraudReason,
    Outcome,
    PeerTimeout,
    StorageError,
    TransientError,
    VerificationFailed,
    outcome_of,
)
from byteleap.protocol.validator_api import (
    ChallengeRequest,
    ChallengeResponse,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.worker_link import OpeningRequest
from neurons.validator.excuses import ExcuseWatch
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.planner import PlannedChallenge, deadline_ms
from neurons.validator.store.records import ChallengeOpen, ChallengeVerdict, ValidatorStore
from neurons.validator.verification import Verifier, VerifyJob, VerifyReport

log = structlog.get_logger("byteleap.validator.challenge")

#: seconds between attempts at closing a row while the database fails: doubling from the
#: first to the last, then the last for as long as the database stays away
CLOSE_RETRY_FIRST_S = 0.5
CLOSE_RETRY_MAX_S = 10.0
#: seconds beyond ``reveal_timeout_s`` before the validator stops waiting on its own
REVEAL_SLACK_S = 2.0


class MinerApi(Protocol):
    """What the challenger needs of :class:`neurons.common.miner_client.MinerClient`."""

    async def challenge(self, request: ChallengeRequest) -> ChallengeResponse: ...

    async def reveal(self, request: OpeningsRequest) -> OpeningsResponse: ...

    async def aclose(self) -> None: ...


#: ``connect(miner_hotkey, base_url, timeout)`` -> a client of that miner
ClientFactory = Callable[[str, str, float], MinerApi]


def judge(exc: BaseException | None, *, reveal: bool = False) -> tuple[Outcome, str | None]:
    """The outcome and failure type of one GPU's challenge that ended with ``exc``.

    ``None`` is verified. Otherwise :func:`byteleap.errors.outcome_of` decides, with one rule on
    top (docs/design-changes.md): an error of the *reveal exchange* after a valid commit
    (``reveal=True``) is a timeout, whatever the miner says caused it, because the commit proved
    the worker reachable. Only what is not a ``ByteLeapError`` (our own bug) stays excused.
    Failure types are the ``FraudReason`` value for fraud and the error's code otherwise.
    """
    if exc is None:
        return Outcome.VERIFIED, None
    if reveal and isinstance(exc, ByteLeapError) and not isinstance(exc, FraudError):
        return Outcome.TIMEOUT, PeerTimeout.code
    if isinstance(exc, VerificationFailed):
        return Outcome.FRAUD, exc.reason.value
    failure = exc.code if isinstance(exc, ByteLeapError) else "internal"
    return outcome_of(exc), failure


def detail_of(exc: BaseException, *, reveal: bool = False) -> str:
    if isinstance(exc, ByteLeapError):
        text = exc.message
        if reveal and not isinstance(exc, FraudError | PeerTimeout):
            text = f"no valid reveal after a valid commit ({exc.code}: {text})"
    else:
        text = f"internal error: {exc!r}"
    return text[:1000]


@dataclass(frozen=True, slots=True)
class ChallengeResult:
    """What one challenge ended with (also what devnet and the logs show)."""

    challenge_id: str
    planned: PlannedChallenge
    verdicts: tuple[ChallengeVerdict, ...]


class Challenger:
    """Runs challenges; one instance serves the whole daemon."""

    def __init__(
        self,
        *,
        store: ValidatorStore,
        connect: ClientFactory,
        verifier: Verifier,
        section: ChallengeSection,
        metrics: ValidatorMetrics | None = None,
        wall_clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        sampling_rng: Callable[[], random.Random] = random.SystemRandom,
        token: Callable[[int], bytes] = secrets.token_bytes,
        excuses: ExcuseWatch | None = None,
    ) -> None:
        self.store = store
        self.connect = connect
        self.verifier = verifier
        self.section = section
        self.metrics = metrics or ValidatorMetrics()
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.sampling_rng = sampling_rng
        self.token = token
        self.excuses = excuses or ExcuseWatch(section.excused_warning_rate)

    # ------------------------------------------------------------------ the whole challenge

    async def run(self, planned: PlannedChallenge) -> ChallengeResult | None:
        """Run one challenge; None when it could not even be stored (nothing was sent)."""
        challenge_id = self.token(16).hex()
        seed = self.token(32)
        now = self.wall_clock()
        opened = ChallengeOpen(
            challenge_id=challenge_id,
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=planned.worker_pubkey,
            gpu_uuids=planned.gpu_uuids,
            gpu_models=dict(planned.gpu_models),
            params=planned.params,
            seed=seed,
            dispatched_at=now,
            deadline_at=now + timedelta(seconds=planned.sizing.deadline_s),
        )
        bound = log.bind(
            challenge=challenge_id, miner=planned.miner_hotkey, worker=planned.worker_pubkey[:16]
        )
        try:
            await self.store.open_challenge(opened)
        except StorageError as exc:
            bound.warning("challenge_not_stored", error=exc.message)
            return None
        self.metrics.challenges_in_flight.inc()
        try:
            try:
                verdicts = await self._exchange(planned, challenge_id, seed)
            except Exception as exc:  # our bug: never blamed on the miner
                bound.exception("challenge_crashed")
                verdicts = self._all(challenge_id, planned, exc)
            # any GPU the exchange forgot is ours to excuse
            for uuid in planned.gpu_uuids:
                if uuid not in verdicts:
                    verdicts[uuid] = self._verdict(
                        challenge_id, uuid, TransientError("no verdict was reached")
                    )
            closed = tuple(verdicts[uuid] for uuid in planned.gpu_uuids)
            for verdict in closed:
                await self._close(verdict)
                self._count(planned.miner_hotkey, verdict)
        finally:
            self.metrics.challenges_in_flight.dec()
        bound.info(
            "challenge_closed",
            params=f"{planned.params.m}x{planned.params.n}x{planned.params.k}"
            f"x{planned.params.stages}",
            verdicts={v.gpu_uuid: _summary(v) for v in closed},
        )
        return ChallengeResult(challenge_id, planned, closed)

    # ------------------------------------------------------------------ steps

    async def _exchange(
        self, planned: PlannedChallenge, challenge_id: str, seed: bytes
    ) -> dict[str, ChallengeVerdict]:
        section = self.section
        request = ChallengeRequest(
            challenge_id=challenge_id,
            worker_pubkey=planned.worker_pubkey,
            gpu_uuids=list(planned.gpu_uuids),
            seed=seed,
            params=planned.params,
            deadline_ms=deadline_ms(planned.sizing),
        )
        client = self.connect(planned.miner_hotkey, planned.endpoint, section.reveal_timeout_s)
        try:
            started = self.monotonic()
            try:
                response = await client.challenge(request)
            except ByteLeapError as exc:
                return self._all(challenge_id, planned, exc)
            elapsed = self.monotonic() - started
            committed_at = self.wall_clock()
            if elapsed > planned.sizing.deadline_s:
                late = PeerTimeout(
                    f"the commit arrived after {elapsed:.2f} s, past the "
                    f"{planned.sizing.deadline_s:.2f} s deadline"
                )
                return self._all(challenge_id, planned, late, elapsed_s=elapsed)
            verdicts, roots, rates = self._check_commits(
                planned, challenge_id, seed, response, elapsed
            )
            if not roots:
                return verdicts
            try:
                await self.store.record_commit(challenge_id, committed_at, roots)
            except StorageError as exc:  # the verdicts can still be closed; log and go on
                log.warning("commit_not_stored", challenge=challenge_id, error=exc.message)
            samples = self._draw(planned, roots)
            revealed = await self._reveal(client, planned, challenge_id, samples)
            if isinstance(revealed, BaseException):
                for uuid in roots:
                    verdicts[uuid] = self._verdict(
                        challenge_id, uuid, revealed, elapsed_s=elapsed, reveal=True
                    )
                return verdicts
            verdicts.update(
                await self._verify(
                    planned, challenge_id, seed, roots, rates, samples, revealed, elapsed
                )
            )
            return verdicts
        finally:
            await client.aclose()

    def _check_commits(
        self,
        planned: PlannedChallenge,
        challenge_id: str,
        seed: bytes,
        response: ChallengeResponse,
        elapsed: float,
    ) -> tuple[dict[str, ChallengeVerdict], dict[str, tuple[bytes, ...]], dict[str, float]]:
        """Per GPU: present, signed by the worker, R roots, plausible throughput."""
        verdicts: dict[str, ChallengeVerdict] = {}
        roots: dict[str, tuple[bytes, ...]] = {}
        rates: dict[str, float] = {}
        commits = {gpu.gpu_uuid: gpu for gpu in response.gpus}
        unrequested = sorted(set(commits) - set(planned.gpu_uuids))
        pubkey = bytes.fromhex(planned.worker_pubkey)
        for uuid in planned.gpu_uuids:
            commit = commits.get(uuid)
            try:
                if unrequested:
                    raise VerificationFailed(
                        FraudReason.BAD_COMMIT_SHAPE,
                        f"commitments for GPUs that were not challenged: {unrequested[:4]}",
                    )
                if commit is None:
                    raise VerificationFailed(
                        FraudReason.BAD_COMMIT_SHAPE, "no commitment for this GPU"
                    )
                if not commit.verify(pubkey, challenge_id):
                    raise VerificationFailed(
                        FraudReason.BAD_SIGNATURE, "the worker's signature does not verify"
                    )
                gpu_roots = tuple(commit.root_list())
                check_shape(
                    Commitment(self._binding(planned, uuid), seed, planned.params, gpu_roots)
                )
                rate = check_plausible(
                    planned.params,
                    elapsed,
                    planned.gpu_models.get(uuid, ""),
                    self.section.impossible_throughput_factor,
                )
            except VerificationFailed as exc:
                verdicts[uuid] = self._verdict(challenge_id, uuid, exc, elapsed_s=elapsed)
                continue
            roots[uuid] = gpu_roots
            rates[uuid] = rate
        return verdicts, roots, rates

    def _draw(
        self, planned: PlannedChallenge, roots: Mapping[str, tuple[bytes, ...]]
    ) -> dict[str, tuple[StageSample, ...]]:
        """The sample of every committed GPU, from randomness drawn after the commit."""
        rng = self.sampling_rng()
        return {uuid: draw_sample(planned.params, self.section.sampling, rng) for uuid in roots}

    async def _reveal(
        self,
        client: MinerApi,
        planned: PlannedChallenge,
        challenge_id: str,
        samples: Mapping[str, tuple[StageSample, ...]],
    ) -> OpeningsResponse | BaseException:
        """The reveal, or the error to score: after a valid commit, any failure is a timeout."""
        request = OpeningsRequest(
            challenge_id=challenge_id,
            worker_pubkey=planned.worker_pubkey,
            openings=[
                OpeningRequest(gpu_uuid=uuid, stage=sample.stage, rows=list(sample.rows))
                for uuid, stages in samples.items()
                for sample in stages
            ],
        )
        wait = self.section.reveal_timeout_s + REVEAL_SLACK_S
        try:
            return await asyncio.wait_for(client.reveal(request), timeout=wait)
        except TimeoutError:
            return PeerTimeout(f"no reveal within {wait:g} s of a valid commit")
        except ByteLeapError as exc:
            return exc

    async def _verify(
        self,
        planned: PlannedChallenge,
        challenge_id: str,
        seed: bytes,
        roots: Mapping[str, tuple[bytes, ...]],
        rates: Mapping[str, float],
        samples: Mapping[str, tuple[StageSample, ...]],
        revealed: OpeningsResponse,
        elapsed: float,
    ) -> dict[str, ChallengeVerdict]:
        verdicts: dict[str, ChallengeVerdict] = {}
        stray = sorted({o.gpu_uuid for o in revealed.openings} - set(roots))
        if stray:
            exc = VerificationFailed(
                FraudReason.UNREQUESTED_OPENING, f"rows revealed for GPUs not asked: {stray[:4]}"
            )
            return {
                uuid: self._verdict(challenge_id, uuid, exc, elapsed_s=elapsed) for uuid in roots
            }
        uuids = list(roots)
        jobs = [
            VerifyJob(
                miner_hotkey=planned.miner_hotkey,
                worker_pubkey=bytes.fromhex(planned.worker_pubkey),
                gpu_uuid=uuid,
                seed=seed,
                params=planned.params,
                roots=roots[uuid],
                samples=samples[uuid],
                openings=tuple(
                    (o.stage, o.row, o.values, o.proof)
                    for o in revealed.openings
                    if o.gpu_uuid == uuid
                ),
            )
            for uuid in uuids
        ]
        reports = await self.verifier.verify_all(jobs)
        for uuid, report in zip(uuids, reports, strict=True):
            if isinstance(report, VerifyReport):
                self.metrics.verification_seconds.observe(report.seconds)
                error = report.error()
                verdicts[uuid] = self._verdict(
                    challenge_id,
                    uuid,
                    error,
                    elapsed_s=elapsed,
                    throughput=rates[uuid] if error is None else None,
                    verify_s=report.seconds,
                    checked=report.checked_entries,
                )
            else:
                self.metrics.verifier_crashes.inc()
                verdicts[uuid] = self._verdict(challenge_id, uuid, report, elapsed_s=elapsed)
        return verdicts

    # ------------------------------------------------------------------ verdicts

    def _binding(self, planned: PlannedChallenge, uuid: str) -> Binding:
        return Binding(
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=bytes.fromhex(planned.worker_pubkey),
            gpu_uuid=uuid,
        )

    def _verdict(
        self,
        challenge_id: str,
        uuid: str,
        exc: BaseException | None,
        *,
        elapsed_s: float | None = None,
        throughput: float | None = None,
        verify_s: float | None = None,
        checked: int | None = None,
        reveal: bool = False,
    ) -> ChallengeVerdict:
        outcome, failure = judge(exc, reveal=reveal)
        return ChallengeVerdict(
            challenge_id=challenge_id,
            gpu_uuid=uuid,
            closed_at=self.wall_clock(),
            outcome=outcome,
            failure=failure,
            detail=None if exc is None else detail_of(exc, reveal=reveal),
            throughput_flops=throughput if outcome is Outcome.VERIFIED else None,
            elapsed_s=elapsed_s,
            verify_s=verify_s,
            checked_entries=checked,
        )

    def _all(
        self,
        challenge_id: str,
        planned: PlannedChallenge,
        exc: BaseException,
        *,
        elapsed_s: float | None = None,
    ) -> dict[str, ChallengeVerdict]:
        return {
            uuid: self._verdict(challenge_id, uuid, exc, elapsed_s=elapsed_s)
            for uuid in planned.gpu_uuids
        }

    async def _close(self, verdict: ChallengeVerdict) -> None:
        """Store the verdict, retrying for as long as the database fails.

        Giving up would leave the row open until the next start, and an open row keeps its
        worker out of every round (the planner never challenges a worker with a challenge in
        flight), so a database outage would silently stop a running validator's challenges.
        A failed attempt may still have committed (the connection dropped after the commit),
        so after each failure the row is read back: closed means done, which also keeps a
        verdict from ever being stored twice. Cancellation (shutdown) stops the retries; the
        row is then closed as excused by ``close_in_flight``.
        """
        delay = CLOSE_RETRY_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.store.close_challenge(verdict)
                if attempt > 1:
                    log.info(
                        "challenge_close_stored",
                        challenge=verdict.challenge_id,
                        gpu=verdict.gpu_uuid,
                        attempts=attempt,
                    )
                return
            except StorageError as exc:
                error = exc.message
            try:
                rows = await self.store.challenge(verdict.challenge_id)
            except StorageError:
                rows = None
            if rows is not None:
                row = next((r for r in rows if r.gpu_uuid == verdict.gpu_uuid), None)
                if row is None or row.status == "closed":
                    # closed already (an attempt that committed), or never stored: nothing left
                    # to do, and closing it again would count it twice
                    return
            log.warning(
                "challenge_close_retry",
                challenge=verdict.challenge_id,
                gpu=verdict.gpu_uuid,
                attempt=attempt,
                retry_in_s=delay,
                error=error,
            )
            await asyncio.sleep(delay)
            delay = min(CLOSE_RETRY_MAX_S, delay * 2)

    def _count(self, miner_hotkey: str, verdict: ChallengeVerdict) -> None:
        self.metrics.challenges.labels(
            outcome=verdict.outcome.value, failure=verdict.failure or "none"
        ).inc()
        self.metrics.miner_challenges.labels(
            miner=miner_hotkey, outcome=verdict.outcome.value
        ).inc()
        alert = self.excuses.record(miner_hotkey, verdict.outcome)
        self.metrics.miner_excused_rate.labels(miner=miner_hotkey).set(
            self.excuses.rate(miner_hotkey)
        )
        if alert is not None:
            log.warning(
                "miner_often_excused",
                miner=miner_hotkey,
                excused=alert.excused,
                of=alert.outcomes,
                rate=round(alert.rate, 3),
                threshold=self.excuses.threshold,
            )


def _summary(verdict: ChallengeVerdict) -> dict[str, Any]:
    out: dict[str, Any] = {"outcome": verdict.outcome.value}
    if verdict.failure:
        out["failure"] = verdict.failure
    if verdict.throughput_flops:
        out["tflops"] = round(verdict.throughput_flops / 1e12, 4)
    return out


__all__ = ["ChallengeResult", "Challenger", "ClientFactory", "MinerApi", "detail_of", "judge"]
