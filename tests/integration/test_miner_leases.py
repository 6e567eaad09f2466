"""Leases end to end on 127.0.0.1: a validator's ``MinerClient`` -> the miner's HTTP API (uvicorn)
-> the worker hub (websocket) -> a real worker runtime running jobs with the subprocess runner;
and usage receipts countersigned by the miner's real hotkey, stored in SQLite, paged to any
validator, and still there after the miner restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bittensor import http_auth

from byteleap.config.miner import MinerApiSection, WorkerServerSection
from byteleap.crypto import WorkerKey
from byteleap.errors import (
    Forbidden,
    FraudReason,
    MalformedMessage,
    PeerUnavailable,
    StorageError,
    Unauthenticated,
    VerificationFailed,
)
from byteleap.leases.receipts import Receipt, check_chain, signing_payload, verify_signatures
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.miner_api.forward import ForwardedMessage, ForwardRequest, LeaseStatusRequest
from byteleap.protocol.miner_api.receipts import ReceiptSubmitRequest
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactInfo,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobInfo,
    JobLogs,
    JobLogsQuery,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.sessions.lease_table_events import LeaseRecord
from neurons.common.miner_client import MinerClient, verify_hotkey_signature
from neurons.miner.api import CONTENT_TYPE, create_app
from neurons.miner.auth import ValidatorGate
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.hub import WorkerHub
from neurons.miner.store import MinerStore
from tests.support.miner_api import Identities, metagraph, serving, until
from tests.support.worker import running_worker
from workers.jobs.manager import JobManager
from workers.jobs.subprocess_runner import SubprocessRunner

PY = sys.executable
NETUID = 128
T0 = 1_800_000_000.0
MAX_BODY = 256 * 1024


class Clock:
    """The miner API's unix clock, moved by the test (receipts bill hours that must pass)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Miner:
    url: str
    hub: WorkerHub
    store: MinerStore
    clock: Clock
    ids: Identities
    worker_key: WorkerKey
    worker_gpu: str = ""

    @property
    def worker(self) -> str:
        return self.worker_key.public_key.hex()

    def client(self, who: str = "validator", **kw: Any) -> MinerClient:
        kw.setdefault("timeout", 10.0)
        return MinerClient(self.ids.wallets[who], self.ids.hotkeys["miner"], self.url, **kw)

    def signed_headers(
        self, method: str, path: str, body: bytes = b"", who: str = "validator"
    ) -> dict[str, str]:
        headers = http_auth.sign(
            self.ids.wallets[who],
            method=method,
            path=path,
            body=body,
            receiver_ss58=self.ids.hotkeys["miner"],
        )
        headers["Content-Type"] = CONTENT_TYPE
        return headers


@contextlib.asynccontextmanager
async def miner_stack(
    ids: Identities,
    tmp_path: Path,
    *,
    db: Path | None = None,
    worker_key: WorkerKey | None = None,
    with_jobs: bool = True,
    clock: Clock | None = None,
    signer: str = "miner",
) -> AsyncIterator[Miner]:
    clock = clock or Clock()
    worker_key = worker_key or WorkerKey.generate()
    hotkey = ids.hotkeys["miner"]
    section = WorkerServerSection(
        host="127.0.0.1",
        port=0,
        authorized_keys_file=tmp_path / "authorized_workers",
        authorized_keys=[worker_key.public_key.hex()],
    )
    hub = WorkerHub(section, AuthorizedKeys.from_config(section), hotkey)
    store = MinerStore(db or tmp_path / "miner.sqlite3")
    config = MinerApiSection(max_body_bytes=MAX_BODY, request_timeout_s=10.0)
    gate = ValidatorGate(hotkey, metagraph_source=lambda: metagraph(ids), min_stake=1000.0)
    app = create_app(
        miner_hotkey=hotkey,
        signer=ids.wallets[signer].hotkey.sign,
        gate=gate,
        workers=hub,
        config=config,
        clock=clock,
        store=store,
        netuid=NETUID,
        rate_per_second=1000.0,
        rate_burst=1000,
    )
    jobs = (
        JobManager(
            SubprocessRunner(stop_timeout_s=1.0),
            tmp_path / "worker-jobs",
            max_output_bytes=1 << 16,
            max_artifact_bytes=1 << 20,
        )
        if with_jobs
        else None
    )
    await hub.start()
    try:
        async with (
            serving(app) as url,
            running_worker(f"ws://127.0.0.1:{hub.port}/worker", worker_key, jobs=jobs) as worker,
        ):
            miner = Miner(url, hub, store, clock, ids, worker_key, worker.device_uuid)
            await until(lambda: any(s.worker_pubkey == worker_key.public_key.hex()
                                    for s in hub.summaries()))  # fmt: skip
            yield miner
    finally:
        await hub.stop()
        await asyncio.to_thread(store.close)


