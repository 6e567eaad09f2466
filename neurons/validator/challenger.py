"""Challenge epochs, end to end: store, dispatch, time, check, reveal, verify, close.

The order is the protocol's (SPEC 4.4, 4.5, docs/protocol.md):

1. Every challenge of the epoch is stored (``open_challenges``, one transaction) *before* any
   request leaves, so a crash or a restart can never lose one (it is closed as excused at the
   next start).
2. Each miner gets one ``POST /epoch`` carrying all of its workers' challenges, all miners at
   once, so the whole epoch is dispatched within ``epoch_spread_s``. The miner streams each
   worker's commit back the moment it arrives. Every deadline runs on the validator's own
   monotonic clock from the epoch's *first* dispatch, so a card behind claims on two miners
   gains nothing from the later miner's dispatch; a commit (or any answer) after it is a
   timeout. Throughput per GPU is ``R·2·m·n·k / elapsed``, with ``elapsed`` from its own
   miner's dispatch; above the claimed model's impossible-throughput limit it is fraud.
3. Each GPU's commit is checked (present, signed by the worker, the right number of roots) and
   stored (``record_commit``).
4. Only then is the sample drawn, from fresh randomness, and the rows requested. A missing or
   invalid reveal after a valid commit is a timeout, whatever the miner says the reason was.
5. Each GPU is verified on its own in the process pool: all of them while the pool keeps up,
   otherwise each with the probability :class:`~neurons.validator.verify_budget.VerifyBudget`
   allows (every reveal is still requested). Each worker's rows are closed together.

Every failure becomes a verdict through :func:`judge` (``outcome_of`` plus the reveal rule);
anything that is not a ``ByteLeapError`` is our own bug and is excused. Nothing a miner sends can
raise out of :meth:`Challenger.run_epoch`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from byteleap.challenge.params import Binding
from byteleap.challenge.sizing import credited_throughput, impossible_limit
from byteleap.challenge.timing import check_plausible
from byteleap.challenge.verify import Commitment, StageSample, check_shape, draw_sample
from byteleap.config.validator import ChallengeSection
from byteleap.errors import (
    ByteLeapError,
    FraudError,
    FraudReason,
    LinkError,
    Outcome,
    PeerTimeout,
    PeerUnavailable,
    StorageError,
    TransientError,
    UnexplainedBusy,
    VerificationFailed,
    outcome_of,
)
from byteleap.protocol.validator_api import (
    ChallengeRequest,
    ChallengeResponse,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.worker_link import OpeningRequest
from byteleap.sessions.round_planner import EpochPlan, PlannedChallenge, deadline_ms
from neurons.common.miner_client import EpochArrival
from neurons.validator.excuses import ExcuseWatch
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import ChallengeOpen, ChallengeVerdict, ValidatorStore
from neurons.validator.verification import Verifier, VerifyJob, VerifyReport
from neurons.validator.verify_budget import VerifyBudget

log = structlog.get_logger("byteleap.validator.challenge")

#: seconds between attempts at closing a row while the database fails: doubling from the
#: first to the last, then the last for as long as the database stays away
CLOSE_RETRY_FIRST_S = 0.5
CLOSE_RETRY_MAX_S = 10.0
#: seconds beyond ``reveal_timeout_s`` before the validator stops waiting on its own
REVEAL_SLACK_S = 2.0
#: seconds beyond the epoch's latest deadline the validator reads a miner's commit stream
STREAM_SLACK_S = 2.0
#: a miner's client is closed after this many epochs without it (miners come and go)
CLIENT_IDLE_EPOCHS = 10


class MinerApi(Protocol):
    """What the challenger needs of :class:`neurons.common.miner_client.MinerClient`."""

    def prepare_epoch(self, request: EpochRequest, *, wait_s: float) -> Any: ...

    def epoch(
        self,
        request: EpochRequest,
        *,
        wait_s: float,
        clock: Callable[[], float],
        prepared: Any = None,
    ) -> AsyncIterator[EpochArrival]: ...

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
    """What one worker's challenge ended with (also what devnet and the logs show)."""

    challenge_id: str
    planned: PlannedChallenge
    verdicts: tuple[ChallengeVerdict, ...]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One planned challenge with its id and seed, stored and ready to dispatch."""

    planned: PlannedChallenge
    challenge_id: str
    seed: bytes

    def request(self) -> ChallengeRequest:
        planned = self.planned
        return ChallengeRequest(
            challenge_id=self.challenge_id,
            worker_pubkey=planned.worker_pubkey,
            gpu_uuids=list(planned.gpu_uuids),
            seed=self.seed,
            params=planned.params,
            deadline_ms=deadline_ms(planned.sizing),
        )


@dataclass(frozen=True, slots=True)
class _Send:
    """One miner's share of an epoch, its request built and signed, ready to go."""

    items: tuple[_Prepared, ...]
    client: MinerApi
    request: EpochRequest
    prepared: Any
    wait_s: float


