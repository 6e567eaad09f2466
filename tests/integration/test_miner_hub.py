"""The miner's worker hub on 127.0.0.1 against REAL worker runtimes (and raw websocket peers)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow as CoreOpening
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.config.miner import WorkerServerSection
from byteleap.config.secrets import Secret
from byteleap.crypto import WorkerKey
from byteleap.errors import LinkError, MalformedMessage, PeerTimeout, PeerUnavailable, WorkerFailure
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.handshake import make_register
from byteleap.protocol.worker_link.challenges import (
    ChallengeDispatch,
    OpeningRequest,
    RevealRequest,
)
from byteleap.protocol.worker_link.jobs import (
    JobInfo,
    JobLogs,
    JobLogSlice,
    JobRefused,
    JobStatus,
    JobStatusQuery,
)
from byteleap.protocol.worker_link.leases import LeaseStart, LeaseStop
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Welcome,
)
from byteleap.sessions.miner_registry import CLOSE_HEARTBEAT_TIMEOUT, CLOSE_POLICY, CLOSE_REPLACED
from neurons.miner.authorized import AuthorizedKeys, token_hash
from neurons.miner.hub import WorkerHub
from tests.support.worker import MINER_HOTKEY, running_worker
from tests.support.worker import inventory as make_inventory

SMALL = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)
#: long enough (hundreds of stages) to observe a worker while it computes
SLOW = ChallengeParams(m=256, n=256, k=256, v=15, stages=300)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def section(tmp_path: Path, **overrides: Any) -> WorkerServerSection:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "authorized_keys_file": tmp_path / "authorized_workers",
        "handshake_timeout_s": 2.0,
        **overrides,
    }
    return WorkerServerSection(**values)


@contextlib.asynccontextmanager
async def running_hub(
    tmp_path: Path,
    keys: tuple[WorkerKey, ...] = (),
    *,
    clock: Callable[[], float] = time.monotonic,
    **overrides: Any,
) -> AsyncIterator[WorkerHub]:
    config = section(tmp_path, authorized_keys=[key.public_key.hex() for key in keys], **overrides)
    hub = WorkerHub(config, AuthorizedKeys.from_config(config), MINER_HOTKEY, clock=clock)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def url_of(hub: WorkerHub) -> str:
    return f"ws://127.0.0.1:{hub.port}/worker"


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def listed(hub: WorkerHub, key: WorkerKey) -> bool:
    return any(s.worker_pubkey == key.public_key.hex() for s in hub.summaries())


def state_of(hub: WorkerHub, key: WorkerKey) -> str | None:
    return next((s.state for s in hub.summaries() if s.worker_pubkey == key.public_key.hex()), None)


def dispatch(cid: str, uuid: str, params: ChallengeParams = SMALL) -> ChallengeDispatch:
    return ChallengeDispatch(
        challenge_id=cid, seed=os.urandom(32), params=params, gpu_uuids=[uuid], deadline_ms=60_000
    )


# --------------------------------------------------------------------------- raw peers


async def recv(ws: ClientConnection, timeout: float = 5.0) -> Message:
    data = await asyncio.wait_for(ws.recv(), timeout)
    return codec.decode(data, codec.MINER_TO_WORKER, max_bytes=1 << 24)


async def raw_register(
    hub: WorkerHub, key: WorkerKey, *, join_token: str | None = None, forge: bool = False
) -> tuple[ClientConnection, Message]:
    """A hand-driven worker: connect, answer Hello, return the miner's verdict."""
    ws = await connect(url_of(hub), compression=None, max_size=1 << 24)
    hello = await recv(ws)
    assert isinstance(hello, Hello)
    assert hello.miner_hotkey == MINER_HOTKEY
    signer = WorkerKey.generate() if forge else key
    register = make_register(
        signer,
        hello,
        agent_version="raw",
        inventory=make_inventory("GPU-raw"),
        join_token=join_token,
    )
    if forge:
        register = register.model_copy(update={"worker_pubkey": key.public_key})
    await ws.send(codec.encode(register))
    return ws, await recv(ws)


