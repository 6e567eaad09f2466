"""One challenge epoch as a state machine: events in, instructions out, no I/O.

The validator's challenger (``neurons.validator.challenger``) is the driver: it carries out the
instructions (store, send, reveal, verify, close) and feeds what came of them back as events.
Every decision of the epoch is taken here, so it is tested with plain objects: the clocks are
the ``at`` (monotonic seconds) and ``now`` (wall clock) of each event, the sampling randomness
comes from the ``sampling_rng`` passed in, and whether a known lease explains a busy worker is
the ``known_lease`` query passed in.

Each challenge (one worker's share of the epoch) goes through these stages, in this order
(SPEC 4.4, 4.5, docs/challenge.md)::

    planned -> stored -> dispatched -> committed -> verifying -> closing -> closed

and a challenge may jump to ``closing`` from ``dispatched``, ``committed`` or ``verifying`` as
soon as every GPU of it has a verdict.

1. :meth:`EpochRound.start` asks to store every challenge (:class:`StoreEpoch`) *before* any
   request leaves, so a crash or a restart can never lose one.
2. Once stored (:class:`EpochStored`, with the verify sampling for the epoch), one
   :class:`DispatchEpoch` per miner. Every deadline runs from the epoch's first dispatch
   (:class:`ClockStarted`); throughput runs from the challenge's own miner's dispatch
   (:class:`MinerDispatched`), so a card behind claims on two miners gains nothing from the later
   one and a miner dispatched late in the spread is not credited less.
3. An answer (:class:`AnswerArrived`) after the deadline is a timeout, whatever it says. A busy
   or leased answer is an excuse only when a lease the validator knows of explains it (SPEC 5.5:
   ``UnexplainedBusy`` otherwise). Each GPU's commit is checked (present, signed by the worker,
   the right number of roots, plausible throughput): the valid ones are stored
   (:class:`RecordCommit`) and only then is the sample drawn and the reveal requested
   (:class:`RequestReveal`). A stream that ends without a challenge's answer
   (:class:`StreamEnded`) is a link failure of that challenge.
4. A missing or invalid reveal after a valid commit (:class:`RevealArrived`) is a timeout. The
   reveals are verified (:class:`Verify`) exactly with the epoch's probability, the rest for
   their Merkle paths when the budget allows; :class:`Verified` brings the reports back.
5. When every GPU has a verdict, :class:`CloseChallenge` stores them together;
   :class:`ChallengeClosed` ends the challenge. A GPU nobody reached a verdict for is excused,
   and so is a challenge whose handling crashed (:class:`ChallengeCrashed`: our bug, never the
   miner's).

"Peer busy", "link failed" and "peer wrong" stay distinct to the scorer:
:func:`~byteleap.sessions.round_checks.judge` maps each error of the error tree to its outcome
and failure code, unchanged.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from byteleap.aliases import WorkerRef
from byteleap.challenge.verify import StageSample
from byteleap.config.challenge import ChallengeSection
from byteleap.errors import (
    LinkError,
    Outcome,
    PeerTimeout,
    PeerUnavailable,
    TransientError,
    UnexplainedBusy,
)
from byteleap.protocol.miner_api.challenges import ChallengeRequest, EpochRequest
from byteleap.sessions.round_checks import (
    check_commits,
    draw_samples,
    openings_request,
    unrequested_openings,
    verdict,
    verify_jobs,
)
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
    StoreEpoch,
    StreamEnded,
    Verified,
    Verify,
)
from byteleap.sessions.round_planner import EpochPlan, PlannedChallenge, deadline_ms
from byteleap.sessions.round_records import (
    ChallengeOpen,
    ChallengeVerdict,
    VerifyReport,
)

#: seconds beyond ``reveal_timeout_s`` before the validator stops waiting on its own
REVEAL_SLACK_S = 2.0
#: seconds beyond the epoch's latest deadline the validator reads a miner's commit stream
STREAM_SLACK_S = 2.0
SAMPLED_NOT_CHECKED = "reveal received; not checked in this epoch (sampled verification)"
SAMPLED_MERKLE_ONLY = (
    "Merkle paths checked; entries not opened in this epoch (sampled verification)"
)


class ChallengeStage(enum.StrEnum):
    PLANNED = "planned"  # prepared, not stored yet
    STORED = "stored"  # its rows are stored; its miner's request not sent yet
    DISPATCHED = "dispatched"  # its miner's request went out; no answer yet
    COMMITTED = "committed"  # valid commits stored; the reveal is requested
    VERIFYING = "verifying"  # the reveal arrived; the verifier runs
    CLOSING = "closing"  # every GPU has its verdict; the driver stores them
    CLOSED = "closed"


# --------------------------------------------------------------------------- state


@dataclass(eq=False, slots=True)
class ChallengeState:
    """Where one worker's challenge of the epoch stands."""

    planned: PlannedChallenge
    challenge_id: str
    seed: bytes
    stage: ChallengeStage = ChallengeStage.PLANNED
    #: seconds from its miner's dispatch to the answer
    elapsed: float | None = None
    roots: dict[str, tuple[bytes, ...]] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    samples: dict[str, tuple[StageSample, ...]] = field(default_factory=dict)
    exact: frozenset[str] = frozenset()
    verdicts: dict[str, ChallengeVerdict] = field(default_factory=dict)

    @property
    def key(self) -> WorkerRef:
        return self.planned.key

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

    def closed_verdicts(self) -> tuple[ChallengeVerdict, ...]:
        return tuple(self.verdicts[uuid] for uuid in self.planned.gpu_uuids)


