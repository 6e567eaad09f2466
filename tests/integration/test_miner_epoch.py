"""``POST /epoch`` end to end on 127.0.0.1: ``MinerClient.epoch`` -> the miner's HTTP API (uvicorn)
-> the worker hub (websocket) -> real worker runtimes on the NumPy backend, one of them slowed;
and the client's handling of broken record streams, against scripted transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from byteleap.aliases import Clock
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import ProverRun
from byteleap.config.miner import MinerApiSection, WorkerServerSection
from byteleap.crypto import WorkerKey
from byteleap.errors import (
    ByteLeapError,
    Forbidden,
    FraudReason,
    LinkError,
    MalformedMessage,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    RateLimited,
    TransientError,
    VerificationFailed,
    WorkerFailure,
)
from byteleap.protocol import codec
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
    evidence_payload,
)
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.stream import STREAM_CONTENT_TYPE, RecordReader, encode_record
from byteleap.protocol.worker_link.challenges import ChallengeCommit, ChallengeDispatch, GpuCommit
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from neurons.common.miner_client import EpochArrival, MinerClient
from neurons.miner.api import create_app
from neurons.miner.auth import ValidatorGate
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.hub import WorkerHub
from tests.support.miner_api import Identities, api_error, metagraph, serving, signed, until
from tests.support.worker import running_worker
from workers.backends.base import Device, ShouldStop
from workers.backends.numpy_backend import NumpyBackend

PARAMS = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)
#: how much longer the slowed worker takes per challenge
SLOW_S = 1.0
MAX_BODY = 256 * 1024
GPU = "GPU-00000000-1111-2222-3333-444444444444"


class SlowBackend(NumpyBackend):
    """Honest, but starts every challenge :data:`SLOW_S` late."""

    def run(
        self,
        device: Device,
        binding: Binding,
        seed: bytes,
        params: ChallengeParams,
        *,
        clock: Clock,
        should_stop: ShouldStop | None = None,
    ) -> ProverRun:
        time.sleep(SLOW_S)
        return super().run(device, binding, seed, params, clock=clock, should_stop=should_stop)


@dataclass
class RecordingDirectory:
    """The hub, recording which challenges the API dispatched and which it cancelled."""

    hub: WorkerHub
    started: list[tuple[str, float]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.hub, name)

    async def challenge(
        self, worker_pubkey: bytes, dispatch: ChallengeDispatch, *, timeout: float
    ) -> ChallengeCommit:
        self.started.append((dispatch.challenge_id, time.monotonic()))
        try:
            return await self.hub.challenge(worker_pubkey, dispatch, timeout=timeout)
        except asyncio.CancelledError:
            self.cancelled.append(dispatch.challenge_id)
            raise


@dataclass
class Stack:
    url: str
    ids: Identities
    directory: RecordingDirectory
    #: worker name -> (key, its device's UUID)
    workers: dict[str, tuple[WorkerKey, str]]

    @property
    def hotkey(self) -> str:
        return self.ids.hotkeys["miner"]

    def client(self, who: str = "validator", **kw: Any) -> MinerClient:
        kw.setdefault("timeout", 10.0)
        return MinerClient(self.ids.wallets[who], self.hotkey, self.url, **kw)

    def challenge(self, name: str, cid: str | None = None, deadline_ms: int = 10_000) -> Any:
        if name in self.workers:
            key, uuid = self.workers[name]
        else:  # a worker this miner never saw
            key, uuid = WorkerKey.generate(), GPU
        return ChallengeRequest(
            challenge_id=cid or f"ch-{name}",
            worker_pubkey=key.public_key.hex(),
            gpu_uuids=[uuid],
            seed=os.urandom(32),
            params=PARAMS,
            deadline_ms=deadline_ms,
        )

    def epoch(self, *names: str, epoch_id: str = "ep-1", **kw: Any) -> EpochRequest:
        return EpochRequest(epoch_id=epoch_id, challenges=[self.challenge(n, **kw) for n in names])


@contextlib.asynccontextmanager
async def epoch_stack(
    ids: Identities,
    tmp_path: Path,
    *,
    names: Sequence[str] = ("fast1", "fast2", "slow", "leased"),
    signer: Callable[[bytes], bytes] | None = None,
) -> AsyncIterator[Stack]:
    """A miner (hub + HTTP API) with one real worker runtime per name; ``slow`` is slowed and
    ``leased`` holds a lease routed by the miner."""
    keys = {name: WorkerKey.generate() for name in names}
    hotkey = ids.hotkeys["miner"]
    section = WorkerServerSection(
        host="127.0.0.1",
        port=0,
        authorized_keys_file=tmp_path / "authorized_workers",
        authorized_keys=[key.public_key.hex() for key in keys.values()],
    )
    hub = WorkerHub(section, AuthorizedKeys.from_config(section), hotkey)
    directory = RecordingDirectory(hub)
    app = create_app(
        miner_hotkey=hotkey,
        signer=signer or ids.wallets["miner"].hotkey.sign,
        gate=ValidatorGate(hotkey, metagraph_source=lambda: metagraph(ids), min_stake=1000.0),
        workers=directory,
        config=MinerApiSection(max_body_bytes=MAX_BODY, request_timeout_s=10.0),
        rate_per_second=1000.0,
        rate_burst=1000,
    )
    await hub.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(serving(app))
            workers = {}
            for name, key in keys.items():
                backend = SlowBackend if name == "slow" else NumpyBackend
                worker = await stack.enter_async_context(
                    running_worker(f"ws://127.0.0.1:{hub.port}/worker", key, backend_type=backend)
                )
                workers[name] = (key, worker.device_uuid)
            listed = {key.public_key.hex() for key in keys.values()}
            await until(lambda: listed <= {s.worker_pubkey for s in hub.summaries()})
            result = Stack(url, ids, directory, workers)
            if "leased" in workers:
                key, uuid = workers["leased"]
                async with result.client() as client:
                    start = LeaseStart(
                        lease_id="L1", gpu_uuids=[uuid], ends_at=int(time.time()) + 3600
                    )
                    started = await client.forward(key.public_key.hex(), start)
                assert isinstance(started, LeaseAck) and started.accepted, started
            yield result
    finally:
        await hub.stop()


async def collect(
    client: MinerClient, request: EpochRequest, wait_s: float = 20.0, **kw: Any
) -> list[EpochArrival]:
    arrivals = [arrival async for arrival in client.epoch(request, wait_s=wait_s, **kw)]
    ids_seen = [arrival.challenge_id for arrival in arrivals]
    assert sorted(ids_seen) == sorted(c.challenge_id for c in request.challenges)  # each once
    return arrivals


def by_id(arrivals: list[EpochArrival]) -> dict[str, EpochArrival]:
    return {arrival.challenge_id: arrival for arrival in arrivals}


# --------------------------------------------------------------------------- the miner, for real


async def test_an_epoch_streams_one_record_per_challenge_as_each_finishes(
    ids: Identities, tmp_path: Path
) -> None:
    async with epoch_stack(ids, tmp_path) as stack, stack.client() as client:
        request = stack.epoch("slow", "fast1", "leased", "stranger", "fast2")
        sent = time.monotonic()
        arrivals = await collect(client, request)
        got = by_id(arrivals)
        # all dispatched at once, not one after another
        started = dict(stack.directory.started)
        assert set(started) == {"ch-slow", "ch-fast1", "ch-fast2", "ch-stranger"}  # not leased
        assert max(started.values()) - min(started.values()) < 0.5
        # the commits verify (the client checked the miner's signature) and are the workers'
        for name in ("fast1", "fast2", "slow"):
            result = got[f"ch-{name}"].result
            assert isinstance(result, ChallengeResponse), result
            key, uuid = stack.workers[name]
            assert [g.gpu_uuid for g in result.gpus] == [uuid]
            assert all(g.verify(key.public_key, f"ch-{name}") for g in result.gpus)
        leased = got["ch-leased"].result
        assert isinstance(leased, PeerUnavailable) and leased.leased
        stranger = got["ch-stranger"].result
        assert isinstance(stranger, PeerUnavailable) and not stranger.leased
        # first finished, first sent: the slowed worker's record comes last, clearly later
        assert arrivals[-1].challenge_id == "ch-slow"
        others = [a.at for a in arrivals[:-1]]
        assert all(sent <= at for at in others)
        assert got["ch-slow"].at - max(others) > SLOW_S / 2
        assert [a.at for a in arrivals] == sorted(a.at for a in arrivals)
        # the single-challenge route still works beside it
        single = await client.challenge(stack.challenge("fast1", "ch-single"))
        assert single.challenge_id == "ch-single"


async def test_wait_s_times_out_only_the_unanswered_challenges_and_the_miner_cancels_them(
    ids: Identities, tmp_path: Path
) -> None:
    async with epoch_stack(ids, tmp_path, names=("fast1", "slow")) as stack, stack.client() as c:
        arrivals = await collect(c, stack.epoch("fast1", "slow"), wait_s=SLOW_S / 2)
        got = by_id(arrivals)
        assert isinstance(got["ch-fast1"].result, ChallengeResponse)
        assert isinstance(got["ch-slow"].result, PeerTimeout)
        assert got["ch-slow"].at > got["ch-fast1"].at
        # the validator hung up: the miner stops waiting for the slow worker
        await until(lambda: "ch-slow" in stack.directory.cancelled, timeout=5)
        assert "ch-fast1" not in stack.directory.cancelled


async def test_a_validator_that_stops_reading_cancels_the_outstanding_challenges(
    ids: Identities, tmp_path: Path
) -> None:
    async with epoch_stack(ids, tmp_path, names=("fast1", "slow")) as stack, stack.client() as c:
        stream = c.epoch(stack.epoch("fast1", "slow"), wait_s=20)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            first = await anext(stream)
        assert first.challenge_id == "ch-fast1"
        await until(lambda: "ch-slow" in stack.directory.cancelled, timeout=5)


async def test_a_tampered_miner_signature_fails_that_challenge_only(
    ids: Identities, tmp_path: Path
) -> None:
    def tampering(payload: bytes) -> bytes:
        signature = bytearray(ids.wallets["miner"].hotkey.sign(payload))
        if b"ch-fast2" in payload:
            signature[0] ^= 1
        return bytes(signature)

    async with (
        epoch_stack(ids, tmp_path, names=("fast1", "fast2"), signer=tampering) as stack,
        stack.client() as client,
    ):
        got = by_id(await collect(client, stack.epoch("fast1", "fast2")))
    assert isinstance(got["ch-fast1"].result, ChallengeResponse)
    bad = got["ch-fast2"].result
    assert isinstance(bad, VerificationFailed) and bad.reason is FraudReason.BAD_SIGNATURE


async def test_errors_before_the_stream_are_api_errors(ids: Identities, tmp_path: Path) -> None:
    async with epoch_stack(ids, tmp_path, names=("fast1",)) as stack:
        body = codec.encode(stack.epoch("fast1"))
        async with httpx.AsyncClient(timeout=20) as http:
            # unsigned
            response = await http.post(stack.url + "/epoch", content=body)
            assert response.status_code == 401
            assert api_error(response).code == "unauthenticated"
            # signed and answered once; the same signed request again is a replay
            headers = signed(stack.ids, stack, "POST", "/epoch", body)
            first = await http.post(stack.url + "/epoch", content=body, headers=headers)
            assert first.status_code == 200
            assert first.headers["content-type"] == STREAM_CONTENT_TYPE
            reader = RecordReader(1 << 20, 1)
            (record,) = reader.feed(first.content)
            reader.finish()
            assert isinstance(record, ChallengeResponse) and record.challenge_id == "ch-fast1"
            again = await http.post(stack.url + "/epoch", content=body, headers=headers)
            assert again.status_code == 401
            assert api_error(again).message.startswith("ReplayedRequest")
            # a malformed body, and a body of another route's type
            for bad in (b"BLP1 nonsense", codec.encode(stack.challenge("fast1"))):
                headers = signed(stack.ids, stack, "POST", "/epoch", bad)
                response = await http.post(stack.url + "/epoch", content=bad, headers=headers)
                assert response.status_code == 400
                assert api_error(response).code == "malformed"
        assert [cid for cid, _ in stack.directory.started] == ["ch-fast1"]
        # through the client: a refused request is the same error for every challenge
        async with stack.client("outsider") as outsider:
            arrivals = await collect(outsider, stack.epoch("fast1", "stranger"))
        assert all(isinstance(a.result, Forbidden) for a in arrivals)
        assert arrivals[0].result is arrivals[1].result


# --------------------------------------------------------------------------- broken streams


def scripted(ids: Identities, respond: Callable[[httpx.Request], Any], **kw: Any) -> MinerClient:
    """A client whose transport answers with ``respond(request)`` (sync or async)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        answer = respond(request)
        response: httpx.Response = await answer if asyncio.iscoroutine(answer) else answer
        return response

    kw.setdefault("timeout", 5.0)
    return MinerClient(
        ids.wallets["validator"],
        ids.hotkeys["miner"],
        "http://miner.test",
        transport=httpx.MockTransport(handler),
        **kw,
    )


