"""A real worker runtime against a real websocket server on 127.0.0.1 that plays the miner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import serve

from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow as CoreOpening
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.protocol import codec
from byteleap.protocol.handshake import verify_register
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    OpeningRequest,
    Reveal,
    RevealRequest,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from byteleap.protocol.worker_link.session import ErrorReply, Heartbeat, Unavailable
from tests.support.fake_miner import FakeMiner, recv
from tests.support.worker import MINER_HOTKEY, running_worker

SMALL = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)
SLOW = ChallengeParams(m=512, n=512, k=512, v=15, stages=400)


@pytest.fixture
async def miner() -> AsyncIterator[FakeMiner]:
    fake = FakeMiner()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.server = server
        yield fake


def dispatch(cid: str, uuid: str, params: ChallengeParams = SMALL) -> ChallengeDispatch:
    return ChallengeDispatch(
        challenge_id=cid, seed=os.urandom(32), params=params, gpu_uuids=[uuid],
        deadline_ms=60_000,
    )  # fmt: skip


async def test_handshake_heartbeat_challenge_and_exact_reveal(miner: FakeMiner) -> None:
    async with running_worker(miner.url) as worker:
        ws, register = await miner.accept()
        assert register.worker_pubkey == worker.key.public_key
        assert worker.device_uuid in {gpu.uuid for gpu in register.inventory.gpus}
        beat = await recv(ws, Heartbeat)
        assert beat.state == "idle"

        job = dispatch("c-1", worker.device_uuid)
        await ws.send(codec.encode(job))
        commit = await recv(ws, ChallengeCommit)
        (gpu,) = commit.gpus
        assert gpu.verify(worker.key.public_key, "c-1")
        assert len(gpu.root_list()) == SMALL.stages

        samples = draw_sample(SMALL, SamplingParams(stages=2, rows=4, columns=4), random.Random(1))
        request = RevealRequest(
            challenge_id="c-1",
            openings=[
                OpeningRequest(gpu_uuid=gpu.gpu_uuid, stage=s.stage, rows=list(s.rows))
                for s in samples
            ],
        )
        await ws.send(codec.encode(request))
        reveal = await recv(ws, Reveal)
        binding = Binding(
            miner_hotkey=MINER_HOTKEY, worker_pubkey=worker.key.public_key, gpu_uuid=gpu.gpu_uuid
        )
        openings = [
            CoreOpening(
                o.stage,
                o.row,
                o.values,
                tuple(o.proof[i : i + 32] for i in range(0, len(o.proof), 32)),
            )
            for o in reveal.openings
        ]
        commitment = Commitment(binding, job.seed, SMALL, tuple(gpu.root_list()))
        assert verify_openings(commitment, samples, openings) == 2 * 4 * 4


async def test_malformed_and_unknown_requests_get_typed_errors_and_the_link_survives(
    miner: FakeMiner,
) -> None:
    async with running_worker(miner.url) as worker:
        ws, _ = await miner.accept()
        await ws.send(b"BLP1 definitely not a frame")
        error = await recv(ws, ErrorReply)
        assert error.code == "malformed"
        await ws.send(codec.encode(dispatch("c-x", "GPU-not-mine")))
        error = await recv(ws, ErrorReply)
        assert error.in_reply_to == "c-x"
        await ws.send(codec.encode(dispatch("c-2", worker.device_uuid)))
        commit = await recv(ws, ChallengeCommit)
        assert commit.challenge_id == "c-2"


async def test_a_replayed_registration_does_not_verify_on_a_new_connection(
    miner: FakeMiner,
) -> None:
    async with running_worker(miner.url):
        ws, first = await miner.accept()
        await ws.close()
        _, second = await miner.accept()
        assert not verify_register(miner.hellos[1], first)
        assert verify_register(miner.hellos[1], second)


async def test_disconnect_mid_challenge_then_the_commit_arrives_after_reconnect(
    miner: FakeMiner,
) -> None:
    # long enough (about a second) that a busy heartbeat (every 0.2 s) is seen before the commit
    params = ChallengeParams(m=256, n=256, k=256, v=15, stages=1200)
    async with running_worker(miner.url) as worker:
        ws, _ = await miner.accept()
        await ws.send(codec.encode(dispatch("c-3", worker.device_uuid, params)))
        deadline = time.monotonic() + 30
        while (await recv(ws, Heartbeat)).state != "busy":
            assert time.monotonic() < deadline, "no busy heartbeat: the challenge ended too soon"
        await ws.close()
        assert worker.runtime.agent.running is not None  # still computing while disconnected
        ws2, _ = await miner.accept()
        commit = await recv(ws2, ChallengeCommit, timeout=60)
        assert commit.challenge_id == "c-3"
        assert commit.gpus[0].verify(worker.key.public_key, "c-3")
        assert worker.runtime.metrics.reconnects._value.get() >= 1


async def test_graceful_shutdown_abandons_the_running_challenge(miner: FakeMiner) -> None:
    async with running_worker(miner.url) as worker:
        ws, _ = await miner.accept()
        await ws.send(codec.encode(dispatch("c-4", worker.device_uuid, SLOW)))
        beat = await recv(ws, Heartbeat)
        while beat.state != "busy":
            beat = await recv(ws, Heartbeat)
        started = time.monotonic()
        worker.runtime.request_exit()
        await asyncio.wait_for(worker.task, 30)
        assert time.monotonic() - started < 10  # far less than the 400 stages would take
        assert worker.runtime.executor._runs == {}  # nothing was committed


async def test_the_worker_keeps_retrying_until_a_miner_appears() -> None:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with running_worker(f"ws://127.0.0.1:{port}/worker") as worker:
        await asyncio.sleep(0.6)
        assert worker.runtime.metrics.reconnects._value.get() >= 2
        fake = FakeMiner()
        async with serve(fake.handler, "127.0.0.1", port) as server:
            fake.server = server
            _, register = await fake.accept()
            assert register.worker_pubkey == worker.key.public_key


async def test_a_leased_worker_answers_unavailable(miner: FakeMiner) -> None:
    async with running_worker(miner.url) as worker:
        ws, _ = await miner.accept()
        await ws.send(
            codec.encode(LeaseStart(lease_id="L", gpu_uuids=[worker.device_uuid], ends_at=2**31))
        )
        assert (await recv(ws, LeaseAck)).accepted
        await ws.send(codec.encode(dispatch("c-5", worker.device_uuid)))
        reply = await recv(ws, Unavailable)
        assert reply.leased and reply.challenge_id == "c-5"
