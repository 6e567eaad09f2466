"""The miner's validator API over real HTTP on 127.0.0.1, called through ``MinerClient``.

The server is uvicorn in a background thread (its own event loop) serving ``create_app`` with a
recording fake ``WorkerDirectory``; wallets are real bittensor wallets made offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from bittensor import http_auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byteleap.chain import MetagraphView, NeuronView
from byteleap.challenge.params import ChallengeParams
from byteleap.config.miner import MinerApiSection
from byteleap.crypto import WorkerKey
from byteleap.errors import (
    Forbidden,
    FraudReason,
    LinkError,
    MalformedMessage,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    RateLimited,
    Unauthenticated,
    VerificationFailed,
)
from byteleap.protocol import codec
from byteleap.protocol.miner_api.challenges import ChallengeRequest, OpeningsRequest
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.miner_api.forward import LeaseStatusRequest
from byteleap.protocol.miner_api.inventory import GpuSummary, WorkerSummary
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    GpuCommit,
    OpeningRequest,
    Reveal,
    RevealRequest,
    RowOpening,
)
from byteleap.protocol.worker_link.jobs import JobRefused, JobReply, JobRequest
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from neurons.common.miner_client import MinerClient
from neurons.miner.api import CHALLENGE_SLACK_S, CONTENT_TYPE, create_app
from neurons.miner.auth import ValidatorGate
from tests.support.miner_api import api_error, signed
from tests.wallets import make_wallet

PARAMS = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)
MAX_BODY = 64 * 1024
GPU = "GPU-00000000-1111-2222-3333-444444444444"
GPU2 = "GPU-00000000-1111-2222-3333-555555555555"


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identities:
    wallets: dict[str, Any]
    hotkeys: dict[str, str]


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    root = tmp_path_factory.mktemp("wallets")
    wallets, hotkeys = {}, {}
    for name in ("miner", "validator", "validator2", "outsider", "nopermit", "poor", "listed"):
        wallet, hotkey = make_wallet(root, name, seed=name.encode().ljust(32, b"\0"))
        wallets[name], hotkeys[name] = wallet, hotkey
    return Identities(wallets, hotkeys)


def metagraph_for(ids: Identities) -> MetagraphView:
    rows = [
        ("miner", 0.0, False),
        ("validator", 5000.0, True),
        ("validator2", 2000.0, True),
        ("nopermit", 9000.0, False),
        ("poor", 10.0, True),
    ]
    neurons = tuple(
        NeuronView(
            uid=uid, hotkey=ids.hotkeys[name], coldkey=f"cold{uid}", stake=s, validator_permit=p
        )
        for uid, (name, s, p) in enumerate(rows)
    )
    return MetagraphView(netuid=128, block=1000, neurons=neurons)


# --------------------------------------------------------------------------- the fake hub


@dataclass
class FakeWorkers:
    """A recording ``WorkerDirectory``: one known worker, scripted failures."""

    key: WorkerKey = field(default_factory=WorkerKey.generate)
    key2: WorkerKey = field(default_factory=WorkerKey.generate)
    calls: list[tuple[str, bytes, Any, float]] = field(default_factory=list)
    timeout_keys: set[bytes] = field(default_factory=set)
    slow_reveal_s: float = 0.0
    #: worker -> worker whose challenge must have started before this one may finish
    waits_for: dict[bytes, bytes] = field(default_factory=dict)
    started: set[bytes] = field(default_factory=set)

    def _known(self, pubkey: bytes) -> WorkerKey:
        for key in (self.key, self.key2):
            if key.public_key == pubkey:
                return key
        raise PeerUnavailable("worker is not connected")

    def summaries(self) -> list[WorkerSummary]:
        return [
            WorkerSummary(
                worker_pubkey=key.public_key.hex(),
                state="idle",
                gpus=[GpuSummary(uuid=GPU, name="NVIDIA H100", memory_total_mib=81559)],
                last_heartbeat=1_700_000_000.0,
            )
            for key in (self.key, self.key2)
        ]

    def connected(self) -> int:
        return 2

    async def challenge(
        self, worker_pubkey: bytes, dispatch: ChallengeDispatch, *, timeout: float
    ) -> ChallengeCommit:
        self.calls.append(("challenge", worker_pubkey, dispatch, timeout))
        key = self._known(worker_pubkey)
        if worker_pubkey in self.timeout_keys:
            raise PeerTimeout("worker did not commit before its deadline")
        self.started.add(worker_pubkey)
        other = self.waits_for.get(worker_pubkey)
        if other is not None:
            for _ in range(300):
                if other in self.started:
                    break
                await asyncio.sleep(0.01)
            else:
                raise PeerTimeout("the other challenge never started: requests are serialized")
        roots = [os.urandom(32) for _ in range(dispatch.params.stages)]
        gpus = [
            GpuCommit.create(key, dispatch.challenge_id, uuid, roots, [1.0] * len(roots))
            for uuid in dispatch.gpu_uuids
        ]
        return ChallengeCommit(challenge_id=dispatch.challenge_id, gpus=gpus)

    async def reveal(
        self, worker_pubkey: bytes, request: RevealRequest, *, timeout: float
    ) -> Reveal:
        self.calls.append(("reveal", worker_pubkey, request, timeout))
        self._known(worker_pubkey)
        if self.slow_reveal_s:
            await asyncio.sleep(self.slow_reveal_s)
        openings = [
            RowOpening(
                gpu_uuid=o.gpu_uuid,
                stage=o.stage,
                row=row,
                values=bytes(4 * PARAMS.n),
                proof=bytes(32 * PARAMS.depth),
            )
            for o in request.openings
            for row in o.rows
        ]
        return Reveal(challenge_id=request.challenge_id, openings=openings)

    async def lease_start(
        self, worker_pubkey: bytes, start: LeaseStart, *, timeout: float
    ) -> LeaseAck:
        self.calls.append(("lease_start", worker_pubkey, start, timeout))
        self._known(worker_pubkey)
        return LeaseAck(lease_id=start.lease_id, accepted=True)

    async def lease_stop(
        self, worker_pubkey: bytes, stop: LeaseStop, *, timeout: float
    ) -> LeaseAck:
        self.calls.append(("lease_stop", worker_pubkey, stop, timeout))
        self._known(worker_pubkey)
        return LeaseAck(lease_id=stop.lease_id, accepted=True)

    async def job(self, worker_pubkey: bytes, request: JobRequest, *, timeout: float) -> JobReply:
        self.calls.append(("job", worker_pubkey, request, timeout))
        self._known(worker_pubkey)
        return JobRefused(
            request_id=request.request_id,
            lease_id=request.lease_id,
            job_id=request.job_id,
            reason="runner_disabled",
        )


# --------------------------------------------------------------------------- the server


class ThreadedServer:
    """uvicorn on 127.0.0.1 with a random port, in a daemon thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http="h11",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class Miner:
    url: str
    fake: FakeWorkers
    metagraph: dict[str, MetagraphView | None]
    hotkey: str