def three() -> EpochRequest:
    return EpochRequest(
        epoch_id="ep-x",
        challenges=[
            ChallengeRequest(
                challenge_id=f"c{i}",
                worker_pubkey=WorkerKey.generate().public_key.hex(),
                gpu_uuids=[GPU],
                seed=os.urandom(32),
                params=PARAMS,
                deadline_ms=1000,
            )
            for i in range(3)
        ],
    )


def answer_for(
    ids: Identities, req: ChallengeRequest, *, tamper: bool = False
) -> ChallengeResponse:
    """A commit for ``req``, countersigned by the miner's real hotkey for ``validator`` (the
    client checks only the miner's signature; the worker's is the verifier's business)."""
    gpus = [GpuCommit.create(WorkerKey.generate(), req.challenge_id, GPU, [bytes(32)] * 3)]
    payload = evidence_payload(
        challenge_id=req.challenge_id,
        validator_hotkey=ids.hotkeys["validator"],
        miner_hotkey=ids.hotkeys["miner"],
        worker_pubkey=req.worker_pubkey_bytes,
        seed=req.seed,
        params=req.params,
        gpus=gpus,
    )
    signature = bytearray(ids.wallets["miner"].hotkey.sign(payload))
    signature[0] ^= 1 if tamper else 0
    return ChallengeResponse(
        challenge_id=req.challenge_id,
        miner_hotkey=ids.hotkeys["miner"],
        worker_pubkey=req.worker_pubkey,
        gpus=gpus,
        miner_signature=bytes(signature),
    )