async def close_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Drain the connection until the miner closes it; the close code it sent."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    return ws.close_code


async def recv_error(ws: ClientConnection) -> ErrorReply:
    while True:
        message = await recv(ws)
        if isinstance(message, ErrorReply):
            return message


# --------------------------------------------------------------------------- registration


async def test_an_authorized_worker_registers_and_is_listed_with_its_device(
    tmp_path: Path,
) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub, running_worker(url_of(hub), key) as worker:
        await until(lambda: listed(hub, key))
        (summary,) = hub.summaries()
        assert summary.state == "idle"
        assert [gpu.uuid for gpu in summary.gpus] == [worker.device_uuid]
        assert summary.agent_version == "test"
        assert abs(summary.last_heartbeat - time.time()) < 5
        assert hub.connected() == 1
        assert worker.runtime.agent.session_id is not None


async def test_unknown_and_forged_keys_are_refused_and_never_listed(tmp_path: Path) -> None:
    known, stranger = WorkerKey.generate(), WorkerKey.generate()
    async with running_hub(tmp_path, (known,)) as hub:
        ws, reply = await raw_register(hub, stranger)
        assert isinstance(reply, ErrorReply) and reply.code == "forbidden"
        assert await close_code(ws) == CLOSE_POLICY

        # a valid signature by another key, claiming the authorized one
        ws, reply = await raw_register(hub, known, forge=True)
        assert isinstance(reply, ErrorReply) and reply.code == "unauthenticated"
        assert await close_code(ws) == CLOSE_POLICY

        async with running_worker(url_of(hub), stranger) as worker:
            await until(
                lambda: hub.metrics.registrations.labels(result="forbidden")._value.get() >= 2
            )
            assert worker.runtime.agent.session_id is None
        assert hub.summaries() == [] and hub.connected() == 0


async def test_a_join_token_pins_one_key_and_is_burned(tmp_path: Path) -> None:
    token = "join-me-once-7f3a"
    first, second = WorkerKey.generate(), WorkerKey.generate()
    secret_file = tmp_path / "join_tokens"
    secret_file.write_text(f"# handed out 2025-01-01\n{token}\nanother-unused-token\n")
    tokens = Secret.from_file(secret_file)
    async with running_hub(tmp_path, join_tokens=tokens) as hub:
        async with running_worker(url_of(hub), first, join_token=token):
            await until(lambda: listed(hub, first))
        ws, reply = await raw_register(hub, second, join_token=token)
        assert isinstance(reply, ErrorReply) and reply.code == "forbidden"
        assert await close_code(ws) == CLOSE_POLICY
        # the pinned key no longer needs the token
        ws, reply = await raw_register(hub, first)
        assert isinstance(reply, Welcome)
        await ws.close()

    keys_file = tmp_path / "authorized_workers"
    assert first.public_key.hex() in keys_file.read_text()
    assert second.public_key.hex() not in keys_file.read_text()
    used = (tmp_path / "authorized_workers.used-tokens").read_text()
    assert token_hash(token) in used and token not in used
    assert hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    # a restarted miner remembers both the pinned key and the burned token
    again = AuthorizedKeys.from_config(section(tmp_path, join_tokens=tokens))
    assert first.public_key in again and again.unspent_tokens() == 1


async def test_a_second_live_connection_with_the_same_key_is_refused_and_a_stale_one_replaced(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,), clock=clock, heartbeat_timeout_s=3.0) as hub:
        first, reply = await raw_register(hub, key)
        assert isinstance(reply, Welcome)
        second, reply = await raw_register(hub, key)
        assert isinstance(reply, ErrorReply) and reply.code == "forbidden"
        assert "live connection" in reply.message
        assert await close_code(second) == CLOSE_POLICY

        clock.now += 2.5  # past the stale threshold (2 heartbeat intervals), before the timeout
        third, reply = await raw_register(hub, key)
        assert isinstance(reply, Welcome)
        assert await close_code(first) == CLOSE_REPLACED
        assert hub.connected() == 1
        session = hub.registry.session_of(key.public_key)
        assert session is not None and session.session_id == reply.session_id
        await third.close()