async def start_lease(miner: Miner, lease_id: str = "L1", who: str = "validator") -> None:
    start = LeaseStart(
        lease_id=lease_id, gpu_uuids=[miner.worker_gpu], ends_at=int(miner.clock.now) + 24 * 3600
    )
    async with miner.client(who) as client:
        started = await client.forward(miner.worker, start)
    assert isinstance(started, LeaseAck) and started.accepted, started


def py(code: str) -> JobSpec:
    return JobSpec(image="local", command=[PY, "-c", code], timeout_s=120)


def ids_of(job_id: str, lease_id: str = "L1") -> dict[str, Any]:
    return {"request_id": f"r-{job_id}", "lease_id": lease_id, "job_id": job_id}


def submit(job_id: str, spec: JobSpec, lease_id: str = "L1") -> JobSubmit:
    return JobSubmit(**ids_of(job_id, lease_id), spec=spec)


def status_of(job_id: str, lease_id: str = "L1") -> JobStatusQuery:
    return JobStatusQuery(**ids_of(job_id, lease_id))


async def final_status(client: MinerClient, worker: str, job_id: str) -> JobInfo:
    for _ in range(600):
        status = await client.forward(worker, status_of(job_id))
        assert isinstance(status, JobStatus), status
        if status.job.final:
            return status.job
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish")


async def fetch_artifact(
    client: MinerClient, worker: str, job_id: str, artifact: ArtifactInfo, chunk: int
) -> bytes:
    """A whole artifact, chunk by chunk through ``POST /forward``, checked like the renter API."""
    data = b""
    while len(data) < artifact.size:
        query = ArtifactQuery(**ids_of(job_id), name=artifact.name, offset=len(data), limit=chunk)
        answer = await client.forward(worker, query)
        assert isinstance(answer, ArtifactChunk) and answer.offset == len(data), answer
        data += answer.data
        if answer.eof:
            break
    assert hashlib.sha256(data).digest() == artifact.sha256
    return data


# --------------------------------------------------------------------------- jobs


async def test_a_job_runs_through_validator_miner_and_worker(
    ids: Identities, tmp_path: Path
) -> None:
    async with miner_stack(ids, tmp_path) as miner, miner.client() as client:
        await start_lease(miner)
        code = (
            "import os; print('gpus', os.environ['CUDA_VISIBLE_DEVICES']); "
            "open('output/weights.bin', 'wb').write(bytes(range(256)) * 100)"
        )
        worker = miner.worker
        submitted = await client.forward(worker, submit("train-1", py(code)))
        assert isinstance(submitted, JobAccepted), submitted
        job = await final_status(client, worker, "train-1")
        assert (job.state, job.exit_code) == ("succeeded", 0)
        logs = await client.forward(worker, JobLogsQuery(**ids_of("train-1")))
        assert isinstance(logs, JobLogs)
        assert logs.logs.stdout == f"gpus {miner.worker_gpu}\n".encode()
        result = await client.forward(worker, JobResultQuery(**ids_of("train-1")))
        assert isinstance(result, JobResult)
        (artifact,) = result.artifacts
        data = await fetch_artifact(client, worker, "train-1", artifact, 10_000)
        assert data == bytes(range(256)) * 100  # 3 chunks, checked against the SHA-256
        # a long job is cancelled by the renter; another by the lease stop
        for job_id in ("long-1", "long-2"):
            sleeper = py("import time; time.sleep(600)")
            assert isinstance(await client.forward(worker, submit(job_id, sleeper)), JobAccepted)
        cancelled = await client.forward(worker, JobCancel(**ids_of("long-1")))
        assert isinstance(cancelled, JobStatus)
        assert cancelled.job.state in ("running", "queued", "cancelled")
        assert (await final_status(client, worker, "long-1")).state == "cancelled"
        stopped = await client.forward(worker, LeaseStop(lease_id="L1", reason="renter done"))
        assert isinstance(stopped, LeaseAck) and stopped.accepted
        assert (await final_status(client, worker, "long-2")).state == "cancelled"
        # the lease ended: no new jobs, old results stay readable
        late = await client.forward(worker, submit("late", py("1")))
        assert isinstance(late, JobRefused) and late.reason == "lease_ended"
        again = await client.forward(worker, JobResultQuery(**ids_of("train-1")))
        assert isinstance(again, JobResult) and again.artifacts == result.artifacts


