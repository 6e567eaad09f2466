"""The worker's link state machine, driven with plain objects: events in, instructions out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.challenge.params import CPU_DEFAULT
from byteleap.crypto import WorkerKey
from byteleap.errors import WorkerFailure
from byteleap.protocol import codec
from byteleap.protocol.handshake import verify_register
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    GpuCommit,
    OpeningRequest,
    Reveal,
    RevealRequest,
    RowOpening,
)
from byteleap.protocol.worker_link.jobs import (
    JobCancel,
    JobLogsQuery,
    JobRefused,
    JobSpec,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Register,
    Unavailable,
    Welcome,
)
from byteleap.sessions.agent_events import (
    AgentTick,
    CancelJobs,
    ChallengeFinished,
    CloseLink,
    Connected,
    Disconnected,
    HandleJob,
    OpenRows,
    PurgeJobs,
    Received,
    RowsOpened,
    RunChallenge,
    Send,
    StopChallenge,
)
from byteleap.sessions.worker_agent import LinkPhase, WorkerAgent
from tests.support.worker import MINER_HOTKEY, inventory

GPU = "GPU-11111111-2222-3333-4444-555555555555"
HELLO = Hello(nonce=bytes(range(32)), miner_hotkey=MINER_HOTKEY, heartbeat_interval_s=5.0)


def frame(message) -> bytes:
    return codec.encode(message)


def sent(instructions) -> list[Any]:
    return [i.message for i in instructions if isinstance(i, Send)]


def make_agent(**kwargs) -> WorkerAgent:
    return WorkerAgent(WorkerKey.generate(), inventory(GPU), agent_version="0.1.0", **kwargs)


def ready_agent(**kwargs) -> WorkerAgent:
    agent = make_agent(**kwargs)
    agent.handle(Connected(0.0))
    agent.handle(Received(frame(HELLO), 0.0))
    agent.handle(Received(frame(Welcome(session_id="s1")), 0.0))
    assert agent.phase is LinkPhase.READY
    return agent


def dispatch(cid: str = "c1", gpus: tuple[str, ...] = (GPU,)) -> ChallengeDispatch:
    return ChallengeDispatch(
        challenge_id=cid, seed=bytes(32), params=CPU_DEFAULT, gpu_uuids=list(gpus),
        deadline_ms=60_000,
    )  # fmt: skip


def commit_for(agent: WorkerAgent, cid: str = "c1") -> GpuCommit:
    return GpuCommit.create(agent.key, cid, GPU, [bytes(32)] * CPU_DEFAULT.stages)


def test_handshake_signs_the_miners_nonce_and_carries_the_join_token_once() -> None:
    agent = make_agent(join_token="tok-123")
    assert agent.handle(Connected(0.0)) == []
    (register,) = sent(agent.handle(Received(frame(HELLO), 0.0)))
    assert isinstance(register, Register)
    assert register.join_token == "tok-123"
    assert verify_register(HELLO, register)
    other = HELLO.model_copy(update={"nonce": bytes(32)})
    assert not verify_register(other, register)  # a recorded Register cannot be replayed
    out = agent.handle(Received(frame(Welcome(session_id="s1")), 1.0))
    assert isinstance(sent(out)[0], Heartbeat)  # first heartbeat right away
    agent.handle(Disconnected(2.0))
    agent.handle(Connected(3.0))
    (again,) = sent(agent.handle(Received(frame(HELLO), 3.0)))
    assert again.join_token is None  # the key is pinned now; the token was single-use


def test_the_handshake_must_come_in_order() -> None:
    agent = make_agent()
    agent.handle(Connected(0.0))
    out = agent.handle(Received(frame(Welcome(session_id="s")), 0.0))
    assert any(isinstance(i, CloseLink) for i in out)
    agent = make_agent(expected_miner_hotkey="5Fsomebodyelse")
    agent.handle(Connected(0.0))
    out = agent.handle(Received(frame(HELLO), 0.0))
    assert [type(i) for i in out] == [CloseLink]


def test_refused_registration_closes_the_link() -> None:
    agent = make_agent()
    agent.handle(Connected(0.0))
    agent.handle(Received(frame(HELLO), 0.0))
    refused = ErrorReply(code="forbidden", message="unknown worker key")
    out = agent.handle(Received(frame(refused), 0.0))
    assert any(isinstance(i, CloseLink) and "unknown worker key" in i.reason for i in out)


def test_heartbeats_follow_the_interval_and_report_state() -> None:
    agent = ready_agent()
    assert sent(agent.handle(AgentTick(1.0))) == []
    (beat,) = sent(agent.handle(AgentTick(5.0)))
    assert isinstance(beat, Heartbeat) and beat.seq == 1 and beat.state == "idle"
    assert sent(agent.handle(AgentTick(9.9))) == []
    agent.handle(Received(frame(HeartbeatAck(seq=1)), 10.0))
    assert agent.last_acked == 1
    agent.handle(Received(frame(dispatch()), 10.0))
    (beat,) = sent(agent.handle(AgentTick(10.0)))
    assert beat.state == "busy"


def test_challenge_commit_and_reveal_round_trip() -> None:
    agent = ready_agent()
    out = agent.handle(Received(frame(dispatch()), 1.0))
    assert any(isinstance(i, RunChallenge) for i in out)
    commit = commit_for(agent)
    (message,) = sent(agent.handle(ChallengeFinished("c1", commits=(commit,))))
    assert isinstance(message, ChallengeCommit) and message.gpus == [commit]
    assert agent.state == "idle"
    request = RevealRequest(
        challenge_id="c1", openings=[OpeningRequest(gpu_uuid=GPU, stage=1, rows=[3, 7])]
    )
    out = agent.handle(Received(frame(request), 2.0))
    assert out == [OpenRows(request)]
    assert agent.handle(Received(frame(request), 2.1)) == []  # already being opened
    opening = RowOpening(gpu_uuid=GPU, stage=1, row=3, values=b"\0" * 1024, proof=b"\1" * 256)
    (reveal,) = sent(agent.handle(RowsOpened("c1", openings=(opening,))))
    assert isinstance(reveal, Reveal) and reveal.openings == [opening]


def test_busy_leased_and_unknown_challenges_get_typed_replies() -> None:
    agent = ready_agent()
    agent.handle(Received(frame(dispatch("c1")), 0.0))
    (busy,) = sent(agent.handle(Received(frame(dispatch("c2")), 0.0)))
    assert busy == Unavailable(challenge_id="c2", leased=False)
    fresh = ready_agent()
    (unknown,) = sent(fresh.handle(Received(frame(dispatch("c3", ("GPU-other",))), 0.0)))
    assert isinstance(unknown, ErrorReply) and unknown.code == "malformed"
    assert fresh.state == "idle"
    request = RevealRequest(
        challenge_id="nope", openings=[OpeningRequest(gpu_uuid=GPU, stage=0, rows=[0])]
    )
    (error,) = sent(agent.handle(Received(frame(request), 0.0)))
    assert isinstance(error, ErrorReply) and error.code == "worker_failure"


def test_reveal_requests_outside_the_challenge_are_refused() -> None:
    agent = ready_agent()
    agent.handle(Received(frame(dispatch()), 0.0))
    agent.handle(ChallengeFinished("c1", commits=(commit_for(agent),)))
    for opening in (
        OpeningRequest(gpu_uuid=GPU, stage=CPU_DEFAULT.stages, rows=[0]),
        OpeningRequest(gpu_uuid=GPU, stage=0, rows=[CPU_DEFAULT.m]),
        OpeningRequest(gpu_uuid="GPU-x", stage=0, rows=[0]),
    ):
        request = RevealRequest(challenge_id="c1", openings=[opening])
        (reply,) = sent(agent.handle(Received(frame(request), 0.0)))
        assert isinstance(reply, ErrorReply) and reply.code == "malformed"


def test_a_lease_stops_the_running_challenge_and_refuses_new_ones() -> None:
    agent = ready_agent()
    agent.handle(Received(frame(dispatch("c1")), 0.0))
    start = LeaseStart(lease_id="L1", gpu_uuids=[GPU], ends_at=2_000_000_000)
    out = agent.handle(Received(frame(start), 1.0))
    assert StopChallenge("c1") in out
    assert LeaseAck(lease_id="L1", accepted=True) in sent(out)
    (abandoned,) = sent(agent.handle(ChallengeFinished("c1", abandoned=True)))
    assert abandoned == Unavailable(challenge_id="c1", leased=True)
    (refused,) = sent(agent.handle(Received(frame(dispatch("c2")), 2.0)))
    assert refused == Unavailable(challenge_id="c2", leased=True)
    (beat,) = sent(agent.handle(AgentTick(100.0)))
    assert beat.state == "leased"
    other = LeaseStart(lease_id="L2", gpu_uuids=[GPU], ends_at=2_000_000_000)
    (ack,) = sent(agent.handle(Received(frame(other), 3.0)))
    assert not ack.accepted
    (ack,) = sent(agent.handle(Received(frame(LeaseStop(lease_id="L1", reason="expired")), 4.0)))
    assert ack.accepted and agent.state == "idle"


def test_a_commit_finished_while_disconnected_is_sent_after_reconnect() -> None:
    agent = ready_agent()
    agent.handle(Received(frame(dispatch()), 0.0))
    agent.handle(Disconnected(1.0, "reset"))
    commit = commit_for(agent)
    assert sent(agent.handle(ChallengeFinished("c1", commits=(commit,)))) == []
    agent.handle(Connected(2.0))
    agent.handle(Received(frame(HELLO), 2.0))
    out = sent(agent.handle(Received(frame(Welcome(session_id="s2")), 2.0)))
    assert any(isinstance(m, ChallengeCommit) and m.challenge_id == "c1" for m in out)


def test_worker_failures_become_typed_error_replies() -> None:
    agent = ready_agent()
    agent.handle(Received(frame(dispatch()), 0.0))
    (reply,) = sent(agent.handle(ChallengeFinished("c1", error=WorkerFailure("out of memory"))))
    assert isinstance(reply, ErrorReply) and reply.code == "worker_failure"
    assert reply.in_reply_to == "c1"


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=256)))
def test_garbage_from_the_miner_never_crashes_the_agent(data: bytes | str) -> None:
    agent = ready_agent()
    out = agent.handle(Received(data, 0.0))
    assert all(isinstance(i.message, ErrorReply) for i in out if isinstance(i, Send))
    assert agent.phase is LinkPhase.READY


def test_oversized_messages_are_refused_before_parsing() -> None:
    agent = ready_agent(max_message_bytes=1024)
    (reply,) = sent(agent.handle(Received(b"\0" * 2048, 0.0)))
    assert reply.code == "too_large"


@pytest.mark.parametrize("phase_messages", [0, 1])
def test_nothing_is_processed_before_the_handshake_completes(phase_messages: int) -> None:
    agent = make_agent()
    agent.handle(Connected(0.0))
    if phase_messages:
        agent.handle(Received(frame(HELLO), 0.0))
    out = agent.handle(Received(frame(dispatch()), 0.0))
    assert not any(isinstance(i, RunChallenge) for i in out)
    assert any(isinstance(i, CloseLink) for i in out)


# --------------------------------------------------------------------------- jobs

JOB = JobSpec(image="python:3.11", command=["python", "-c", "pass"], timeout_s=60)


def job_submit(lease: str = "L1", job_id: str = "j1") -> JobSubmit:
    return JobSubmit(request_id="r1", lease_id=lease, job_id=job_id, spec=JOB)


def test_jobs_are_refused_without_a_runner_or_without_the_lease() -> None:
    disabled = ready_agent()
    start = LeaseStart(lease_id="L1", gpu_uuids=[GPU], ends_at=2_000_000_000)
    disabled.handle(Received(frame(start), 0.0))
    (refused,) = sent(disabled.handle(Received(frame(job_submit()), 1.0)))
    assert isinstance(refused, JobRefused) and refused.reason == "runner_disabled"
    agent = ready_agent(job_runner="docker")
    (refused,) = sent(agent.handle(Received(frame(job_submit()), 1.0)))
    assert refused.reason == "not_leased" and "no lease" in refused.message
    agent.handle(Received(frame(start), 1.0))
    (refused,) = sent(agent.handle(Received(frame(job_submit(lease="L9")), 1.0)))
    assert refused.reason == "not_leased" and "L1" in refused.message
    assert (refused.request_id, refused.job_id) == ("r1", "j1")


def test_a_job_for_the_held_lease_goes_to_the_manager_with_the_lease_gpus() -> None:
    agent = ready_agent(job_runner="subprocess")
    start = LeaseStart(lease_id="L1", gpu_uuids=[GPU], ends_at=2_000_000_000)
    out = agent.handle(Received(frame(start), 0.0))
    assert PurgeJobs("L1") in out  # finished jobs of earlier leases go
    assert agent.handle(Received(frame(job_submit()), 1.0)) == [HandleJob(job_submit(), (GPU,))]
    # queries go to the manager for any lease: results of an ended lease stay readable
    for query in (
        JobStatusQuery(request_id="q1", lease_id="L0", job_id="old"),
        JobLogsQuery(request_id="q2", lease_id="L1", job_id="j1", limit=10),
        JobCancel(request_id="q3", lease_id="L1", job_id="j1"),
    ):
        assert agent.handle(Received(frame(query), 2.0)) == [HandleJob(query)]


def test_a_lease_stop_cancels_its_jobs_and_shutdown_cancels_all() -> None:
    agent = ready_agent(job_runner="docker")
    agent.handle(Received(frame(LeaseStart(lease_id="L1", gpu_uuids=[GPU], ends_at=2**31)), 0.0))
    out = agent.handle(Received(frame(LeaseStop(lease_id="L1", reason="renter done")), 1.0))
    assert out[0] == CancelJobs("L1")
    assert LeaseAck(lease_id="L1", accepted=True) in sent(out)
    assert agent.shutdown() == [CancelJobs(None)]
    assert ready_agent().shutdown() == []  # no runner, nothing to stop


def test_job_requests_before_the_handshake_are_not_served() -> None:
    agent = make_agent(job_runner="docker")
    agent.handle(Connected(0.0))
    agent.handle(Received(frame(HELLO), 0.0))
    out = agent.handle(Received(frame(job_submit()), 0.0))
    assert not any(isinstance(i, HandleJob) for i in out)
    assert any(isinstance(i, CloseLink) for i in out)