def streaming(*parts: bytes | BaseException | float) -> httpx.Response:
    """A 200 record stream: bytes are sent, a float is a pause, an exception breaks the link."""

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            if isinstance(part, BaseException):
                raise part
            if isinstance(part, float):
                await asyncio.sleep(part)
            else:
                yield part

    return httpx.Response(200, content=body(), headers={"content-type": STREAM_CONTENT_TYPE})


def failure(cid: str, code: str = "worker_failure", message: str = "out of memory") -> bytes:
    return encode_record(EpochFailure(challenge_id=cid, code=code, message=message))


def results(arrivals: list[EpochArrival]) -> dict[str, type[Any]]:
    return {a.challenge_id: type(a.result) for a in arrivals}


async def test_records_are_checked_and_timed_by_the_given_clock(ids: Identities) -> None:
    request = three()
    c0, _, c2 = request.challenges
    seen: list[httpx.Request] = []
    ticks = itertools.count(100.0)

    def respond(http_request: httpx.Request) -> httpx.Response:
        seen.append(http_request)
        whole = encode_record(answer_for(ids, c0)) + encode_record(answer_for(ids, c2, tamper=True))
        return streaming(
            failure("c1", "unavailable", "worker is leased"),
            0.01,
            whole[:7],  # records split anywhere, two of them in one chunk
            whole[7:],
        )

    async with scripted(ids, respond) as client:
        arrivals = await collect(client, request, clock=lambda: next(ticks))
    assert [a.challenge_id for a in arrivals] == ["c1", "c0", "c2"]
    assert [a.at for a in arrivals] == [100.0, 102.0, 102.0]  # clock read once per chunk
    leased = arrivals[0].result
    assert isinstance(leased, PeerUnavailable) and leased.leased
    assert isinstance(arrivals[1].result, ChallengeResponse)
    tampered = arrivals[2].result
    assert isinstance(tampered, VerificationFailed)
    assert tampered.reason is FraudReason.BAD_SIGNATURE
    (http_request,) = seen  # one signed request for the whole epoch
    assert http_request.url.path == "/epoch"
    assert http_request.headers["accept"] == STREAM_CONTENT_TYPE
    assert http_request.headers["x-bittensor-receiver"] == ids.hotkeys["miner"]
    decoded = codec.decode(http_request.content, codec.VALIDATOR_REQUEST, max_bytes=1 << 20)
    assert decoded == request