async def test_only_the_validator_that_started_the_lease_may_use_it(
    ids: Identities, tmp_path: Path
) -> None:
    async with (
        miner_stack(ids, tmp_path) as miner,
        miner.client() as owner,
        miner.client("validator2") as other,
    ):
        await start_lease(miner)
        worker = miner.worker
        assert isinstance(await owner.forward(worker, submit("mine", py("pass"))), JobAccepted)
        messages: list[ForwardedMessage] = [
            submit("theirs", py("pass")),
            status_of("mine"),
            JobCancel(**ids_of("mine")),
            JobLogsQuery(**ids_of("mine")),
            JobResultQuery(**ids_of("mine")),
            ArtifactQuery(**ids_of("mine"), name="x"),
            LeaseStop(lease_id="L1", reason="not mine"),
        ]
        for message in messages:
            with pytest.raises(Forbidden, match="another validator"):
                await other.forward(worker, message)
        unknown = await owner.forward(worker, status_of("x", lease_id="nope"))
        assert isinstance(unknown, JobRefused) and unknown.reason == "unknown_lease"
        missing = await owner.forward(worker, JobLogsQuery(**ids_of("never")))
        assert isinstance(missing, JobRefused) and missing.reason == "unknown_job"


async def test_a_worker_without_a_runner_refuses_and_a_gone_worker_is_unavailable(
    ids: Identities, tmp_path: Path
) -> None:
    async with miner_stack(ids, tmp_path, with_jobs=False) as miner, miner.client() as client:
        await start_lease(miner)
        answer = await client.forward(miner.worker, submit("j", py("1")))
        assert isinstance(answer, JobRefused) and answer.reason == "runner_disabled"
        await miner.hub.stop()  # the worker's link is gone
        with pytest.raises(PeerUnavailable):
            await client.forward(miner.worker, status_of("j"))


# --------------------------------------------------------------------------- receipts


def receipt(miner: Miner, **overrides: Any) -> Receipt:
    start = int(T0)
    values: dict[str, Any] = {
        "netuid": NETUID,
        "lease_id": "L1",
        "seq": 0,
        "kind": "start",
        "validator_hotkey": miner.ids.hotkeys["validator"],
        "miner_hotkey": miner.ids.hotkeys["miner"],
        "worker_pubkey": miner.worker_key.public_key.hex(),
        "gpu_uuids": [miner.worker_gpu],
        "gpus": 1,
        "price_per_gpu_hour_micros": 1_250_000,
        "period_start": start,
        "period_end": start,
        "issued_at": start,
    }
    values.update(overrides)
    return Receipt(**values)


def hourly(miner: Miner, seq: int, **overrides: Any) -> Receipt:
    start = int(T0) + 3600 * (seq - 1)
    base = {"seq": seq, "kind": "hourly", "period_start": start, "period_end": start + 3600,
            "issued_at": start + 3600}  # fmt: skip
    return receipt(miner, **{**base, **overrides})


