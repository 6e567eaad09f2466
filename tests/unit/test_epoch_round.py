"""The epoch round as a state machine: events in, instructions out, every invariant checked at
teardown (``EpochRound.validate``), with no store, no network and no verifier.

The commit checks themselves (signatures, shapes, plausible throughput) are covered end to end
by tests/integration/test_validator_epoch.py; here ``check_commits`` is replaced where a test
needs a valid commit, so that the round's own bookkeeping is what is tested.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from byteleap.config.challenge import ChallengeSection
from byteleap.errors import LinkError, Outcome, PeerUnavailable, TransientError
from byteleap.protocol.miner_api.challenges import ChallengeResponse, OpeningsResponse
from byteleap.sessions import epoch_round
from byteleap.sessions.epoch_round import ChallengeStage, EpochRound
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
    StoreEpoch,
    StreamEnded,
    Verified,
    Verify,
)
from byteleap.sessions.round_planner import EpochPlan, EpochPlanner
from byteleap.sessions.round_records import GpuSnapshot, VerifyReport, WorkerRow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINER_A = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
MINER_B = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
H100 = "NVIDIA H100 80GB HBM3"


def worker(n: int, miner: str = MINER_A, gpus: int = 1) -> WorkerRow:
    return WorkerRow(
        miner_hotkey=miner,
        miner_uid=n,
        endpoint=f"http://127.0.0.1:{8000 + n}",
        worker_pubkey=f"{n:064x}",
        state="idle",
        online=True,
        last_seen=NOW,
        gpus=tuple(GpuSnapshot(f"GPU-{n:04d}{g:04d}", H100, 81559, "9.0") for g in range(gpus)),
    )


def make_plan(*workers: WorkerRow) -> EpochPlan:
    from byteleap.challenge.sizing import CalibrationSettings, calibrate

    s = ChallengeSection()
    rates = calibrate([], CalibrationSettings(cpu_expected_flops=s.cpu_expected_flops))
    return EpochPlanner(s, random.Random(3)).plan(list(workers), rates=rates)


rounds: list[EpochRound] = []


@pytest.fixture(autouse=True)
def _validate_at_teardown() -> Iterator[None]:
    """dask's habit: every state machine a test made must still hold its invariants."""
    rounds.clear()
    yield
    for r in rounds:
        r.validate()


def new_round(plan: EpochPlan, **kw: Any) -> EpochRound:
    ids = [(f"{i:032x}", bytes([i]) * 32) for i in range(1, len(plan.challenges) + 1)]
    r = EpochRound(
        plan,
        epoch_id="e" * 32,
        ids=ids,
        now=NOW,
        section=ChallengeSection(),
        sampling_rng=lambda: random.Random(5),
        **kw,
    )
    rounds.append(r)
    return r


def dispatched(r: EpochRound, fraction: float = 1.0, merkle: bool = True) -> list[DispatchEpoch]:
    (store,) = r.start()
    assert isinstance(store, StoreEpoch)
    out = r.handle_stimulus(EpochStored(fraction, merkle), ClockStarted(100.0))
    assert all(isinstance(i, DispatchEpoch) for i in out)
    for i in out:
        assert isinstance(i, DispatchEpoch)
        r.handle_stimulus(MinerDispatched(i.miner_hotkey, 100.0))
    return [i for i in out if isinstance(i, DispatchEpoch)]


def close_all(r: EpochRound, instructions: list[Any]) -> None:
    for i in instructions:
        if isinstance(i, CloseChallenge):
            r.handle_stimulus(ChallengeClosed(i.challenge_id))


def commits(challenge_id: str, gpus: list[Any]) -> ChallengeResponse:
    """A response whose commit checks are the test's (built without validation)."""
    fields: dict[str, Any] = {"challenge_id": challenge_id, "gpus": gpus}
    return ChallengeResponse.model_construct(**fields)


def at(r: EpochRound, seconds: float) -> float:
    return 100.0 + seconds


def test_an_empty_plan_has_nothing_to_do() -> None:
    r = new_round(EpochPlan(()))
    assert r.start() == [] and r.done


def test_everything_is_stored_before_anything_is_sent() -> None:
    r = new_round(make_plan(worker(1), worker(2), worker(3, MINER_B, gpus=2)))
    (store,) = r.start()
    assert isinstance(store, StoreEpoch)
    assert [o.challenge_id for o in store.opens] == list(r.challenges)
    assert all(o.dispatched_at == NOW for o in store.opens)
    assert all(s.stage is ChallengeStage.PLANNED for s in r.challenges.values())
    out = r.handle_stimulus(EpochStored(), ClockStarted(100.0))
    # one request per miner carrying all of its workers' challenges
    assert sorted((i.miner_hotkey, len(i.request.challenges)) for i in out) == sorted(  # type: ignore[union-attr]
        [(MINER_A, 2), (MINER_B, 1)]
    )
    for i in out:
        assert isinstance(i, DispatchEpoch)
        longest = max(c.deadline_ms for c in i.request.challenges) / 1000
        assert i.wait_s >= longest + epoch_round.STREAM_SLACK_S - 0.001
        r.handle_stimulus(MinerDispatched(i.miner_hotkey, 100.5))
    assert all(s.stage is ChallengeStage.DISPATCHED for s in r.challenges.values())
    assert r.spread_s == 0.0