@pytest.fixture
def start_miner(ids: Identities) -> Iterator[Callable[..., Miner]]:
    with contextlib.ExitStack() as stack:

        def start(*, signer: Callable[[bytes], bytes] | None = None, **app_kwargs: Any) -> Miner:
            fake = FakeWorkers()
            holder: dict[str, MetagraphView | None] = {"mg": metagraph_for(ids)}
            config = MinerApiSection(
                max_body_bytes=MAX_BODY,
                request_timeout_s=3.0,
                min_validator_stake=1000.0,
                allowed_validators=[ids.hotkeys["listed"]],
            )
            gate = ValidatorGate(
                ids.hotkeys["miner"],
                metagraph_source=lambda: holder["mg"],
                min_stake=config.min_validator_stake,
                allowed=set(config.allowed_validators),
            )
            app = create_app(
                miner_hotkey=ids.hotkeys["miner"],
                signer=signer or ids.wallets["miner"].hotkey.sign,
                gate=gate,
                workers=fake,
                config=config,
                version="0.1.0",
                **app_kwargs,
            )
            url = stack.enter_context(ThreadedServer(app))
            return Miner(url, fake, holder, ids.hotkeys["miner"])

        yield start


def client_for(ids: Identities, miner: Miner, who: str = "validator", **kw: Any) -> MinerClient:
    kw.setdefault("timeout", 5.0)
    return MinerClient(ids.wallets[who], miner.hotkey, miner.url, **kw)