async def test_receipts_are_countersigned_stored_and_paged_to_any_validator(
    ids: Identities, tmp_path: Path
) -> None:
    async with miner_stack(ids, tmp_path) as miner, miner.client() as client:
        await start_lease(miner)
        first = await client.submit_receipt(receipt(miner))  # miner signature checked inside
        verify_signatures(first.signed, verify_hotkey_signature)
        miner.clock.now = T0 + 3 * 3600
        cursors = [first.cursor]
        for seq in (1, 2):
            answer = await client.submit_receipt(hourly(miner, seq))
            cursors.append(answer.cursor)
        assert cursors == sorted(cursors) and len(set(cursors)) == 3
        # a retry of the same receipt is answered with what was stored
        retry = await client.submit_receipt(hourly(miner, 2))
        assert retry.cursor == cursors[2]
        assert retry.signed.miner_signature == answer.signed.miner_signature
        # any permitted validator pages through all of them, oldest first
        async with miner.client("validator2") as other:
            page1 = await other.receipts(after=0, limit=2)
            page2 = await other.receipts(after=page1.next_cursor, limit=2)
        assert (page1.more, page2.more) == (True, False)
        assert page1.cursors + page2.cursors == cursors
        receipts = page1.receipts + page2.receipts
        for signed in receipts:
            verify_signatures(signed, verify_hotkey_signature)
        assert [r.seq for r in check_chain(s.receipt for s in receipts)] == [0, 1, 2]
        empty = await client.receipts(after=page2.next_cursor)
        assert empty.receipts == [] and empty.next_cursor == page2.next_cursor


async def test_receipts_the_miner_must_not_countersign_are_refused(
    ids: Identities, tmp_path: Path
) -> None:
    async with (
        miner_stack(ids, tmp_path) as miner,
        miner.client() as client,
        miner.client("validator2") as other,
    ):
        await start_lease(miner)
        await client.submit_receipt(receipt(miner))
        miner.clock.now = T0 + 7200
        stored = hourly(miner, 2, period_start=int(T0), period_end=int(T0) + 3600,
                        issued_at=int(T0) + 3600)  # fmt: skip
        await client.submit_receipt(stored)  # seq 1 skipped: a gap is allowed

        def second_hour(seq: int = 3, **overrides: Any) -> Receipt:
            return hourly(miner, seq, **{"period_start": int(T0) + 3600,
                                         "period_end": int(T0) + 7200,
                                         "issued_at": int(T0) + 7200, **overrides})  # fmt: skip

        forbidden = {
            "seq reused with other content": stored.model_copy(
                update={"price_per_gpu_hour_micros": 9}
            ),
            "seq not after the last one": second_hour(1),
            "overlapping period": second_hour(period_start=int(T0) + 1800),
            "another worker": second_hour(worker_pubkey="ab" * 32),
            "other GPUs": second_hour(gpu_uuids=["GPU-other"]),
            "before the lease": second_hour(period_start=int(T0) - 3600,
                                            period_end=int(T0) - 1800, issued_at=int(T0)),
            "unknown lease": second_hour(lease_id="L-unknown"),
            "another miner": second_hour(miner_hotkey=ids.hotkeys["outsider"]),
            "another netuid": second_hour(netuid=7),
        }  # fmt: skip
        for what, bad in forbidden.items():
            with pytest.raises(Forbidden):
                await client.submit_receipt(bad)
            assert what
        # validator2 did not sell lease L1, and cannot countersign for validator
        with pytest.raises(Forbidden, match="another validator"):
            await other.submit_receipt(second_hour(validator_hotkey=ids.hotkeys["validator2"]))
        malformed = [
            second_hour(period_start=int(T0) + 7200, period_end=int(T0) + 2 * 86400,
                        issued_at=int(T0) + 2 * 86400),  # longer than a day, and in the future
            second_hour(period_start=int(T0) + 7200, period_end=int(T0) + 10800,
                        issued_at=int(T0) + 10800),  # the future, by the miner's clock
        ]  # fmt: skip
        for bad in malformed:
            with pytest.raises(MalformedMessage):
                await client.submit_receipt(bad)
        # the body's validator signature must be the caller's signature of the receipt
        good = second_hour()
        forged = ReceiptSubmitRequest(
            receipt=good, validator_signature=ids.wallets["validator2"].hotkey.sign(
                signing_payload(good))
        )  # fmt: skip
        body = codec.encode(forged)
        async with httpx.AsyncClient() as http:
            response = await http.post(
                miner.url + "/lease/receipt",
                content=body,
                headers=miner.signed_headers("POST", "/lease/receipt", body),
            )
        assert response.status_code == 400
        error = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
        assert isinstance(error, ApiError) and "validator_signature" in error.message
        # an end receipt closes the chain
        await client.submit_receipt(good.model_copy(update={"kind": "end"}))
        miner.clock.now = T0 + 4 * 3600
        with pytest.raises(Forbidden, match="end receipt"):
            await client.submit_receipt(second_hour(4, period_start=int(T0) + 7200,
                                                    period_end=int(T0) + 10800,
                                                    issued_at=int(T0) + 10800))  # fmt: skip
        page = await client.receipts()
        assert [s.receipt.seq for s in page.receipts] == [0, 2, 3]


