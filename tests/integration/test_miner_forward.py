"""``POST /forward``: one envelope for everything that goes to the worker of a lease.

The miner checks caller, owner and worker once (its LeaseTable decides) and relays the
worker-link message unchanged; the bad-input checks of the per-message routes hold here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from bittensor import http_auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byteleap.chain import MetagraphView, NeuronView
from byteleap.config.miner import MinerApiSection
from byteleap.crypto import WorkerKey
from byteleap.errors import Forbidden
from byteleap.protocol import codec
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.miner_api.forward import ForwardRequest, LeaseStatusRequest
from byteleap.protocol.miner_api.inventory import WorkerSummary
from byteleap.protocol.worker_link.jobs import (
    JobAccepted,
    JobInfo,
    JobRefused,
    JobReply,
    JobRequest,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from neurons.common.miner_client import MinerClient
from neurons.miner.api import CONTENT_TYPE, create_app
from neurons.miner.auth import ValidatorGate
from tests.wallets import make_wallet

GPU = "GPU-00000000-1111-2222-3333-444444444444"
MAX_BODY = 64 * 1024
NOW = 1_700_000_000.0


@dataclass
class Ids:
    wallets: dict[str, Any]
    hotkeys: dict[str, str]


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Ids:
    root: Path = tmp_path_factory.mktemp("wallets")
    wallets, hotkeys = {}, {}
    for name in ("miner", "validator", "validator2", "outsider"):
        wallet, hotkey = make_wallet(root, name, seed=name.encode().ljust(32, b"\0"))
        wallets[name], hotkeys[name] = wallet, hotkey
    return Ids(wallets, hotkeys)


@dataclass
class RecordingWorkers:
    """A ``WorkerDirectory`` that records what reaches the worker and answers like one."""

    key: WorkerKey = field(default_factory=WorkerKey.generate)
    seen: list[Any] = field(default_factory=list)

    def summaries(self) -> list[WorkerSummary]:
        return []

    def connected(self) -> int:
        return 1

    async def challenge(self, *_: Any, **__: Any) -> Any:  # pragma: no cover - not used
        raise AssertionError("no challenge in these tests")

    async def reveal(self, *_: Any, **__: Any) -> Any:  # pragma: no cover - not used
        raise AssertionError("no reveal in these tests")

    async def lease_start(self, pubkey: bytes, start: LeaseStart, *, timeout: float) -> LeaseAck:
        self.seen.append(start)
        return LeaseAck(lease_id=start.lease_id, accepted=True)

    async def lease_stop(self, pubkey: bytes, stop: LeaseStop, *, timeout: float) -> LeaseAck:
        self.seen.append(stop)
        return LeaseAck(lease_id=stop.lease_id, accepted=True)

    async def job(self, pubkey: bytes, request: JobRequest, *, timeout: float) -> JobReply:
        self.seen.append(request)
        info = JobInfo(job_id=request.job_id, state="queued")
        if isinstance(request, JobSubmit):
            return JobAccepted(request_id=request.request_id, lease_id=request.lease_id, job=info)
        return JobStatus(request_id=request.request_id, lease_id=request.lease_id, job=info)


@dataclass
class Miner:
    app: Any
    workers: RecordingWorkers
    hotkey: str

    @property
    def worker(self) -> str:
        return self.workers.key.public_key.hex()

    def client(self, ids: Ids, who: str = "validator") -> MinerClient:
        transport = httpx.ASGITransport(app=self.app)
        return MinerClient(ids.wallets[who], self.hotkey, "http://miner", transport=transport)


@pytest.fixture
def miner(ids: Ids) -> Iterator[Miner]:
    rows = [("miner", 0.0, False), ("validator", 5000.0, True), ("validator2", 3000.0, True)]
    neurons = tuple(
        NeuronView(uid=uid, hotkey=ids.hotkeys[n], coldkey=f"c{uid}", stake=s, validator_permit=p)
        for uid, (n, s, p) in enumerate(rows)
    )
    graph = MetagraphView(netuid=128, block=1, neurons=neurons)
    config = MinerApiSection(max_body_bytes=MAX_BODY, request_timeout_s=3.0)
    gate = ValidatorGate(ids.hotkeys["miner"], metagraph_source=lambda: graph, min_stake=1000.0)
    workers = RecordingWorkers()
    app = create_app(
        miner_hotkey=ids.hotkeys["miner"],
        signer=ids.wallets["miner"].hotkey.sign,
        gate=gate,
        workers=workers,
        config=config,
        clock=lambda: NOW,
        rate_per_second=1000.0,
        rate_burst=10_000,
    )
    yield Miner(app, workers, ids.hotkeys["miner"])
    app.state.api.leases.table.validate()  # the lease table's invariants hold after every test


def start(lease_id: str = "L1") -> LeaseStart:
    return LeaseStart(lease_id=lease_id, gpu_uuids=[GPU], ends_at=int(NOW) + 3600)


def submit(job_id: str = "j1", lease_id: str = "L1") -> JobSubmit:
    spec = JobSpec(image="busybox", command=["true"], timeout_s=60)
    return JobSubmit(request_id="v-7", lease_id=lease_id, job_id=job_id, spec=spec)


async def test_a_lease_and_its_jobs_go_through_one_envelope(ids: Ids, miner: Miner) -> None:
    async with miner.client(ids) as client:
        ack = await client.forward(miner.worker, start())
        assert isinstance(ack, LeaseAck) and ack.accepted
        status = await client.lease_status(LeaseStatusRequest(lease_id="L1"))
        assert status.state == "active" and status.worker_pubkey == miner.worker
        accepted = await client.forward(miner.worker, submit())
        assert isinstance(accepted, JobAccepted) and accepted.request_id == "v-7"
        # relayed unchanged, but for the request id the miner owns on its link
        relayed = miner.workers.seen[-1]
        assert isinstance(relayed, JobSubmit) and relayed.request_id != "v-7"
        assert relayed.model_copy(update={"request_id": "v-7"}) == submit()
        assert miner.workers.seen[0] == start()
        query = JobStatusQuery(request_id="v-8", lease_id="L1", job_id="j1")
        assert isinstance(await client.forward(miner.worker, query), JobStatus)
        stopped = await client.forward(miner.worker, LeaseStop(lease_id="L1", reason="done"))
        assert isinstance(stopped, LeaseAck) and stopped.accepted
        late = await client.forward(miner.worker, submit("j2"))
        assert isinstance(late, JobRefused) and late.reason == "lease_ended"
        assert late.request_id == "v-7"
        # a retry of the stop is answered by the miner's book alone
        again = await client.forward(miner.worker, LeaseStop(lease_id="L1", reason="done"))
        assert isinstance(again, LeaseAck) and again.reason == "already ended"


async def test_the_envelope_is_checked_against_the_lease_once(ids: Ids, miner: Miner) -> None:
    async with miner.client(ids) as client, miner.client(ids, "validator2") as other:
        await client.forward(miner.worker, start())
        with pytest.raises(Forbidden):
            await other.forward(miner.worker, submit())
        with pytest.raises(Forbidden):
            await other.forward(miner.worker, LeaseStop(lease_id="L1", reason="not mine"))
        with pytest.raises(Forbidden):
            await client.forward(WorkerKey.generate().public_key.hex(), submit())
        unknown = await client.forward(miner.worker, submit(lease_id="nope"))
        assert isinstance(unknown, JobRefused) and unknown.reason == "unknown_lease"
        with pytest.raises(ValueError, match="another lease"):
            ForwardRequest(worker_pubkey=miner.worker, lease_id="L2", message=submit())
    jobs = [m for m in miner.workers.seen if isinstance(m, JobSubmit)]
    assert jobs == []  # nothing refused reached the worker


# --------------------------------------------------------------------------- bad input


def signed(ids: Ids, miner: Miner, body: bytes, who: str = "validator") -> dict[str, str]:
    headers = http_auth.sign(
        ids.wallets[who], method="POST", path="/forward", body=body, receiver_ss58=miner.hotkey
    )
    headers["Content-Type"] = CONTENT_TYPE
    return dict(headers)


def envelope(miner: Miner) -> bytes:
    request = ForwardRequest(worker_pubkey=miner.worker, lease_id="L1", message=submit())
    return codec.encode(request)


def api_error(response: httpx.Response) -> ApiError:
    error = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
    assert isinstance(error, ApiError)
    return error


async def test_forward_refuses_unsigned_replayed_oversized_malformed_and_unpermitted(
    ids: Ids, miner: Miner
) -> None:
    body = envelope(miner)
    transport = httpx.ASGITransport(app=miner.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://miner") as http:
        unsigned = await http.post("/forward", content=body)
        assert unsigned.status_code == 401 and api_error(unsigned).code == "unauthenticated"
        headers = signed(ids, miner, body)
        first = await http.post("/forward", content=body, headers=headers)
        assert first.status_code == 200  # an unknown lease: a JobRefused answer
        replayed = await http.post("/forward", content=body, headers=headers)
        assert replayed.status_code == 401
        big = b"\0" * (MAX_BODY + 1)
        oversized = await http.post("/forward", content=big, headers=signed(ids, miner, big))
        assert oversized.status_code == 413
        garbage = body[:-3]
        bad = await http.post("/forward", content=garbage, headers=signed(ids, miner, garbage))
        assert bad.status_code == 400 and api_error(bad).code == "malformed"
        status = codec.encode(LeaseStatusRequest(lease_id="L1"))
        wrong = await http.post("/forward", content=status, headers=signed(ids, miner, status))
        assert wrong.status_code == 400 and "forward_request" in api_error(wrong).message
        outsider = await http.post(
            "/forward", content=body, headers=signed(ids, miner, body, "outsider")
        )
        assert outsider.status_code == 403 and api_error(outsider).code == "forbidden"
        # an envelope whose message names another lease is malformed, not relayed
        raw = codec.encode(
            ForwardRequest(worker_pubkey=miner.worker, lease_id="L1", message=submit())
        ).replace(b'"lease_id":"L1","message"', b'"lease_id":"L9","message"')
        mismatch = await http.post("/forward", content=raw, headers=signed(ids, miner, raw))
        assert mismatch.status_code == 400
    assert miner.workers.seen == []


def test_signed_random_envelopes_never_produce_500(ids: Ids, miner: Miner) -> None:
    base = envelope(miner)
    seen: set[int] = set()
    transport = httpx.ASGITransport(app=miner.app)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            position = data.draw(st.integers(0, len(base) - 1))
            replacement = data.draw(st.binary(min_size=0, max_size=8))
            body = base[:position] + replacement + base[position + len(replacement) :]
        else:
            body = data.draw(st.binary(max_size=512))
        headers = signed(ids, miner, body)

        async def post() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport, base_url="http://miner") as http:
                return await http.post("/forward", content=body, headers=headers)

        import asyncio

        response = asyncio.run(post())
        seen.add(response.status_code)
        assert response.status_code < 500
        decoded = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
        if response.status_code != 200:
            assert isinstance(decoded, ApiError) and decoded.code != "internal"

    check()
    assert 400 in seen