async def test_a_reconnecting_real_worker_gets_a_new_session(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub, running_worker(url_of(hub), key) as worker:
        await until(lambda: listed(hub, key))
        old = worker.runtime.agent.session_id
        assert worker.runtime._ws is not None
        worker.runtime._ws.transport.abort()  # the network drops under the worker
        await until(lambda: worker.runtime.agent.session_id not in (None, old))
        await until(lambda: listed(hub, key))
        session = hub.registry.session_of(key.public_key)
        assert session is not None and session.session_id == worker.runtime.agent.session_id
        assert hub.connected() == 1


# --------------------------------------------------------------------------- challenges


async def test_challenge_and_reveal_through_the_hub_verify_exactly(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub, running_worker(url_of(hub), key) as worker:
        await until(lambda: listed(hub, key))
        job = dispatch("c-1", worker.device_uuid)
        commit = await hub.challenge(key.public_key, job, timeout=30)
        (gpu,) = commit.gpus
        assert commit.challenge_id == "c-1"
        assert gpu.verify(key.public_key, "c-1")
        roots = gpu.root_list()
        assert len(roots) == SMALL.stages

        samples = draw_sample(SMALL, SamplingParams(stages=2, rows=4, columns=4), random.Random(7))
        request = RevealRequest(
            challenge_id="c-1",
            openings=[
                OpeningRequest(gpu_uuid=gpu.gpu_uuid, stage=s.stage, rows=list(s.rows))
                for s in samples
            ],
        )
        reveal = await hub.reveal(key.public_key, request, timeout=30)
        openings = [
            CoreOpening(o.stage, o.row, o.values, tuple(o.proof_list())) for o in reveal.openings
        ]
        binding = Binding(
            miner_hotkey=MINER_HOTKEY, worker_pubkey=key.public_key, gpu_uuid=gpu.gpu_uuid
        )
        commitment = Commitment(binding, job.seed, SMALL, tuple(roots))
        assert verify_openings(commitment, samples, openings) == 2 * 4 * 4

        # a reveal of a challenge the worker never ran is the worker's failure, typed
        with pytest.raises(WorkerFailure, match="no committed challenge"):
            await hub.reveal(
                key.public_key, request.model_copy(update={"challenge_id": "nope"}), timeout=10
            )


async def test_unknown_workers_are_unavailable(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        with pytest.raises(PeerUnavailable, match="not connected") as info:
            await hub.challenge(os.urandom(32), dispatch("c-0", "GPU-x"), timeout=1)
        assert not info.value.leased


async def test_a_busy_worker_is_unavailable_without_a_second_dispatch(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub, running_worker(url_of(hub), key) as worker:
        await until(lambda: listed(hub, key))
        first = asyncio.create_task(
            hub.challenge(key.public_key, dispatch("c-slow", worker.device_uuid, SLOW), timeout=60)
        )
        await until(lambda: worker.runtime.agent.running is not None)
        with pytest.raises(PeerUnavailable) as info:
            await hub.challenge(key.public_key, dispatch("c-2", worker.device_uuid), timeout=5)
        assert not info.value.leased
        assert worker.runtime.agent.running is not None
        assert worker.runtime.agent.running.challenge_id == "c-slow"
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        session = hub.registry.session_of(key.public_key)
        assert session is not None and session.pending == {}


async def test_a_leased_worker_is_unavailable_until_the_lease_stops(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub, running_worker(url_of(hub), key) as worker:
        await until(lambda: listed(hub, key))
        start = LeaseStart(lease_id="L-1", gpu_uuids=[worker.device_uuid], ends_at=2**31)
        ack = await hub.lease_start(key.public_key, start, timeout=10)
        assert ack.accepted and ack.lease_id == "L-1"
        assert state_of(hub, key) == "leased"
        with pytest.raises(PeerUnavailable) as info:
            await hub.challenge(key.public_key, dispatch("c-3", worker.device_uuid), timeout=5)
        assert info.value.leased

        ack = await hub.lease_stop(
            key.public_key, LeaseStop(lease_id="L-1", reason="end"), timeout=10
        )
        assert ack.accepted
        assert state_of(hub, key) == "idle"
        commit = await hub.challenge(
            key.public_key, dispatch("c-4", worker.device_uuid), timeout=30
        )
        assert commit.gpus[0].verify(key.public_key, "c-4")


async def test_job_answers_are_matched_by_request_id_and_checked(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub:
        ws, welcome = await raw_register(hub, key)
        assert isinstance(welcome, Welcome)

        async def ask(answer: Callable[[JobStatusQuery], Message | None], timeout: float = 5.0):
            rid = "r-" + os.urandom(4).hex()
            query = JobStatusQuery(request_id=rid, lease_id="L1", job_id="j1")
            pending = asyncio.create_task(hub.job(key.public_key, query, timeout=timeout))
            received = await recv(ws)
            assert received == query
            reply = answer(query)
            if reply is not None:
                await ws.send(codec.encode(reply))
            return await pending

        running = JobInfo(job_id="j1", state="running")
        status = await ask(lambda q: JobStatus(request_id=q.request_id, lease_id="L1", job=running))
        assert isinstance(status, JobStatus) and status.job == running
        refused = await ask(
            lambda q: JobRefused(request_id=q.request_id, lease_id="L1", job_id="j1",
                                 reason="unknown_job")
        )  # fmt: skip
        assert isinstance(refused, JobRefused) and refused.reason == "unknown_job"
        wrong_job = JobInfo(job_id="other", state="running")
        with pytest.raises(MalformedMessage, match="another job"):
            await ask(lambda q: JobStatus(request_id=q.request_id, lease_id="L1", job=wrong_job))
        logs = JobLogSlice(stdout_offset=0, stdout=b"", stdout_total=0, stderr_offset=0,
                           stderr=b"", stderr_total=0, finished=False)  # fmt: skip
        with pytest.raises(MalformedMessage, match="unexpected job_logs"):
            await ask(lambda q: JobLogs(request_id=q.request_id, lease_id="L1", job_id="j1",
                                        logs=logs))  # fmt: skip
        with pytest.raises(WorkerFailure, match="disk full"):
            await ask(lambda q: ErrorReply(code="worker_failure", message="disk full",
                                           in_reply_to=q.request_id))  # fmt: skip
        with pytest.raises(PeerTimeout):
            await ask(lambda q: None, timeout=0.3)
        await ws.close()


async def test_a_worker_dropping_mid_challenge_is_a_link_error(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,)) as hub:
        ws, reply = await raw_register(hub, key)
        assert isinstance(reply, Welcome)
        waiting = asyncio.create_task(
            hub.challenge(key.public_key, dispatch("c-5", "GPU-raw"), timeout=10)
        )
        message = await recv(ws)
        assert isinstance(message, ChallengeDispatch) and message.challenge_id == "c-5"
        await ws.close()
        with pytest.raises(LinkError):
            await waiting
        await until(lambda: hub.connected() == 0)


async def test_silent_workers_are_lost_and_their_waiters_fail(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    async with running_hub(tmp_path, (key,), heartbeat_timeout_s=0.6) as hub:
        ws, reply = await raw_register(hub, key)
        assert isinstance(reply, Welcome)
        await ws.send(codec.encode(Heartbeat(seq=0, state="idle")))
        assert isinstance(await recv(ws), HeartbeatAck)
        assert listed(hub, key)
        waiting = asyncio.create_task(
            hub.challenge(key.public_key, dispatch("c-6", "GPU-raw"), timeout=10)
        )
        started = time.monotonic()
        with pytest.raises(LinkError, match="heartbeats"):
            await waiting
        assert time.monotonic() - started < 3
        assert not listed(hub, key) and hub.connected() == 0
        assert await close_code(ws) == CLOSE_HEARTBEAT_TIMEOUT


# --------------------------------------------------------------------------- hostile peers


async def test_garbage_oversize_and_floods_are_contained_while_an_honest_worker_works(
    tmp_path: Path,
) -> None:
    honest, rude, flooder, big = (WorkerKey.generate() for _ in range(4))
    async with (
        running_hub(
            tmp_path,
            (honest, rude, flooder, big),
            max_message_bytes=64 * 1024,
            messages_per_second=20.0,
            message_burst=10,
        ) as hub,
        running_worker(url_of(hub), honest) as worker,
    ):
        # garbage before registering: a typed error, then the door closes
        ws = await connect(url_of(hub), compression=None)
        assert isinstance(await recv(ws), Hello)
        await ws.send(b"\x00not a frame at all")
        reply = await recv(ws)
        assert isinstance(reply, ErrorReply) and reply.code == "malformed"
        assert await close_code(ws) == CLOSE_POLICY

        # garbage after registering: typed errors, and the session survives
        rude_ws, reply = await raw_register(hub, rude)
        assert isinstance(reply, Welcome)
        await rude_ws.send(b"BLP1 garbage")
        assert (await recv_error(rude_ws)).code == "malformed"
        await rude_ws.send('{"type": "heartbeat", "protocol_version": 99, "seq": 1}')
        assert (await recv_error(rude_ws)).code == "unsupported_version"
        await rude_ws.send(codec.encode(Heartbeat(seq=1, state="idle")))
        assert isinstance(await recv(rude_ws), HeartbeatAck)

        # an oversized frame: closed by the websocket layer (1009, message too big)
        big_ws, reply = await raw_register(hub, big)
        assert isinstance(reply, Welcome)
        await big_ws.send(b"\x00" * (65 * 1024))
        assert await close_code(big_ws) == 1009

        # a flood: rate-limited replies, then the connection is closed
        flood_ws, reply = await raw_register(hub, flooder)
        assert isinstance(reply, Welcome)
        beat = codec.encode(Heartbeat(seq=2, state="idle"))
        for _ in range(300):
            try:
                await flood_ws.send(beat)
            except ConnectionClosed:
                break
        codes: list[str] = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(5):
                async for data in flood_ws:
                    message = codec.decode(data, codec.MINER_TO_WORKER, max_bytes=1 << 20)
                    if isinstance(message, ErrorReply):
                        codes.append(message.code)
        assert "rate_limited" in codes
        assert flood_ws.close_code == CLOSE_POLICY
        assert not any(s.worker_pubkey == flooder.public_key.hex() for s in hub.summaries())

        # through all of it, the honest worker kept working
        await until(lambda: listed(hub, honest))
        commit = await hub.challenge(
            honest.public_key, dispatch("c-7", worker.device_uuid), timeout=30
        )
        assert commit.gpus[0].verify(honest.public_key, "c-7")
        assert hub.registry.session_of(rude.public_key) is not None
        await rude_ws.close()


async def test_a_wrong_path_is_not_found(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{hub.port}/elsewhere")
        assert info.value.response.status_code == 404


async def test_stop_closes_workers_going_away_and_fails_waiters(tmp_path: Path) -> None:
    key = WorkerKey.generate()
    clock = FakeClock()
    config = section(tmp_path, authorized_keys=[key.public_key.hex()])
    hub = WorkerHub(config, AuthorizedKeys.from_config(config), MINER_HOTKEY, clock=clock)
    await hub.start()
    port = hub.port
    try:
        ws, reply = await raw_register(hub, key)
        assert isinstance(reply, Welcome)
        waiting = asyncio.create_task(
            hub.challenge(key.public_key, dispatch("c-8", "GPU-raw"), timeout=30)
        )
        assert isinstance(await recv(ws), ChallengeDispatch)
    finally:
        await hub.stop()
    with pytest.raises(LinkError, match="shutting down"):
        await waiting
    assert await close_code(ws) == 1001
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/worker", open_timeout=2)