async def test_a_stop_the_worker_no_longer_knows_still_ends_the_lease_at_the_miner(
    ids: Identities, tmp_path: Path
) -> None:
    async with miner_stack(ids, tmp_path) as miner, miner.client() as client:
        await start_lease(miner)
        # the worker loses the lease behind the miner's back (as after a restart of the worker)
        worker = miner.worker_key.public_key
        await miner.hub.lease_stop(worker, LeaseStop(lease_id="L1", reason="x"), timeout=5)
        answer = await client.forward(miner.worker, LeaseStop(lease_id="L1", reason="renter done"))
        assert isinstance(answer, LeaseAck)
        assert (answer.accepted, answer.reason) == (False, "no such lease")
        status = await client.lease_status(LeaseStatusRequest(lease_id="L1"))
        assert status.state == "ended"  # the worker can be challenged again


async def test_a_receipt_past_the_lease_end_is_refused(ids: Identities, tmp_path: Path) -> None:
    async with miner_stack(ids, tmp_path) as miner, miner.client() as client:
        await start_lease(miner)
        miner.clock.now = T0 + 1800
        await client.forward(miner.worker, LeaseStop(lease_id="L1", reason="done"))
        miner.clock.now = T0 + 7200
        with pytest.raises(Forbidden, match="ends after the lease"):
            await client.submit_receipt(hourly(miner, 1, kind="end"))
        # billing up to the stop is fine, after the lease ended
        end = hourly(miner, 1, kind="end", period_end=int(T0) + 1800, issued_at=int(T0) + 1800)
        assert (await client.submit_receipt(end)).signed.receipt == end


async def test_a_client_detects_a_miner_signature_that_does_not_verify(
    ids: Identities, tmp_path: Path
) -> None:
    async with miner_stack(ids, tmp_path, signer="outsider") as miner, miner.client() as client:
        await start_lease(miner)
        with pytest.raises(VerificationFailed) as info:
            await client.submit_receipt(receipt(miner))  # countersigned with another key
        assert info.value.reason is FraudReason.BAD_SIGNATURE
        (stored,) = (await client.receipts()).receipts
        with pytest.raises(VerificationFailed, match="miner signature"):
            verify_signatures(stored, verify_hotkey_signature)
        with pytest.raises(MalformedMessage, match="another receipt"):
            client.check_countersigned(receipt(miner, price_per_gpu_hour_micros=1), stored)


