"""Challenge epochs, end to end: the thin asyncio driver of
:class:`byteleap.sessions.epoch_round.EpochRound`.

Every decision of an epoch (what is stored, sent, judged, revealed, verified and closed, and
when) is the round's (docs/challenge.md tells the order). This driver carries out its
instructions (``open_challenges`` before any request leaves; one ``POST /epoch`` per miner, all
at once, every request signed before the clock starts; ``record_commit``; the reveal and its
verification in the process pool, ``max_concurrency`` challenges at a time; ``close_challenges``
retried while the database fails, then the metrics and the excuse watch) and feeds the results
back as events stamped with the clocks. Anything that raises while a challenge is handled is our
own bug: it is closed as excused. Nothing a miner sends can raise out of
:meth:`Challenger.run_epoch`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from byteleap.config.challenge import ChallengeSection
from byteleap.errors import ByteLeapError, PeerTimeout, StorageError
from byteleap.protocol.miner_api.challenges import EpochRequest, OpeningsRequest, OpeningsResponse
from byteleap.sessions.epoch_round import EpochRound
from byteleap.sessions.round_events import (
    AnswerArrived,
    ChallengeClosed,
    ChallengeCrashed,
    ClockStarted,
    CloseChallenge,
    DispatchEpoch,
    EpochNotStored,
    EpochStored,
    MinerDispatched,
    RecordCommit,
    RequestReveal,
    RevealArrived,
    RoundEvent,
    RoundInstruction,
    StreamEnded,
    Verified,
    Verify,
)
from byteleap.sessions.round_planner import EpochPlan, PlannedChallenge
from byteleap.sessions.round_records import ChallengeVerdict, VerifyReport
from neurons.common.miner_client import EpochArrival
from neurons.validator.excuses import ExcuseWatch
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import ValidatorStore
from neurons.validator.verification import VerifierPool
from neurons.validator.verify_budget import VerifyBudget

log = structlog.get_logger("byteleap.validator.challenge")

#: seconds between attempts at closing a row while the database fails: doubling from the
#: first to the last, then the last for as long as the database stays away
CLOSE_RETRY_FIRST_S = 0.5
CLOSE_RETRY_MAX_S = 10.0
#: a miner's client is closed after this many epochs without it (miners come and go)
CLIENT_IDLE_EPOCHS = 10


class ChallengeApi(Protocol):
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
ClientFactory = Callable[[str, str, float], ChallengeApi]


@dataclass(frozen=True, slots=True)
class ChallengeResult:
    """What one worker's challenge ended with (also what devnet and the logs show)."""

    challenge_id: str
    planned: PlannedChallenge
    verdicts: tuple[ChallengeVerdict, ...]