@pytest.mark.parametrize(
    ("parts", "first", "rest"),
    [
        # a record for a challenge that was not asked, then one answered twice
        ((failure("c0"), failure("zz")), WorkerFailure, MalformedMessage),
        ((failure("c0"), failure("c0")), WorkerFailure, MalformedMessage),
        # garbage, a zero length, a record of the wrong type
        ((failure("c0"), b"\x05\x00\x00\x00hello"), WorkerFailure, MalformedMessage),
        ((failure("c0"), bytes(4)), WorkerFailure, MalformedMessage),
        (
            (failure("c0"), encode_record(EpochFailure(challenge_id="c1", code="x", message=""))),
            WorkerFailure,
            MalformedMessage,
        ),
        # the stream ends early, or inside a record
        ((failure("c0"),), WorkerFailure, MalformedMessage),
        ((failure("c0"), failure("c1")[:9]), WorkerFailure, MalformedMessage),
        # the link breaks
        ((failure("c0"), httpx.ReadError("reset")), WorkerFailure, LinkError),
        ((failure("c0"), httpx.RemoteProtocolError("closed")), WorkerFailure, LinkError),
        # a record over the client's cap
        ((failure("c0"), failure("c1", message="x" * 900)), WorkerFailure, MessageTooLarge),
        # the miner stalls past wait_s
        ((failure("c0"), 5.0), WorkerFailure, PeerTimeout),
    ],
    ids=[
        "unknown_id",
        "answered_twice",
        "garbage",
        "zero_length",
        "unknown_code",
        "ends_early",
        "ends_inside_a_record",
        "read_error",
        "closed",
        "oversize_record",
        "stalled",
    ],
)
async def test_a_broken_stream_fails_every_unanswered_challenge_once(
    ids: Identities, parts: tuple[Any, ...], first: type[ByteLeapError], rest: type[ByteLeapError]
) -> None:
    async with scripted(ids, lambda _: streaming(*parts), max_response_bytes=600) as client:
        arrivals = await collect(client, three(), wait_s=0.5)
    assert arrivals[0].challenge_id == "c0" and isinstance(arrivals[0].result, first)
    assert all(isinstance(a.result, rest) for a in arrivals[1:]), results(arrivals)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (403, codec.encode(ApiError(code="forbidden", message="no permit")), Forbidden),
        (429, codec.encode(ApiError(code="rate_limited", message="slow down")), RateLimited),
        (502, b"<html>bad gateway</html>", LinkError),
        (500, b"", TransientError),
    ],
)
async def test_a_non_2xx_answer_fails_every_challenge(
    ids: Identities, status: int, body: bytes, error: type[Exception]
) -> None:
    async with scripted(ids, lambda _: httpx.Response(status, content=body)) as client:
        arrivals = await collect(client, three())
    assert all(isinstance(a.result, error) for a in arrivals)
    assert len({id(a.result) for a in arrivals}) == 1


async def test_a_cancelled_caller_stops_cleanly(ids: Identities) -> None:
    request = three()
    closed = asyncio.Event()

    async def respond(_: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            try:
                yield failure("c0")
                await asyncio.sleep(30)
            finally:
                closed.set()

        return httpx.Response(200, content=body())

    got: list[EpochArrival] = []

    async def consume(client: MinerClient) -> None:
        async for arrival in client.epoch(request, wait_s=30):
            got.append(arrival)

    async with scripted(ids, respond) as client:
        task = asyncio.create_task(consume(client))
        await until(lambda: len(got) == 1, timeout=5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 5)
    assert [a.challenge_id for a in got] == ["c0"]