async def test_leases_and_receipts_survive_a_miner_restart(ids: Identities, tmp_path: Path) -> None:
    key = WorkerKey.generate()
    db = tmp_path / "state" / "miner.sqlite3"
    clock = Clock()
    async with miner_stack(ids, tmp_path / "one", db=db, worker_key=key, clock=clock) as miner:
        await start_lease(miner)
        async with miner.client() as client:
            first = await client.submit_receipt(receipt(miner))
    clock.now = T0 + 3600
    async with (
        miner_stack(ids, tmp_path / "two", db=db, worker_key=key, clock=clock) as miner,
        miner.client() as client,
    ):
        status = await client.lease_status(LeaseStatusRequest(lease_id="L1"))
        assert (status.state, status.worker_pubkey) == ("active", key.public_key.hex())
        page = await client.receipts()
        assert page.receipts == [first.signed] and page.cursors == [first.cursor]
        with pytest.raises(Forbidden):  # the stored chain still binds: seq 0 is taken
            await client.submit_receipt(receipt(miner, price_per_gpu_hour_micros=1))
        second = await client.submit_receipt(hourly(miner, 1))
        assert second.cursor > first.cursor
        # and it still routes jobs to the worker holding the lease after the restart
        answer = await client.forward(miner.worker, status_of("none"))
        assert isinstance(answer, JobRefused) and answer.reason == "unknown_job"


# --------------------------------------------------------------------------- denied input


def forwarded(miner: Miner, message: ForwardedMessage) -> tuple[str, Message]:
    """``POST /forward`` of ``message`` to the worker of the test's lease."""
    envelope = ForwardRequest(worker_pubkey=miner.worker, lease_id="L1", message=message)
    return "/forward", envelope


def every_forwarded(miner: Miner) -> list[ForwardedMessage]:
    """Every kind of worker-link message a validator forwards (the stop last: it ends L1)."""
    return [
        LeaseStart(lease_id="L1", gpu_uuids=[miner.worker_gpu], ends_at=int(T0) + 3600),
        submit("j", py("1")),
        status_of("j"),
        JobCancel(**ids_of("j")),
        JobLogsQuery(**ids_of("j")),
        JobResultQuery(**ids_of("j")),
        ArtifactQuery(**ids_of("j"), name="a"),
        LeaseStop(lease_id="L1", reason="x"),
    ]


def api_error(response: httpx.Response) -> ApiError:
    error = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
    assert isinstance(error, ApiError)
    return error


async def test_forward_and_receipt_refuse_unsigned_replayed_oversized_malformed_outsiders(
    ids: Identities, tmp_path: Path
) -> None:
    async with miner_stack(ids, tmp_path) as miner, httpx.AsyncClient() as http:
        await start_lease(miner)
        bad_receipt = ReceiptSubmitRequest(receipt=receipt(miner), validator_signature=bytes(64))
        routes: list[tuple[str, Message]] = [("/lease/receipt", bad_receipt)]
        routes += [forwarded(miner, message) for message in every_forwarded(miner)]
        for path, message in routes:
            body = codec.encode(message)
            unsigned = await http.post(miner.url + path, content=body)
            assert unsigned.status_code == 401, path
            assert api_error(unsigned).code == "unauthenticated"
            headers = miner.signed_headers("POST", path, body)
            first = await http.post(miner.url + path, content=body, headers=headers)
            replay = await http.post(miner.url + path, content=body, headers=headers)
            assert first.status_code in (200, 400), (path, first.status_code)
            assert replay.status_code == 401 and "Replayed" in api_error(replay).message
            big = b"\0" * (MAX_BODY + 1)
            too_large = await http.post(
                miner.url + path, content=big, headers=miner.signed_headers("POST", path, big)
            )
            assert too_large.status_code == 413 and api_error(too_large).code == "too_large"
            for garbage in (b"junk", codec.encode(LeaseStatusRequest(lease_id="L1"))):
                bad = await http.post(
                    miner.url + path,
                    content=garbage,
                    headers=miner.signed_headers("POST", path, garbage),
                )
                assert bad.status_code == 400 and api_error(bad).code == "malformed", path
            outsider = await http.post(
                miner.url + path,
                content=body,
                headers=miner.signed_headers("POST", path, body, who="outsider"),
            )
            assert outsider.status_code == 403 and api_error(outsider).code == "forbidden"