def test_a_store_failure_ends_the_epoch_with_nothing_sent() -> None:
    r = new_round(make_plan(worker(1)))
    r.start()
    assert r.handle_stimulus(EpochNotStored("database down")) == []
    assert r.done and r.results() == []


def test_an_answer_after_the_deadline_is_a_timeout_whatever_it_says() -> None:
    r = new_round(make_plan(worker(1)))
    dispatched(r)
    (state,) = r.challenges.values()
    late = at(r, state.planned.sizing.deadline_s + 1.0)
    (close,) = r.handle_stimulus(
        AnswerArrived(state.challenge_id, PeerUnavailable("busy"), late, NOW)
    )
    assert isinstance(close, CloseChallenge)
    assert [v.outcome for v in close.verdicts] == [Outcome.TIMEOUT]
    close_all(r, [close])
    assert r.done and [s.challenge_id for s in r.results()] == [state.challenge_id]


@pytest.mark.parametrize(("leased", "outcome", "failure"), [
    (False, Outcome.TIMEOUT, "unexplained_busy"),
    (True, Outcome.EXCUSED, "busy"),
])  # fmt: skip
def test_busy_is_an_excuse_only_under_a_known_lease(
    leased: bool, outcome: Outcome, failure: str
) -> None:
    r = new_round(make_plan(worker(1)), known_lease=lambda _key: leased)
    dispatched(r)
    (state,) = r.challenges.values()
    (close,) = r.handle_stimulus(
        AnswerArrived(state.challenge_id, PeerUnavailable("busy"), at(r, 0.1), NOW)
    )
    assert isinstance(close, CloseChallenge)
    (v,) = close.verdicts
    assert (v.outcome, v.failure) == (outcome, PeerUnavailable.code if leased else failure)
    close_all(r, [close])


def test_link_failed_and_peer_wrong_stay_distinct() -> None:
    r = new_round(make_plan(worker(1), worker(2)))
    dispatched(r)
    first, second = r.challenges.values()
    link = r.handle_stimulus(AnswerArrived(first.challenge_id, LinkError("reset"), at(r, 1), NOW))
    wrong_gpu = SimpleNamespace(gpu_uuid="GPU-not-asked")
    response = commits(second.challenge_id, [wrong_gpu])
    fraud = r.handle_stimulus(AnswerArrived(second.challenge_id, response, at(r, 1), NOW))
    (a,) = link[0].verdicts  # type: ignore[union-attr]
    (b,) = fraud[0].verdicts  # type: ignore[union-attr]
    assert (a.outcome, a.failure) == (Outcome.EXCUSED, LinkError.code)
    assert b.outcome is Outcome.FRAUD and b.failure == "bad_commit_shape"
    close_all(r, link + fraud)


def test_a_stream_that_ends_closes_only_what_it_did_not_answer() -> None:
    r = new_round(make_plan(worker(1), worker(2)))
    dispatched(r)
    first, second = r.challenges.values()
    r.handle_stimulus(AnswerArrived(first.challenge_id, LinkError("x"), at(r, 1), NOW))
    assert first.stage is ChallengeStage.CLOSING
    (close,) = r.handle_stimulus(StreamEnded(MINER_A, NOW))
    assert isinstance(close, CloseChallenge) and close.challenge_id == second.challenge_id
    assert close.verdicts[0].failure == LinkError.code
    # a second answer for a challenge already answered changes nothing
    assert r.handle_stimulus(AnswerArrived(first.challenge_id, LinkError("y"), 1.0, NOW)) == []
    close_all(r, [close])
    r.handle_stimulus(ChallengeClosed(first.challenge_id))
    assert r.done


def valid_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    def check(planned: Any, cid: str, seed: bytes, response: Any, elapsed: float, **_: Any) -> Any:
        roots = {u: (bytes(32),) * planned.params.stages for u in planned.gpu_uuids}
        return {}, roots, dict.fromkeys(planned.gpu_uuids, 1e14)

    monkeypatch.setattr(epoch_round, "check_commits", check)