@dataclass(frozen=True, slots=True)
class _Sampling:
    """How an epoch's reveals are checked: each exactly with probability ``fraction``; the
    rest for their Merkle paths when ``merkle`` (see :class:`VerifyBudget`)."""

    fraction: float
    merkle: bool


@dataclass(frozen=True, slots=True)
class _Timing:
    """When an answer arrived: since its miner's dispatch, and since the epoch's first."""

    elapsed: float
    since_epoch: float


@dataclass(frozen=True, slots=True)
class EpochReport:
    """What one epoch did: its results and how tightly it was dispatched."""

    epoch_id: str
    results: tuple[ChallengeResult, ...]
    #: seconds from the first to the last miner's dispatch
    spread_s: float
    #: probability with which each reveal was verified exactly
    verify_fraction: float


class Challenger:
    """Runs challenge epochs; one instance serves the whole daemon."""

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
        known_lease: Callable[[tuple[str, str]], bool] = lambda _key: False,
    ) -> None:
        self.store = store
        #: whether a lease this validator knows of (its own, or from receipts) holds a worker:
        #: only then is a worker's "busy" or "leased" an excuse (SPEC 5.5)
        self.known_lease = known_lease
        self.connect = connect
        self.verifier = verifier
        self.section = section
        self.metrics = metrics or ValidatorMetrics()
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.sampling_rng = sampling_rng
        self.token = token
        self.excuses = excuses or ExcuseWatch(section.excused_warning_rate)
        self.budget = VerifyBudget(
            processes=section.verifier_processes,
            epoch_s=section.interval_s,
            utilization=section.verify_utilization,
        )
        self._gate = asyncio.Semaphore(section.max_concurrency)
        #: miner hotkey -> (endpoint, client, the epoch count when last used); kept across
        #: epochs, so an epoch reuses open connections instead of building a client per miner
        self._clients: dict[str, tuple[str, MinerApi, int]] = {}
        self._retired: list[MinerApi] = []
        self._epochs_run = 0

    def _client(self, miner_hotkey: str, endpoint: str) -> MinerApi:
        known = self._clients.get(miner_hotkey)
        if known is not None and known[0] == endpoint:
            client = known[1]
        else:
            if known is not None:  # the miner moved: the old client goes at the next sweep
                self._retired.append(known[1])
            client = self.connect(miner_hotkey, endpoint, self.section.reveal_timeout_s)
        self._clients[miner_hotkey] = (endpoint, client, self._epochs_run)
        return client

    async def _sweep_clients(self) -> None:
        """Close the clients of miners no epoch has used for a while."""
        stale = [
            hotkey
            for hotkey, (_, _, used) in self._clients.items()
            if self._epochs_run - used > CLIENT_IDLE_EPOCHS
        ]
        retired = [self._clients.pop(hotkey)[1] for hotkey in stale] + self._retired
        self._retired = []
        for client in retired:
            await _close_quietly(client)

    async def aclose(self) -> None:
        """Close every miner client (at shutdown)."""
        clients = [client for _, client, _ in self._clients.values()] + self._retired
        self._clients.clear()
        self._retired = []
        for client in clients:
            await _close_quietly(client)

    # ------------------------------------------------------------------ the whole epoch

    async def run(self, planned: PlannedChallenge) -> ChallengeResult | None:
        """An epoch of one challenge (tests); None when it could not be stored."""
        report = await self.run_epoch(EpochPlan((planned,)))
        return report.results[0] if report.results else None

    async def run_epoch(self, plan: EpochPlan) -> EpochReport:
        """Store, dispatch and follow every challenge of ``plan`` to its verdicts."""
        epoch_id = self.token(16).hex()
        now = self.wall_clock()
        prepared = [_Prepared(p, self.token(16).hex(), self.token(32)) for p in plan.challenges]
        if not prepared:
            return EpochReport(epoch_id, (), 0.0, 1.0)
        try:
            await self.store.open_challenges([self._opened(item, now) for item in prepared])
        except StorageError as exc:
            log.warning("epoch_not_stored", epoch=epoch_id, error=exc.message)
            return EpochReport(epoch_id, (), 0.0, 1.0)
        fraction, merkle = self.budget.plan(plan.gpus)
        sampling = _Sampling(fraction, merkle)
        by_miner: dict[str, list[_Prepared]] = {}
        for item in prepared:
            by_miner.setdefault(item.planned.miner_hotkey, []).append(item)
        self._epochs_run += 1
        await self._sweep_clients()
        # build, encode and sign every miner's request before the clock starts
        sends = [self._prepare(epoch_id, items) for items in by_miner.values()]
        dispatched: list[float] = []
        self.metrics.challenges_in_flight.inc(len(prepared))
        # every deadline of the epoch runs from here, the moment before the first dispatch
        epoch_t0 = self.monotonic()
        try:
            per_miner = await asyncio.gather(
                *(self._miner_epoch(send, sampling, epoch_t0, dispatched) for send in sends)
            )
        finally:
            self.metrics.challenges_in_flight.dec(len(prepared))
        spread = max(dispatched) - min(dispatched) if dispatched else 0.0
        results = tuple(r for chunk in per_miner for r in chunk)
        self.metrics.epochs.inc()
        self.metrics.epoch_gpus.set(plan.gpus)
        self.metrics.epoch_spread_seconds.set(spread)
        self.metrics.epoch_verify_fraction.set(fraction)
        if spread > self.section.epoch_spread_s:
            log.warning(
                "epoch_spread_exceeded",
                epoch=epoch_id,
                spread_s=round(spread, 3),
                target_s=self.section.epoch_spread_s,
                miners=len(by_miner),
            )
        log.info(
            "epoch_closed",
            epoch=epoch_id,
            miners=len(by_miner),
            workers=len(prepared),
            gpus=plan.gpus,
            spread_s=round(spread, 4),
            verify_fraction=round(fraction, 4),
        )
        return EpochReport(epoch_id, results, spread, fraction)

    def _opened(self, item: _Prepared, now: datetime) -> ChallengeOpen:
        planned = item.planned
        return ChallengeOpen(
            challenge_id=item.challenge_id,
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=planned.worker_pubkey,
            gpu_uuids=planned.gpu_uuids,
            gpu_models=dict(planned.gpu_models),
            params=planned.params,
            seed=item.seed,
            dispatched_at=now,
            deadline_at=now + timedelta(seconds=planned.sizing.deadline_s),
        )

    def _prepare(self, epoch_id: str, items: Sequence[_Prepared]) -> _Send:
        first = items[0].planned
        client = self._client(first.miner_hotkey, first.endpoint)
        request = EpochRequest(epoch_id=epoch_id, challenges=[item.request() for item in items])
        wait = max(item.planned.sizing.deadline_s for item in items) + STREAM_SLACK_S
        return _Send(
            tuple(items), client, request, client.prepare_epoch(request, wait_s=wait), wait
        )

    async def _miner_epoch(
        self, send: _Send, sampling: _Sampling, epoch_t0: float, dispatched: list[float]
    ) -> list[ChallengeResult]:
        """One miner's share of the epoch: one request, then each commit as it arrives.

        Two clocks per answer: throughput runs from this miner's own dispatch (``started``), so
        a miner dispatched late in the spread is not credited less; the deadline runs from the
        epoch's first dispatch (``epoch_t0``), so that one card behind claims on two miners
        gains nothing from the second miner being dispatched later."""
        items, client, request = send.items, send.client, send.request
        first = items[0].planned
        by_id = {item.challenge_id: item for item in items}
        followups: dict[str, asyncio.Task[ChallengeResult]] = {}
        started = self.monotonic()
        dispatched.append(started)
        try:
            async for arrival in client.epoch(
                request, wait_s=send.wait_s, clock=self.monotonic, prepared=send.prepared
            ):
                item = by_id.get(arrival.challenge_id)
                if item is None or arrival.challenge_id in followups:
                    continue  # the client answers each challenge once; defensive
                timing = _Timing(arrival.at - started, arrival.at - epoch_t0)
                followups[arrival.challenge_id] = asyncio.create_task(
                    self._follow(client, item, arrival.result, timing, sampling)
                )
        except Exception:  # our bug: excuse what has no verdict yet
            log.exception("epoch_stream_crashed", miner=first.miner_hotkey)
        for item in items:
            if item.challenge_id not in followups:
                missing = LinkError("the miner's stream ended without this challenge")
                followups[item.challenge_id] = asyncio.create_task(
                    self._follow(client, item, missing, None, sampling)
                )
        return list(await asyncio.gather(*(followups[i.challenge_id] for i in items)))

    async def _follow(
        self,
        client: MinerApi,
        item: _Prepared,
        answer: ChallengeResponse | BaseException,
        timing: _Timing | None,
        sampling: _Sampling,
    ) -> ChallengeResult:
        """From one worker's answer to its closed verdicts."""
        planned = item.planned
        elapsed = None if timing is None else timing.elapsed
        try:
            verdicts = await self._exchange(client, item, answer, timing, sampling)
        except Exception as exc:  # our bug: never blamed on the miner
            log.exception("challenge_crashed", challenge=item.challenge_id)
            verdicts = self._all(item.challenge_id, planned, exc)
        for uuid in planned.gpu_uuids:  # any GPU the exchange forgot is ours to excuse
            if uuid not in verdicts:
                verdicts[uuid] = self._verdict(
                    item.challenge_id, uuid, TransientError("no verdict was reached")
                )
        closed = tuple(verdicts[uuid] for uuid in planned.gpu_uuids)
        await self._close(closed)
        for verdict in closed:
            self._count(planned.miner_hotkey, verdict)
        log.info(
            "challenge_closed",
            challenge=item.challenge_id,
            miner=planned.miner_hotkey,
            worker=planned.worker_pubkey[:16],
            model=planned.model_id,
            params=f"{planned.params.m}x{planned.params.n}x{planned.params.k}"
            f"x{planned.params.stages}",
            deadline_s=round(planned.sizing.deadline_s, 3),
            elapsed_s=None if elapsed is None else round(elapsed, 3),
            verdicts={v.gpu_uuid: _summary(v) for v in closed},
        )
        return ChallengeResult(item.challenge_id, planned, closed)

    # ------------------------------------------------------------------ steps

    async def _exchange(
        self,
        client: MinerApi,
        item: _Prepared,
        answer: ChallengeResponse | BaseException,
        timing: _Timing | None,
        sampling: _Sampling,
    ) -> dict[str, ChallengeVerdict]:
        planned, challenge_id, seed = item.planned, item.challenge_id, item.seed
        deadline = planned.sizing.deadline_s
        if timing is not None and timing.since_epoch > deadline:
            # any answer after the deadline, a commit or an excuse, is a timeout
            late = PeerTimeout(
                f"the answer arrived {timing.since_epoch:.2f} s after the epoch's first "
                f"dispatch, past the {deadline:.2f} s deadline"
            )
            return self._all(challenge_id, planned, late, elapsed_s=timing.elapsed)
        if isinstance(answer, PeerUnavailable) and not self.known_lease(planned.key):
            answer = UnexplainedBusy(
                f"{answer.message}, and no lease this validator knows of explains it"
            )
        if isinstance(answer, BaseException):
            return self._all(challenge_id, planned, answer)
        assert timing is not None
        elapsed = timing.elapsed
        committed_at = self.wall_clock()
        verdicts, roots, rates = self._check_commits(planned, challenge_id, seed, answer, elapsed)
        if not roots:
            return verdicts
        try:
            await self.store.record_commit(challenge_id, committed_at, roots)
        except StorageError as exc:  # the verdicts can still be closed; log and go on
            log.warning("commit_not_stored", challenge=challenge_id, error=exc.message)
        rng = self.sampling_rng()
        samples = {uuid: draw_sample(planned.params, self.section.sampling, rng) for uuid in roots}
        # which reveals are opened exactly: decided now, after the commit, and never told
        fraction = sampling.fraction
        opened = {uuid for uuid in roots if fraction >= 1.0 or rng.random() < fraction}
        async with self._gate:
            revealed = await self._reveal(client, planned, challenge_id, samples)
            if isinstance(revealed, BaseException):
                for uuid in roots:
                    verdicts[uuid] = self._verdict(
                        challenge_id, uuid, revealed, elapsed_s=elapsed, reveal=True
                    )
                return verdicts
            verdicts.update(
                await self._verify(
                    planned,
                    challenge_id,
                    seed,
                    roots,
                    rates,
                    samples,
                    revealed,
                    elapsed,
                    opened,
                    merkle=sampling.merkle,
                )
            )
        return verdicts

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
                identity = planned.identities[uuid]
                rate = check_plausible(
                    planned.params,
                    elapsed,
                    impossible_limit(identity, self.section.impossible_throughput_factor),
                    f"{planned.gpu_models.get(uuid, '')} ({identity.model_id})",
                )
                rate = credited_throughput(identity, rate)
            except VerificationFailed as exc:
                verdicts[uuid] = self._verdict(challenge_id, uuid, exc, elapsed_s=elapsed)
                continue
            roots[uuid] = gpu_roots
            rates[uuid] = rate
        return verdicts, roots, rates

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
        opened: set[str],
        *,
        merkle: bool = True,
    ) -> dict[str, ChallengeVerdict]:
        """Verify the reveals: exactly for the GPUs in ``opened``; for the others, everything
        but the entries (the Merkle paths, shapes and openings) when ``merkle``, else nothing
        (the pool has no time for it: the reveal was received). Their detail says which."""
        verdicts: dict[str, ChallengeVerdict] = {}
        stray = sorted({o.gpu_uuid for o in revealed.openings} - set(roots))
        if stray:
            exc = VerificationFailed(
                FraudReason.UNREQUESTED_OPENING, f"rows revealed for GPUs not asked: {stray[:4]}"
            )
            return {
                uuid: self._verdict(challenge_id, uuid, exc, elapsed_s=elapsed) for uuid in roots
            }
        uuids = [uuid for uuid in roots if merkle or uuid in opened]
        for uuid in roots:
            if uuid not in uuids:
                verdicts[uuid] = self._verdict(
                    challenge_id,
                    uuid,
                    None,
                    elapsed_s=elapsed,
                    throughput=rates[uuid],
                    checked=0,
                    detail="reveal received; not checked in this epoch (sampled verification)",
                )
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
                entries=uuid in opened,
            )
            for uuid in uuids
        ]
        reports = await self.verifier.verify_all(jobs)
        for uuid, report in zip(uuids, reports, strict=True):
            if isinstance(report, VerifyReport):
                self.metrics.verification_seconds.observe(report.seconds)
                self.budget.observe(report.seconds, exact=uuid in opened)
                error = report.error()
                verdicts[uuid] = self._verdict(
                    challenge_id,
                    uuid,
                    error,
                    elapsed_s=elapsed,
                    throughput=rates[uuid] if error is None else None,
                    verify_s=report.seconds,
                    checked=report.checked_entries,
                    detail=None
                    if uuid in opened
                    else "Merkle paths checked; entries not opened in this epoch (sampled "
                    "verification)",
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
        detail: str | None = None,
    ) -> ChallengeVerdict:
        outcome, failure = judge(exc, reveal=reveal)
        return ChallengeVerdict(
            challenge_id=challenge_id,
            gpu_uuid=uuid,
            closed_at=self.wall_clock(),
            outcome=outcome,
            failure=failure,
            detail=detail if exc is None else detail_of(exc, reveal=reveal),
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

    async def _close(self, verdicts: Sequence[ChallengeVerdict]) -> None:
        """Store one worker's verdicts together, retrying for as long as the database fails.

        Giving up would leave the rows open until the next start, and an open row keeps its
        worker out of every epoch (the planner never challenges a worker with a challenge in
        flight), so a database outage would silently stop a running validator's challenges.
        A failed attempt may still have committed (the connection dropped after the commit),
        so after each failure the rows are read back and only those still open are retried,
        which also keeps a verdict from ever being stored twice. Cancellation (shutdown) stops
        the retries; the rows are then closed as excused by ``close_in_flight``.
        """
        pending = list(verdicts)
        delay = CLOSE_RETRY_FIRST_S
        attempt = 0
        while pending:
            attempt += 1
            try:
                await self.store.close_challenges(pending)
                if attempt > 1:
                    log.info(
                        "challenge_close_stored",
                        challenge=pending[0].challenge_id,
                        gpus=len(pending),
                        attempts=attempt,
                    )
                return
            except StorageError as exc:
                error = exc.message
            try:
                rows = await self.store.challenge(pending[0].challenge_id)
            except StorageError:
                rows = None
            if rows is not None:
                still_open = {r.gpu_uuid for r in rows if r.status != "closed"}
                # closed already (an attempt that committed), or never stored: nothing left
                # to do for those, and closing them again would count them twice
                pending = [v for v in pending if v.gpu_uuid in still_open]
                if not pending:
                    return
            log.warning(
                "challenge_close_retry",
                challenge=pending[0].challenge_id,
                gpus=len(pending),
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


async def _close_quietly(client: MinerApi) -> None:
    try:
        await client.aclose()
    except Exception:  # closing a broken connection must not stop the others closing
        log.debug("miner_client_close_failed", exc_info=True)


def _summary(verdict: ChallengeVerdict) -> dict[str, Any]:
    out: dict[str, Any] = {"outcome": verdict.outcome.value}
    if verdict.failure:
        out["failure"] = verdict.failure
    if verdict.throughput_flops:
        out["tflops"] = round(verdict.throughput_flops / 1e12, 4)
    return out


__all__ = [
    "ChallengeResult",
    "Challenger",
    "ClientFactory",
    "EpochReport",
    "MinerApi",
    "detail_of",
    "judge",
]