@pytest.mark.parametrize(
    "query",
    ["?limit=0", "?limit=201", "?after=-1", "?after=x", "?after=1&after=2", "?cursor=3",
     "?limit=1e3", "?after=99999999999999999999"],
)  # fmt: skip
async def test_receipt_pages_refuse_bad_queries_and_unsigned_callers(
    ids: Identities, tmp_path: Path, query: str
) -> None:
    async with miner_stack(ids, tmp_path) as miner, httpx.AsyncClient() as http:
        path = "/receipts" + query
        response = await http.get(miner.url + path, headers=miner.signed_headers("GET", path))
        assert response.status_code == 400 and api_error(response).code == "malformed"
        unsigned = await http.get(miner.url + "/receipts")
        assert unsigned.status_code == 401
        with_body = await http.request(
            "GET", miner.url + "/receipts", content=b"x",
            headers=miner.signed_headers("GET", "/receipts", b"x"),
        )  # fmt: skip
        assert with_body.status_code == 400
        async with miner.client("outsider") as outsider:
            with pytest.raises(Forbidden):
                await outsider.receipts()
        wrong_receiver = MinerClient(ids.wallets["validator"], ids.hotkeys["outsider"], miner.url)
        async with wrong_receiver, miner.client() as client:
            with pytest.raises(Unauthenticated):
                await wrong_receiver.receipts()
            assert (await client.receipts()).receipts == []


# --------------------------------------------------------------------------- the store itself


def store_receipt(seq: int, lease: str = "L1", **overrides: Any) -> Receipt:
    start = int(T0) + 3600 * max(0, seq - 1)
    values: dict[str, Any] = {
        "netuid": NETUID, "lease_id": lease, "seq": seq, "kind": "start" if seq == 0 else "hourly",
        "validator_hotkey": "5Validator", "miner_hotkey": "5Miner", "worker_pubkey": "ab" * 32,
        "gpu_uuids": ["GPU-1"], "gpus": 1, "price_per_gpu_hour_micros": 1,
        "period_start": start, "period_end": start if seq == 0 else start + 3600,
        "issued_at": start + 3600,
    }  # fmt: skip
    values.update(overrides)
    return Receipt(**values)


async def test_store_cursors_never_repeat_after_pruning(tmp_path: Path) -> None:
    store = MinerStore(tmp_path / "m.sqlite3")
    try:
        cursors = []
        for seq in range(3):
            _, cursor, created = await store.add_receipt(
                store_receipt(seq), bytes(64), bytes(64), now=T0 + seq
            )
            assert created
            cursors.append(cursor)
        assert await store.prune(leases_before=T0, receipts_before=T0 + 2) == (0, 2)
        page, more = await store.receipts_after(0, 10)
        assert [c for c, _ in page] == [cursors[2]] and not more
        _, cursor, _ = await store.add_receipt(store_receipt(3), bytes(64), bytes(64), now=T0 + 9)
        assert cursor > max(cursors)
    finally:
        store.close()


async def test_concurrent_identical_receipts_are_stored_once(tmp_path: Path) -> None:
    store = MinerStore(tmp_path / "m.sqlite3")
    try:
        results = await asyncio.gather(
            *(
                store.add_receipt(store_receipt(0), bytes(64), bytes([i]) * 64, now=T0)
                for i in range(8)
            )
        )
        assert sum(created for _, _, created in results) == 1
        assert len({cursor for _, cursor, _ in results}) == 1
        assert len({signed.miner_signature for signed, _, _ in results}) == 1
        with pytest.raises(Forbidden, match="other content"):
            await store.add_receipt(
                store_receipt(0, price_per_gpu_hour_micros=2), bytes(64), bytes(64), now=T0
            )
    finally:
        store.close()


async def test_store_keeps_leases_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = MinerStore(path)
    record = LeaseRecord("L1", "5V", "ab" * 32, ["GPU-1", "GPU-2"], 2_000_000_000, "active",
                         updated=T0, started_at=T0)  # fmt: skip
    await store.save_lease(record)
    record.state, record.stopped_at = "ended", T0 + 60
    await store.save_lease(record)
    store.close()
    again = MinerStore(path)
    assert again.load_leases() == [record]
    again.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError, match="schema version 99"):
        MinerStore(path)