def test_commit_then_reveal_then_verify_then_close(monkeypatch: pytest.MonkeyPatch) -> None:
    valid_commits(monkeypatch)
    r = new_round(make_plan(worker(1, gpus=2)))
    dispatched(r)
    (state,) = r.challenges.values()
    answer = commits(state.challenge_id, [])
    record, reveal = r.handle_stimulus(AnswerArrived(state.challenge_id, answer, at(r, 2), NOW))
    # the commit is stored before the rows are asked for
    assert isinstance(record, RecordCommit) and isinstance(reveal, RequestReveal)
    assert set(record.roots) == set(state.planned.gpu_uuids)
    assert {o.gpu_uuid for o in reveal.request.openings} == set(state.planned.gpu_uuids)
    assert state.stage is ChallengeStage.COMMITTED and state.elapsed == pytest.approx(2.0)
    revealed = OpeningsResponse(challenge_id=state.challenge_id, openings=[])
    (verify,) = r.handle_stimulus(RevealArrived(state.challenge_id, revealed, NOW))
    assert isinstance(verify, Verify) and verify.exact == frozenset(state.planned.gpu_uuids)
    assert all(job.entries for job in verify.jobs)
    first, second = verify.gpu_uuids
    reports: dict[str, VerifyReport | BaseException] = {
        first: VerifyReport(12, 0.01),
        second: TransientError("pool died"),
    }
    (close,) = r.handle_stimulus(Verified(state.challenge_id, reports, NOW))
    assert isinstance(close, CloseChallenge)
    outcomes = {v.gpu_uuid: (v.outcome, v.throughput_flops) for v in close.verdicts}
    assert outcomes == {first: (Outcome.VERIFIED, 1e14), second: (Outcome.EXCUSED, None)}
    close_all(r, [close])
    assert r.done


def test_a_failed_reveal_after_a_valid_commit_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    valid_commits(monkeypatch)
    r = new_round(make_plan(worker(1)))
    dispatched(r)
    (state,) = r.challenges.values()
    answer = commits(state.challenge_id, [])
    r.handle_stimulus(AnswerArrived(state.challenge_id, answer, at(r, 2), NOW))
    (close,) = r.handle_stimulus(
        RevealArrived(state.challenge_id, PeerUnavailable("busy now"), NOW)
    )
    (v,) = close.verdicts  # type: ignore[union-attr]
    assert v.outcome is Outcome.TIMEOUT and "after a valid commit" in (v.detail or "")
    close_all(r, [close])


def test_sampled_verification_leaves_unopened_reveals_unchecked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    valid_commits(monkeypatch)
    r = new_round(make_plan(worker(1, gpus=4)))
    dispatched(r, fraction=0.0, merkle=False)
    (state,) = r.challenges.values()
    answer = commits(state.challenge_id, [])
    r.handle_stimulus(AnswerArrived(state.challenge_id, answer, at(r, 2), NOW))
    revealed = OpeningsResponse(challenge_id=state.challenge_id, openings=[])
    # nothing opened exactly and no Merkle checks: every GPU closes on its reveal alone
    (close,) = r.handle_stimulus(RevealArrived(state.challenge_id, revealed, NOW))
    assert isinstance(close, CloseChallenge)
    assert all(v.outcome is Outcome.VERIFIED and v.checked_entries == 0 for v in close.verdicts)
    close_all(r, [close])


def test_a_crash_excuses_the_whole_challenge_once() -> None:
    r = new_round(make_plan(worker(1, gpus=2)))
    dispatched(r)
    (state,) = r.challenges.values()
    (close,) = r.handle_stimulus(ChallengeCrashed(state.challenge_id, KeyError("bug"), NOW))
    assert isinstance(close, CloseChallenge)
    assert {(v.outcome, v.failure) for v in close.verdicts} == {(Outcome.EXCUSED, "internal")}
    assert r.handle_stimulus(ChallengeCrashed(state.challenge_id, KeyError("again"), NOW)) == []
    close_all(r, [close])
    with pytest.raises(RuntimeError, match="closed twice"):
        r.handle_stimulus(ChallengeClosed(state.challenge_id))


def test_events_out_of_order_are_refused() -> None:
    r = new_round(make_plan(worker(1)))
    r.start()
    with pytest.raises(RuntimeError, match="before the epoch was stored"):
        r.handle_stimulus(ClockStarted(1.0))
    r.handle_stimulus(EpochStored())
    with pytest.raises(RuntimeError, match="before the clock started"):
        r.handle_stimulus(MinerDispatched(MINER_A, 1.0))
    with pytest.raises(RuntimeError, match="stored twice"):
        r.handle_stimulus(EpochStored())
    assert all(s.stage is ChallengeStage.STORED for s in r.challenges.values())


def test_validate_catches_a_broken_invariant() -> None:
    r = new_round(make_plan(worker(1)))
    dispatched(r)
    (state,) = r.challenges.values()
    state.stage = ChallengeStage.CLOSED  # closed without a verdict
    with pytest.raises(AssertionError, match="without a verdict per GPU"):
        r.validate()
    state.stage = ChallengeStage.DISPATCHED