def challenge_request(
    key: WorkerKey, cid: str = "ch-1", deadline_ms: int = 2000
) -> ChallengeRequest:
    return ChallengeRequest(
        challenge_id=cid,
        worker_pubkey=key.public_key.hex(),
        gpu_uuids=[GPU, GPU2],
        seed=os.urandom(32),
        params=PARAMS,
        deadline_ms=deadline_ms,
    )


def status_request(lease_id: str = "lease-x") -> bytes:
    return codec.encode(LeaseStatusRequest(lease_id=lease_id))


# --------------------------------------------------------------------------- happy paths


async def test_health_is_public_and_minimal(start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    async with httpx.AsyncClient() as http:
        response = await http.get(miner.url + "/health")  # unsigned
    assert response.status_code == 200
    health = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
    assert health.type == "health_response"
    assert health.miner_hotkey == miner.hotkey
    assert health.status == "ok" and health.workers_connected == 2
    assert health.version == "0.1.0"


async def test_inventory_and_health_through_client(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    async with client_for(ids, miner) as client:
        inventory = await client.inventory()
        health = await client.health()
    assert inventory.miner_hotkey == miner.hotkey
    assert [w.worker_pubkey for w in inventory.workers] == [
        miner.fake.key.public_key.hex(),
        miner.fake.key2.public_key.hex(),
    ]
    assert health.uptime_s >= 0


async def test_challenge_relays_commit_signed_by_the_miner(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    request = challenge_request(miner.fake.key, deadline_ms=1500)
    async with client_for(ids, miner) as client:
        response = await client.challenge(request)  # verifies miner_signature itself
    assert response.challenge_id == "ch-1"
    assert [g.gpu_uuid for g in response.gpus] == [GPU, GPU2]
    assert all(g.verify(miner.fake.key.public_key, "ch-1") for g in response.gpus)
    name, pubkey, dispatch, timeout = miner.fake.calls[-1]
    assert name == "challenge" and pubkey == miner.fake.key.public_key
    assert dispatch.seed == request.seed and dispatch.params == PARAMS
    assert dispatch.deadline_ms == 1500
    assert timeout == pytest.approx(1.5 + CHALLENGE_SLACK_S)
    # the signature binds the validator that asked: it does not verify for another one
    async with client_for(ids, miner, who="validator2") as other:
        with pytest.raises(VerificationFailed) as info:
            other.check_challenge_response(request, response)
    assert info.value.reason is FraudReason.BAD_SIGNATURE


async def test_tampered_evidence_signature_raises(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    request = challenge_request(miner.fake.key)
    async with client_for(ids, miner) as client:
        response = await client.challenge(request)
        client.check_challenge_response(request, response)  # genuine: passes
        forged = bytearray(response.miner_signature)
        forged[0] ^= 1
        with pytest.raises(VerificationFailed) as info:
            client.check_challenge_response(
                request, response.model_copy(update={"miner_signature": bytes(forged)})
            )
    assert info.value.reason is FraudReason.BAD_SIGNATURE


async def test_miner_signing_with_another_key_is_rejected_by_the_client(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner(signer=ids.wallets["outsider"].hotkey.sign)
    async with client_for(ids, miner) as client:
        with pytest.raises(VerificationFailed) as info:
            await client.challenge(challenge_request(miner.fake.key))
    assert info.value.reason is FraudReason.BAD_SIGNATURE


async def test_reveal_relays_openings(ids: Identities, start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    request = OpeningsRequest(
        challenge_id="ch-1",
        worker_pubkey=miner.fake.key.public_key.hex(),
        openings=[OpeningRequest(gpu_uuid=GPU, stage=1, rows=[3, 9])],
    )
    async with client_for(ids, miner) as client:
        response = await client.reveal(request)
    assert [(o.gpu_uuid, o.stage, o.row) for o in response.openings] == [(GPU, 1, 3), (GPU, 1, 9)]
    assert len(response.openings[0].values) == 4 * PARAMS.n
    name, _, forwarded, timeout = miner.fake.calls[-1]
    assert name == "reveal" and forwarded.challenge_id == "ch-1" and timeout == 3.0


async def test_lease_lifecycle(ids: Identities, start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    worker = miner.fake.key.public_key.hex()
    ends_at = int(time.time()) + 3600
    async with client_for(ids, miner) as client, client_for(ids, miner, "validator2") as other:
        start = LeaseStart(lease_id="L1", gpu_uuids=[GPU], ends_at=ends_at)
        started = await client.forward(worker, start)
        assert isinstance(started, LeaseAck) and started.accepted
        status = await client.lease_status(LeaseStatusRequest(lease_id="L1"))
        assert (status.state, status.worker_pubkey, status.gpu_uuids, status.ends_at) == (
            "active",
            worker,
            [GPU],
            ends_at,
        )
        # a leased worker is never challenged
        with pytest.raises(PeerUnavailable) as info:
            await client.challenge(challenge_request(miner.fake.key))
        assert info.value.leased
        # only the validator that sold the lease may stop it
        with pytest.raises(Forbidden):
            await other.forward(worker, LeaseStop(lease_id="L1", reason="not mine"))
        stopped = await client.forward(worker, LeaseStop(lease_id="L1", reason="renter done"))
        assert isinstance(stopped, LeaseAck) and stopped.accepted
        assert (await other.lease_status(LeaseStatusRequest(lease_id="L1"))).state == "ended"
        unknown = await client.lease_status(LeaseStatusRequest(lease_id="nope"))
        assert unknown.state == "unknown"
    names = [c[0] for c in miner.fake.calls]
    assert names == ["lease_start", "lease_stop"]
    assert miner.fake.calls[1][2].reason == "renter done"


@pytest.mark.parametrize(
    "path",
    ["/lease/start", "/lease/stop", "/lease/job/submit", "/lease/job/status", "/lease/job/cancel",
     "/lease/job/logs", "/lease/job/result", "/lease/job/artifact"],
)  # fmt: skip
async def test_the_per_message_lease_routes_are_gone(
    ids: Identities, start_miner: Callable[..., Miner], path: str
) -> None:
    """Leases and jobs go through ``POST /forward`` only (docs/design-changes.md)."""
    miner = start_miner()
    body = status_request()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            miner.url + path, content=body, headers=signed(ids, miner, "POST", path, body)
        )
    assert response.status_code == 404
    assert miner.fake.calls == []


async def test_concurrent_validators_reach_different_workers(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    a, b = miner.fake.key.public_key, miner.fake.key2.public_key
    # A's challenge can only finish once B's has started: a global lock would time A out
    miner.fake.waits_for[a] = b
    async with client_for(ids, miner) as one, client_for(ids, miner, "validator2") as two:
        first, second = await asyncio.gather(
            one.challenge(challenge_request(miner.fake.key, "c-a")),
            two.challenge(challenge_request(miner.fake.key2, "c-b")),
        )
    assert (first.challenge_id, second.challenge_id) == ("c-a", "c-b")


# --------------------------------------------------------------------------- authentication


async def test_unsigned_request_is_401(start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    async with httpx.AsyncClient() as http:
        response = await http.post(miner.url + "/lease/status", content=status_request())
    assert response.status_code == 401
    error = api_error(response)
    assert error.code == "unauthenticated" and "X-Bittensor-Signature" in error.message


@pytest.mark.parametrize(
    "case", ["wrong_receiver", "stale", "bad_signature", "wrong_path", "garbage_signature"]
)
async def test_bad_authentication_is_401(
    ids: Identities, start_miner: Callable[..., Miner], case: str
) -> None:
    miner = start_miner()
    body = status_request()
    path = "/lease/status"
    if case == "wrong_receiver":
        headers = signed(ids, miner, "POST", path, body, receiver_ss58=ids.hotkeys["outsider"])
    elif case == "stale":
        headers = signed(ids, miner, "POST", path, body, nonce_ns=time.time_ns() - 60 * 10**9)
    elif case == "bad_signature":
        headers = signed(ids, miner, "POST", path, body)
        body = status_request("lease-tampered")  # tamper with the body after signing
    elif case == "wrong_path":
        headers = signed(ids, miner, "POST", "/lease/receipt", body)
    else:
        headers = signed(ids, miner, "POST", path, body)
        headers[http_auth.HEADER_SIGNATURE] = "0x" + "ab" * 64
    async with httpx.AsyncClient() as http:
        response = await http.post(miner.url + path, content=body, headers=headers)
    assert response.status_code == 401
    error = api_error(response)
    assert error.code == "unauthenticated"
    assert headers[http_auth.HEADER_SIGNATURE][2:] not in error.message
    expected = {
        "wrong_receiver": "WrongReceiver",
        "stale": "StaleRequest",
        "bad_signature": "BadSignature",
        "wrong_path": "BadSignature",
        "garbage_signature": "BadSignature",
    }[case]
    assert error.message.startswith(expected)


async def test_replayed_request_is_401(ids: Identities, start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    body = status_request()
    headers = signed(ids, miner, "POST", "/lease/status", body)
    async with httpx.AsyncClient() as http:
        first = await http.post(miner.url + "/lease/status", content=body, headers=headers)
        second = await http.post(miner.url + "/lease/status", content=body, headers=headers)
    assert first.status_code == 200
    assert second.status_code == 401
    assert api_error(second).message.startswith("ReplayedRequest")


async def test_query_string_is_part_of_the_signed_target(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    headers = signed(ids, miner, "GET", "/inventory?x=1")
    async with httpx.AsyncClient() as http:
        ok = await http.get(miner.url + "/inventory?x=1", headers=headers)
        headers = signed(ids, miner, "GET", "/inventory")
        moved = await http.get(miner.url + "/inventory?x=1", headers=headers)
    assert ok.status_code == 200
    assert moved.status_code == 401


async def test_client_maps_401_to_unauthenticated(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    # the client believes the miner has another hotkey: requests are bound to the wrong receiver
    client = MinerClient(ids.wallets["validator"], ids.hotkeys["outsider"], miner.url, timeout=5)
    async with client:
        with pytest.raises(Unauthenticated):
            await client.inventory()


# --------------------------------------------------------------------------- authorization


@pytest.mark.parametrize(
    ("who", "fragment"),
    [
        ("outsider", "unknown hotkey"),
        ("nopermit", "no validator permit"),
        ("poor", "below the minimum 1000"),
        ("miner", "no validator permit"),
    ],
)
async def test_not_permitted_is_403(
    ids: Identities, start_miner: Callable[..., Miner], who: str, fragment: str
) -> None:
    miner = start_miner()
    headers = signed(ids, miner, "GET", "/inventory", who=who)
    async with httpx.AsyncClient() as http:
        response = await http.get(miner.url + "/inventory", headers=headers)
    assert response.status_code == 403
    error = api_error(response)
    assert error.code == "forbidden" and fragment in error.message
    async with client_for(ids, miner, who) as client:
        with pytest.raises(Forbidden):
            await client.inventory()


async def test_allow_listed_hotkey_without_permit_is_served(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    async with client_for(ids, miner, "listed") as client:
        inventory = await client.inventory()
    assert len(inventory.workers) == 2


async def test_metagraph_not_synced_is_403_except_allow_list(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    miner.metagraph["mg"] = None
    async with client_for(ids, miner) as client, client_for(ids, miner, "listed") as listed:
        with pytest.raises(Forbidden, match="not synced"):
            await client.inventory()
        assert len((await listed.inventory()).workers) == 2


async def test_stake_change_is_followed_without_restart(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    async with client_for(ids, miner, "poor") as client:
        with pytest.raises(Forbidden):
            await client.inventory()
        neurons = tuple(
            NeuronView(n.uid, n.hotkey, n.coldkey, 1000.0, n.validator_permit)
            if n.hotkey == ids.hotkeys["poor"]
            else n
            for n in metagraph_for(ids).neurons
        )
        miner.metagraph["mg"] = MetagraphView(netuid=128, block=1001, neurons=neurons)
        assert len((await client.inventory()).workers) == 2


# --------------------------------------------------------------------------- bodies and limits


async def test_oversized_body_is_413(ids: Identities, start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    body = b"\0" * (MAX_BODY + 1)
    headers = signed(ids, miner, "POST", "/challenge", body)
    async with httpx.AsyncClient() as http:
        response = await http.post(miner.url + "/challenge", content=body, headers=headers)
    assert response.status_code == 413
    assert api_error(response).code == "too_large"


async def test_oversized_chunked_body_is_413(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    body = b"\0" * (MAX_BODY + 1)
    headers = signed(ids, miner, "POST", "/challenge", body)

    async def chunks() -> Any:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    async with httpx.AsyncClient() as http:
        response = await http.post(miner.url + "/challenge", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert api_error(response).code == "too_large"


@pytest.mark.parametrize(
    "body",
    [
        b"not a frame",
        b"",
        codec.encode(LeaseStatusRequest(lease_id="wrong-type-for-this-route")),
    ],
)
async def test_malformed_body_is_400(
    ids: Identities, start_miner: Callable[..., Miner], body: bytes
) -> None:
    miner = start_miner()
    headers = signed(ids, miner, "POST", "/challenge", body)
    async with httpx.AsyncClient() as http:
        response = await http.post(miner.url + "/challenge", content=body, headers=headers)
    assert response.status_code == 400
    assert api_error(response).code == "malformed"
    assert miner.fake.calls == []


async def test_unknown_route_is_a_typed_404(start_miner: Callable[..., Miner]) -> None:
    miner = start_miner()
    async with httpx.AsyncClient() as http:
        response = await http.get(miner.url + "/nope")
    assert response.status_code == 404
    assert api_error(response).code == "not_found"


# --------------------------------------------------------------------------- worker failures


async def test_unknown_worker_is_typed_unavailable(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    request = challenge_request(WorkerKey.generate())
    headers = signed(ids, miner, "POST", "/challenge", codec.encode(request))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            miner.url + "/challenge", content=codec.encode(request), headers=headers
        )
    assert response.status_code == 409
    assert api_error(response).code == "unavailable"
    async with client_for(ids, miner) as client:
        with pytest.raises(PeerUnavailable) as info:
            await client.challenge(challenge_request(WorkerKey.generate(), "c2"))
    assert not info.value.leased


async def test_worker_timeout_is_504_and_peer_timeout(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    miner.fake.timeout_keys.add(miner.fake.key.public_key)
    request = challenge_request(miner.fake.key)
    headers = signed(ids, miner, "POST", "/challenge", codec.encode(request))
    async with httpx.AsyncClient() as http:
        response = await http.post(
            miner.url + "/challenge", content=codec.encode(request), headers=headers
        )
    assert response.status_code == 504
    assert api_error(response).code == "timeout"
    async with client_for(ids, miner) as client:
        with pytest.raises(PeerTimeout):
            await client.challenge(challenge_request(miner.fake.key, "c3"))


async def test_miner_slower_than_client_timeout_is_peer_timeout(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    miner.fake.slow_reveal_s = 0.8
    request = OpeningsRequest(
        challenge_id="ch-1",
        worker_pubkey=miner.fake.key.public_key.hex(),
        openings=[OpeningRequest(gpu_uuid=GPU, stage=0, rows=[0])],
    )
    async with client_for(ids, miner, timeout=0.2) as client:
        with pytest.raises(PeerTimeout):
            await client.reveal(request)


async def test_server_down_is_link_error(ids: Identities) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = MinerClient(ids.wallets["validator"], ids.hotkeys["miner"], f"http://127.0.0.1:{port}")
    async with client:
        with pytest.raises(LinkError):
            await client.inventory()


async def test_rate_limit_per_validator(ids: Identities, start_miner: Callable[..., Miner]) -> None:
    miner = start_miner(rate_per_second=0.01, rate_burst=2)
    async with client_for(ids, miner) as greedy, client_for(ids, miner, "validator2") as other:
        await greedy.inventory()
        await greedy.inventory()
        with pytest.raises(RateLimited):
            await greedy.inventory()
        # the other validator has its own bucket
        assert len((await other.inventory()).workers) == 2


async def test_oversized_response_is_refused_by_the_client(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner()
    async with client_for(ids, miner, max_response_bytes=64) as client:
        with pytest.raises(MessageTooLarge):
            await client.inventory()


async def test_non_frame_error_body_is_mapped_by_status(ids: Identities) -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    client = MinerClient(
        ids.wallets["validator"],
        ids.hotkeys["miner"],
        "http://miner.invalid",
        transport=httpx.MockTransport(proxy),
    )
    async with client:
        with pytest.raises(LinkError):
            await client.inventory()

    def wrong_type(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=status_request())

    client = MinerClient(
        ids.wallets["validator"],
        ids.hotkeys["miner"],
        "http://miner.invalid",
        transport=httpx.MockTransport(wrong_type),
    )
    async with client:
        with pytest.raises(MalformedMessage):
            await client.inventory()


# --------------------------------------------------------------------------- fuzzing


def _mutated_frame(data: st.DataObject) -> bytes:
    base = codec.encode(
        ChallengeRequest(
            challenge_id="fz",
            worker_pubkey=bytes(32).hex(),
            gpu_uuids=[GPU],
            seed=bytes(32),
            params=PARAMS,
            deadline_ms=10,
        )
    )
    position = data.draw(st.integers(0, len(base) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=8))
    return base[:position] + replacement + base[position + len(replacement) :]


def test_signed_random_bodies_never_produce_500(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner(rate_per_second=1000.0, rate_burst=10_000)
    paths = [
        "/challenge",
        "/reveal",
        "/forward",
        "/lease/status",
        "/lease/receipt",
    ]
    seen: set[int] = set()

    with httpx.Client(base_url=miner.url) as http:

        @settings(
            max_examples=80,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(path=st.sampled_from(paths), data=st.data())
        def check(path: str, data: st.DataObject) -> None:
            if data.draw(st.booleans()):
                body = _mutated_frame(data)
            else:
                body = data.draw(st.binary(max_size=512))
            headers = signed(ids, miner, "POST", path, body)
            response = http.post(path, content=body, headers=headers)
            seen.add(response.status_code)
            assert response.status_code < 500 or response.status_code in (502, 503, 504)
            decoded = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
            if response.status_code != 200:
                assert isinstance(decoded, ApiError) and decoded.code != "internal"

        check()
    assert 400 in seen


def test_signed_random_receipt_queries_never_produce_500(
    ids: Identities, start_miner: Callable[..., Miner]
) -> None:
    miner = start_miner(rate_per_second=1000.0, rate_burst=10_000)
    seen: set[int] = set()
    query_text = st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="#"),
        max_size=40,
    )

    with httpx.Client(base_url=miner.url) as http:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(query=query_text)
        def check(query: str) -> None:
            url = httpx.URL(miner.url + (f"/receipts?{query}" if query else "/receipts"))
            target = url.raw_path.decode("ascii")  # as sent, percent-encoded: what is signed
            headers = signed(ids, miner, "GET", target)
            response = http.get(url, headers=headers)
            seen.add(response.status_code)
            assert response.status_code in (200, 400), (target, response.status_code)
            decoded = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
            if response.status_code == 200:
                assert decoded.type == "receipt_page" and decoded.receipts == []
            else:
                assert isinstance(decoded, ApiError) and decoded.code == "malformed"

        check()
    assert seen == {200, 400}


def test_content_type_constant_is_shared() -> None:
    from neurons.common.miner_client import CONTENT_TYPE as CLIENT_TYPE

    assert CLIENT_TYPE == CONTENT_TYPE == "application/x-byteleap-frame"