class EpochRound:
    """One epoch of ``plan``, from storing to the last verdict (see the module docstring)."""

    def __init__(
        self,
        plan: EpochPlan,
        *,
        epoch_id: str,
        ids: Sequence[tuple[str, bytes]],
        now: datetime,
        section: ChallengeSection,
        known_lease: Callable[[WorkerRef], bool] = lambda _key: False,
        sampling_rng: Callable[[], random.Random] = random.SystemRandom,
    ) -> None:
        if len(ids) != len(plan.challenges):
            raise ValueError("one (challenge id, seed) per planned challenge")
        self.plan = plan
        self.epoch_id = epoch_id
        self.opened_at = now
        self.section = section
        self.known_lease = known_lease
        self.sampling_rng = sampling_rng
        self.challenges: dict[str, ChallengeState] = {
            cid: ChallengeState(planned, cid, seed)
            for planned, (cid, seed) in zip(plan.challenges, ids, strict=True)
        }
        #: miner hotkey -> its challenge ids, in plan order (one request per miner)
        self.by_miner: dict[str, list[str]] = {}
        for state in self.challenges.values():
            self.by_miner.setdefault(state.planned.miner_hotkey, []).append(state.challenge_id)
        self.stored: bool | None = None
        self.fraction = 1.0
        self.merkle = True
        self.epoch_t0: float | None = None
        self.dispatched_at: dict[str, float] = {}

    # ------------------------------------------------------------------ reading

    @property
    def done(self) -> bool:
        """Nothing is left to do: not stored, or every challenge closed."""
        if self.stored is False:
            return True
        return all(s.stage is ChallengeStage.CLOSED for s in self.challenges.values())

    @property
    def spread_s(self) -> float:
        """Seconds from the first to the last miner's dispatch."""
        at = self.dispatched_at.values()
        return max(at) - min(at) if at else 0.0

    def results(self) -> list[ChallengeState]:
        """The closed challenges, miner by miner in plan order."""
        return [
            self.challenges[cid]
            for ids in self.by_miner.values()
            for cid in ids
            if self.challenges[cid].stage is ChallengeStage.CLOSED
        ]

    # ------------------------------------------------------------------ events

    def start(self) -> list[RoundInstruction]:
        """Store every challenge first (an empty plan has nothing to do)."""
        if not self.challenges:
            return []
        return [StoreEpoch(tuple(self._opened(s) for s in self.challenges.values()))]

    def handle_stimulus(self, *events: RoundEvent) -> list[RoundInstruction]:
        out: list[RoundInstruction] = []
        for event in events:
            out.extend(self._handle(event))
        return out

    def _handle(self, event: RoundEvent) -> list[RoundInstruction]:
        match event:
            case EpochStored():
                return self._stored(event)
            case EpochNotStored():
                self._expect(self.stored is None, "the epoch was stored twice")
                self.stored = False
                return []
            case ClockStarted():
                self._expect(self.stored is True, "the clock started before the epoch was stored")
                self.epoch_t0 = event.at
                return []
            case MinerDispatched():
                return self._miner_dispatched(event)
            case AnswerArrived():
                return self._answer(event)
            case StreamEnded():
                missing = LinkError("the miner's stream ended without this challenge")
                return [
                    self._close(state, event.now, missing)
                    for cid in self.by_miner.get(event.miner_hotkey, ())
                    if (state := self.challenges[cid]).stage is ChallengeStage.DISPATCHED
                ]
            case RevealArrived():
                return self._revealed(event)
            case Verified():
                return self._verified(event)
            case ChallengeCrashed():
                crashed = self.challenges.get(event.challenge_id)
                if crashed is None or crashed.stage in (
                    ChallengeStage.CLOSING,
                    ChallengeStage.CLOSED,
                ):
                    return []
                crashed.verdicts.clear()  # nothing decided before the crash stands
                return [self._close(crashed, event.now, event.error)]
            case ChallengeClosed():
                closed = self.challenges[event.challenge_id]
                self._expect(
                    closed.stage is ChallengeStage.CLOSING, f"{closed.challenge_id} closed twice"
                )
                closed.stage = ChallengeStage.CLOSED
                return []
        raise TypeError(f"not an event of an epoch: {event!r}")

    def _stored(self, event: EpochStored) -> list[RoundInstruction]:
        self._expect(self.stored is None, "the epoch was stored twice")
        self.stored = True
        self.fraction, self.merkle = event.fraction, event.merkle
        out: list[RoundInstruction] = []
        for miner, ids in self.by_miner.items():
            states = [self.challenges[cid] for cid in ids]
            for state in states:
                state.stage = ChallengeStage.STORED
            wait = max(s.planned.sizing.deadline_s for s in states) + STREAM_SLACK_S
            request = EpochRequest(epoch_id=self.epoch_id, challenges=[s.request() for s in states])
            out.append(DispatchEpoch(miner, states[0].planned.endpoint, request, wait))
        return out

    def _miner_dispatched(self, event: MinerDispatched) -> list[RoundInstruction]:
        self._expect(self.epoch_t0 is not None, "a miner was dispatched before the clock started")
        self.dispatched_at[event.miner_hotkey] = event.at
        for cid in self.by_miner[event.miner_hotkey]:
            self.challenges[cid].stage = ChallengeStage.DISPATCHED
        return []

    def _answer(self, event: AnswerArrived) -> list[RoundInstruction]:
        state = self.challenges.get(event.challenge_id)
        if state is None or state.stage is not ChallengeStage.DISPATCHED:
            return []  # the client answers each challenge once; defensive
        assert self.epoch_t0 is not None
        planned, cid, now = state.planned, state.challenge_id, event.now
        elapsed = state.elapsed = event.at - self.dispatched_at[planned.miner_hotkey]
        since_epoch = event.at - self.epoch_t0
        deadline = planned.sizing.deadline_s
        if since_epoch > deadline:
            # any answer after the deadline, a commit or an excuse, is a timeout
            late = PeerTimeout(
                f"the answer arrived {since_epoch:.2f} s after the epoch's first "
                f"dispatch, past the {deadline:.2f} s deadline"
            )
            return [self._close(state, now, late, elapsed_s=elapsed)]
        answer = event.answer
        if isinstance(answer, PeerUnavailable) and not self.known_lease(planned.key):
            answer = UnexplainedBusy(
                f"{answer.message}, and no lease this validator knows of explains it"
            )
        if isinstance(answer, BaseException):
            return [self._close(state, now, answer)]
        verdicts, roots, rates = check_commits(
            planned,
            cid,
            state.seed,
            answer,
            elapsed,
            impossible_factor=self.section.impossible_throughput_factor,
            now=now,
        )
        state.verdicts.update(verdicts)
        if not roots:
            return [self._close(state, now)]
        state.roots, state.rates = roots, rates
        rng = self.sampling_rng()
        state.samples = draw_samples(planned, roots, self.section.sampling, rng)
        # which reveals are opened exactly: decided now, after the commit, and never told
        fraction = self.fraction
        state.exact = frozenset(u for u in roots if fraction >= 1.0 or rng.random() < fraction)
        state.stage = ChallengeStage.COMMITTED
        request = openings_request(planned, cid, state.samples)
        wait = self.section.reveal_timeout_s + REVEAL_SLACK_S
        return [RecordCommit(cid, now, roots), RequestReveal(cid, request, wait)]

    def _revealed(self, event: RevealArrived) -> list[RoundInstruction]:
        state = self.challenges[event.challenge_id]
        self._expect(
            state.stage is ChallengeStage.COMMITTED, f"a reveal {state.challenge_id} never asked"
        )
        cid, now, elapsed, revealed = state.challenge_id, event.now, state.elapsed, event.answer
        if isinstance(revealed, BaseException):
            for uuid in state.roots:
                state.verdicts[uuid] = verdict(
                    cid, uuid, revealed, now, elapsed_s=elapsed, reveal=True
                )
            return [self._close(state, now)]
        stray = unrequested_openings(revealed, state.roots)
        if stray is not None:
            for uuid in state.roots:
                state.verdicts[uuid] = verdict(cid, uuid, stray, now, elapsed_s=elapsed)
            return [self._close(state, now)]
        uuids = tuple(u for u in state.roots if self.merkle or u in state.exact)
        for uuid in state.roots:
            if uuid not in uuids:
                state.verdicts[uuid] = verdict(
                    cid,
                    uuid,
                    None,
                    now,
                    elapsed_s=elapsed,
                    throughput=state.rates[uuid],
                    checked=0,
                    detail=SAMPLED_NOT_CHECKED,
                )
        state.stage = ChallengeStage.VERIFYING
        if not uuids:
            return [self._close(state, now)]
        jobs = verify_jobs(
            state.planned, state.seed, state.roots, state.samples, revealed, uuids, state.exact
        )
        return [Verify(cid, jobs, uuids, state.exact)]

    def _verified(self, event: Verified) -> list[RoundInstruction]:
        state = self.challenges[event.challenge_id]
        self._expect(
            state.stage is ChallengeStage.VERIFYING, f"{state.challenge_id} was not verifying"
        )
        cid, now, elapsed = state.challenge_id, event.now, state.elapsed
        for uuid, report in event.reports.items():
            if isinstance(report, VerifyReport):
                error = report.error()
                exact = uuid in state.exact
                state.verdicts[uuid] = verdict(
                    cid,
                    uuid,
                    error,
                    now,
                    elapsed_s=elapsed,
                    throughput=state.rates[uuid] if error is None else None,
                    verify_s=report.seconds,
                    checked=report.checked_entries,
                    detail=None if exact else SAMPLED_MERKLE_ONLY,
                )
            else:
                state.verdicts[uuid] = verdict(cid, uuid, report, now, elapsed_s=elapsed)
        return [self._close(state, now)]

    # ------------------------------------------------------------------ helpers

    def _close(
        self,
        state: ChallengeState,
        now: datetime,
        exc: BaseException | None = None,
        *,
        elapsed_s: float | None = None,
    ) -> CloseChallenge:
        """Close ``state``: ``exc`` for every GPU without a verdict when given; a GPU that still
        has none is ours to excuse."""
        cid = state.challenge_id
        for uuid in state.planned.gpu_uuids:
            if uuid not in state.verdicts:
                if exc is not None:
                    state.verdicts[uuid] = verdict(cid, uuid, exc, now, elapsed_s=elapsed_s)
                else:
                    missing = TransientError("no verdict was reached")
                    state.verdicts[uuid] = verdict(cid, uuid, missing, now)
        if elapsed_s is not None:
            state.elapsed = elapsed_s
        state.stage = ChallengeStage.CLOSING
        return CloseChallenge(cid, state.planned, state.closed_verdicts(), state.elapsed)

    def _opened(self, state: ChallengeState) -> ChallengeOpen:
        planned, now = state.planned, self.opened_at
        return ChallengeOpen(
            challenge_id=state.challenge_id,
            miner_hotkey=planned.miner_hotkey,
            worker_pubkey=planned.worker_pubkey,
            gpu_uuids=planned.gpu_uuids,
            gpu_models=dict(planned.gpu_models),
            params=planned.params,
            seed=state.seed,
            dispatched_at=now,
            deadline_at=now + timedelta(seconds=planned.sizing.deadline_s),
        )

    @staticmethod
    def _expect(condition: bool, what: str) -> None:
        if not condition:
            raise RuntimeError(f"epoch round out of order: {what}")

    # ------------------------------------------------------------------ invariants

    def validate(self) -> None:
        """Check every invariant of the round (tests call it at teardown); AssertionError."""
        order = list(ChallengeStage)
        for cid, s in self.challenges.items():
            assert s.challenge_id == cid
            gpus = set(s.planned.gpu_uuids)
            assert set(s.verdicts) <= gpus, f"{cid}: a verdict for a GPU it did not challenge"
            assert set(s.roots) <= gpus, f"{cid}: roots of a GPU it did not challenge"
            assert set(s.rates) == set(s.roots), f"{cid}: a root without its throughput"
            assert s.exact <= set(s.roots), f"{cid}: opens a GPU without a valid commit"
            if self.stored is not True:
                assert s.stage is ChallengeStage.PLANNED, f"{cid}: went on without being stored"
            if order.index(s.stage) >= order.index(ChallengeStage.DISPATCHED):
                assert self.epoch_t0 is not None, f"{cid}: dispatched before the clock"
                assert s.planned.miner_hotkey in self.dispatched_at, f"{cid}: never dispatched"
            if s.stage in (ChallengeStage.CLOSING, ChallengeStage.CLOSED):
                assert set(s.verdicts) == gpus, f"{cid}: closed without a verdict per GPU"
            elif s.stage in (ChallengeStage.COMMITTED, ChallengeStage.VERIFYING):
                assert s.roots, f"{cid}: {s.stage} without a valid commit"
                assert not (set(s.verdicts) & set(s.roots)) or s.stage is ChallengeStage.VERIFYING
            else:
                assert not s.verdicts, f"{cid}: a verdict before any answer"
            for v in s.verdicts.values():
                assert v.challenge_id == cid
                assert (v.outcome is Outcome.VERIFIED) == (v.throughput_flops is not None), (
                    f"{cid}: a verified verdict needs a throughput, and only it has one"
                )
        if self.epoch_t0 is not None:
            assert all(at >= self.epoch_t0 for at in self.dispatched_at.values())
        assert set(self.dispatched_at) <= set(self.by_miner)


__all__ = [
    "REVEAL_SLACK_S",
    "STREAM_SLACK_S",
    "ChallengeStage",
    "ChallengeState",
    "EpochRound",
]