@dataclass(frozen=True, slots=True)
class _Send:
    """One miner's share of an epoch, its request built and signed, ready to go."""

    dispatch: DispatchEpoch
    client: ChallengeApi
    prepared: Any


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
        verifier: VerifierPool,
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
        self._clients: dict[str, tuple[str, ChallengeApi, int]] = {}
        self._retired: list[ChallengeApi] = []
        self._epochs_run = 0

    def _client(self, miner_hotkey: str, endpoint: str) -> ChallengeApi:
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
        ids = [(self.token(16).hex(), self.token(32)) for _ in plan.challenges]
        epoch = EpochRound(
            plan,
            epoch_id=epoch_id,
            ids=ids,
            now=now,
            section=self.section,
            known_lease=self.known_lease,
            sampling_rng=self.sampling_rng,
        )
        empty = EpochReport(epoch_id, (), 0.0, 1.0)
        for instruction in epoch.start():  # one StoreEpoch, or nothing to do
            try:
                await self.store.open_challenges(list(getattr(instruction, "opens", ())))
            except StorageError as exc:
                log.warning("epoch_not_stored", epoch=epoch_id, error=exc.message)
                epoch.handle_stimulus(EpochNotStored(exc.message))
                return empty
        if not epoch.challenges:
            return empty
        fraction, merkle = self.budget.plan(plan.gpus)
        dispatches = epoch.handle_stimulus(EpochStored(fraction, merkle))
        self._epochs_run += 1
        await self._sweep_clients()
        # build, encode and sign every miner's request before the clock starts
        sends = [self._prepare(d) for d in dispatches if isinstance(d, DispatchEpoch)]
        count = len(epoch.challenges)
        self.metrics.challenges_in_flight.inc(count)
        # every deadline of the epoch runs from here, the moment before the first dispatch
        epoch.handle_stimulus(ClockStarted(self.monotonic()))
        try:
            await asyncio.gather(*(self._miner_epoch(epoch, send) for send in sends))
        finally:
            self.metrics.challenges_in_flight.dec(count)
        spread = epoch.spread_s
        results = tuple(
            ChallengeResult(s.challenge_id, s.planned, s.closed_verdicts()) for s in epoch.results()
        )
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
                miners=len(epoch.by_miner),
            )
        log.info(
            "epoch_closed",
            epoch=epoch_id,
            miners=len(epoch.by_miner),
            workers=count,
            gpus=plan.gpus,
            spread_s=round(spread, 4),
            verify_fraction=round(fraction, 4),
        )
        return EpochReport(epoch_id, results, spread, fraction)

    def _prepare(self, dispatch: DispatchEpoch) -> _Send:
        client = self._client(dispatch.miner_hotkey, dispatch.endpoint)
        prepared = client.prepare_epoch(dispatch.request, wait_s=dispatch.wait_s)
        return _Send(dispatch, client, prepared)

    async def _miner_epoch(self, epoch: EpochRound, send: _Send) -> None:
        """One miner's share of the epoch: one request, then each commit as it arrives; each
        challenge then goes on in a task of its own."""
        dispatch, client = send.dispatch, send.client
        tasks: list[asyncio.Task[None]] = []
        epoch.handle_stimulus(MinerDispatched(dispatch.miner_hotkey, self.monotonic()))
        try:
            async for arrival in client.epoch(
                dispatch.request,
                wait_s=dispatch.wait_s,
                clock=self.monotonic,
                prepared=send.prepared,
            ):
                answer = AnswerArrived(
                    arrival.challenge_id, arrival.result, arrival.at, self.wall_clock()
                )
                follow = self._feed(epoch, answer, arrival.challenge_id)
                if follow:
                    tasks.append(asyncio.create_task(self._carry_out(epoch, client, follow)))
        except Exception:  # our bug: excuse what has no verdict yet
            log.exception("epoch_stream_crashed", miner=dispatch.miner_hotkey)
        ended = epoch.handle_stimulus(StreamEnded(dispatch.miner_hotkey, self.wall_clock()))
        for close in ended:
            tasks.append(asyncio.create_task(self._carry_out(epoch, client, [close])))
        await asyncio.gather(*tasks)

    def _feed(
        self, epoch: EpochRound, event: RoundEvent, challenge_id: str
    ) -> list[RoundInstruction]:
        """``epoch.handle_stimulus(event)``; a crash in it closes the challenge as excused."""
        try:
            return epoch.handle_stimulus(event)
        except Exception as exc:  # our bug: never blamed on the miner
            log.exception("challenge_crashed", challenge=challenge_id)
            return epoch.handle_stimulus(ChallengeCrashed(challenge_id, exc, self.wall_clock()))

    async def _carry_out(
        self, epoch: EpochRound, client: ChallengeApi, instructions: Sequence[RoundInstruction]
    ) -> None:
        """Carry out one challenge's instructions, and those that come of them, in order."""
        queue = deque(instructions)
        while queue:
            instruction = queue.popleft()
            challenge_id = getattr(instruction, "challenge_id", "")
            try:
                queue.extend(await self._execute(epoch, client, instruction))
            except Exception as exc:  # our bug: never blamed on the miner
                log.exception("challenge_crashed", challenge=challenge_id)
                crashed = ChallengeCrashed(challenge_id, exc, self.wall_clock())
                queue = deque(epoch.handle_stimulus(crashed))

    async def _execute(
        self, epoch: EpochRound, client: ChallengeApi, instruction: RoundInstruction
    ) -> list[RoundInstruction]:
        if isinstance(instruction, RecordCommit):
            try:
                await self.store.record_commit(
                    instruction.challenge_id, instruction.committed_at, instruction.roots
                )
            except StorageError as exc:  # the verdicts can still be closed; log and go on
                log.warning(
                    "commit_not_stored", challenge=instruction.challenge_id, error=exc.message
                )
            return []
        if isinstance(instruction, RequestReveal):
            challenge_id = instruction.challenge_id
            async with self._gate:
                revealed = await self._reveal(client, instruction.request, instruction.wait_s)
                event = RevealArrived(challenge_id, revealed, self.wall_clock())
                out: list[RoundInstruction] = []
                for follow in self._feed(epoch, event, challenge_id):
                    if isinstance(follow, Verify):
                        out.extend(await self._verify(epoch, follow))
                    else:
                        out.append(follow)
                return out
        if isinstance(instruction, Verify):
            return await self._verify(epoch, instruction)
        if isinstance(instruction, CloseChallenge):
            await self._close(instruction.verdicts)
            self._closed(instruction)
            return self._feed(epoch, ChallengeClosed(instruction.challenge_id), "")
        raise TypeError(f"not an instruction of a challenge: {instruction!r}")

    async def _reveal(
        self, client: ChallengeApi, request: OpeningsRequest, wait_s: float
    ) -> OpeningsResponse | BaseException:
        """The reveal, or the error to score: after a valid commit, any failure is a timeout."""
        try:
            return await asyncio.wait_for(client.reveal(request), timeout=wait_s)
        except TimeoutError:
            return PeerTimeout(f"no reveal within {wait_s:g} s of a valid commit")
        except ByteLeapError as exc:
            return exc

    async def _verify(self, epoch: EpochRound, instruction: Verify) -> list[RoundInstruction]:
        """Run the verifier's jobs in the process pool; their reports go back to the round."""
        reports = await self.verifier.verify_all(list(instruction.jobs))
        by_gpu: dict[str, VerifyReport | BaseException] = {}
        for uuid, report in zip(instruction.gpu_uuids, reports, strict=True):
            if isinstance(report, VerifyReport):
                self.metrics.verification_seconds.observe(report.seconds)
                self.budget.observe(report.seconds, exact=uuid in instruction.exact)
            else:
                self.metrics.verifier_crashes.inc()
            by_gpu[uuid] = report
        event = Verified(instruction.challenge_id, by_gpu, self.wall_clock())
        return self._feed(epoch, event, instruction.challenge_id)

    def _closed(self, close: CloseChallenge) -> None:
        """Count and log one worker's stored verdicts."""
        planned = close.planned
        for verdict in close.verdicts:
            self._count(planned.miner_hotkey, verdict)
        params = planned.params
        log.info(
            "challenge_closed",
            challenge=close.challenge_id,
            miner=planned.miner_hotkey,
            worker=planned.worker_pubkey[:16],
            model=planned.model_id,
            params=f"{params.m}x{params.n}x{params.k}x{params.stages}",
            deadline_s=round(planned.sizing.deadline_s, 3),
            elapsed_s=None if close.elapsed_s is None else round(close.elapsed_s, 3),
            verdicts={v.gpu_uuid: _summary(v) for v in close.verdicts},
        )

    # ------------------------------------------------------------------ verdicts

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


async def _close_quietly(client: ChallengeApi) -> None:
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
    "ChallengeApi",
    "ChallengeResult",
    "Challenger",
    "ClientFactory",
    "EpochReport",
]
