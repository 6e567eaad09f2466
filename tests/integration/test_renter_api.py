"""The renter API and the lease lifecycle.

- End to end on 127.0.0.1, nothing faked but the chain: a renter's HTTP requests -> the
  validator daemon's renter API (uvicorn) -> the lease manager -> a real miner daemon -> a real
  worker runtime running the job with the subprocess runner; receipts countersigned by the
  miner's real hotkey and stored with both signatures.
- Worker loss: the lease becomes ``lost`` and billing ends at the last receipt.
- The lease store on SQLite and PostgreSQL.
- Every denied case by hand (no key, wrong key, revoked key, over the limit, another renter's
  lease, an oversized body, the rate limit), and bad input on every endpoint with schemathesis
  against the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from sqlalchemy.pool import NullPool

from byteleap.config import ValidatorConfig
from byteleap.crypto import WorkerKey
from byteleap.errors import StorageError
from byteleap.leases.receipts import Receipt, check_chain, verify_signatures
from byteleap.protocol.miner_api.receipts import SignedReceipt
from byteleap.sessions.round_planner import Skip
from neurons.chain import DevChainClient
from neurons.common.miner_client import verify_hotkey_signature
from neurons.validator.daemon import ValidatorDaemon
from neurons.validator.leasing.manager import LeaseManager
from neurons.validator.renter import RenterApiSettings, create_renter_app, hash_key, new_key
from neurons.validator.renter.server import RenterApiServer
from neurons.validator.store import SqlStore, create_engine, open_store, upgrade_engine
from neurons.validator.store.lease_rows import LeaseRow, booked_amount
from tests.support.rounds import (  # the same network as the rounds' tests
    Net,
    WallClock,
    running_miner,
    until,
)
from tests.support.store import run_async
from tests.support.worker import running_worker
from workers.jobs.manager import JobManager
from workers.jobs.subprocess_runner import SubprocessRunner

PY = sys.executable
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def config(net: Net, **sections: Any) -> ValidatorConfig:
    values: dict[str, Any] = {
        "wallet": {"name": "validator", "hotkey": "default", "path": str(net.root / "wallets")},
        "chain": {"network": f"devchain:{net.chain_file}", "sync_interval_s": 1},
        "database": {"url": "sqlite+aiosqlite:///unused.db"},
        "challenge": {
            # an epoch within 3 s of the start and then every 3 s; CPU devices sized to 2 s
            "interval_s": 3,
            "jitter": 0,
            "plan_interval_s": 0.2,
            "verifier_processes": 1,
            "cpu_workers": True,
            "cpu_expected_flops": 2 * 64**3 * 3 / 2.0,
            "cpu": {"m": 64, "n": 64, "k": 64, "v": 15, "stages": 3},
            "sampling": {"stages": 2, "rows": 8, "columns": 4},
        },
        "miners": {"poll_interval_s": 0.5, "request_timeout_s": 10},
        "scoring": {"weights_interval_blocks": 1000},
        "leases": {"receipt_interval_s": 1, "prices": {"default": 2.0}},
        # the test polls the API while it waits for epochs: more than a renter's default limit
        "api": {"port": 0, "rate_limit_per_minute": 6000, "rate_limit_burst": 100},
        "paths": {"data_dir": str(net.root / "validator")},
        "metrics": {"enabled": False},
    }
    for name, section in sections.items():
        values[name] = {**values.get(name, {}), **section}
    return ValidatorConfig.model_validate(values)


def job_manager(root: Path) -> JobManager:
    return JobManager(
        SubprocessRunner(stop_timeout_s=1.0),
        root,
        max_output_bytes=1 << 16,
        max_artifact_bytes=1 << 20,
    )


@contextlib.asynccontextmanager
async def serving_daemon(
    net: Net, store: SqlStore, cfg: ValidatorConfig, clock: WallClock | None = None
) -> AsyncIterator[ValidatorDaemon]:
    """The whole validator daemon (every loop and the renter API) on this event loop."""
    daemon = ValidatorDaemon(
        cfg,
        signer=net.validator_wallet,
        hotkey=net.validator_hotkey,
        store=store,
        chain=DevChainClient(net.chain, net.validator_hotkey),
        rng=random.Random(0),
        wall_clock=clock or WallClock(),
    )
    await daemon.start()
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.serve(stop))

    async def serving() -> bool:
        if task.done():
            task.result()
        return daemon.renter_api is not None

    await until(serving, 30, "the renter API serving")
    try:
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def receipts(store: SqlStore, validator: str, lease_id: str) -> list[SignedReceipt]:
    return await store.leases.receipts_of(validator, lease_id)


async def final_job(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    for _ in range(600):
        answer = await http.get(path)
        assert answer.status_code == 200, answer.text
        if answer.json()["state"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return dict(answer.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish")


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
async def test_a_renter_leases_a_gpu_runs_a_job_and_every_receipt_is_countersigned(
    net: Net, tmp_path: Path
) -> None:
    key = WorkerKey.generate()
    pubkey = key.public_key.hex()
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", auto_upgrade=True)
    alice_key, bob_key = new_key(), new_key()
    await store.leases.add_renter("alice", hash_key(alice_key), spend_limit=50.0, now=NOW)
    await store.leases.add_renter("bob", hash_key(bob_key), spend_limit=0.5, now=NOW)
    try:
        async with (
            running_miner(net, "miner", [key]) as miner,
            running_worker(miner.workers_url, key, jobs=job_manager(tmp_path / "jobs")) as worker,
            serving_daemon(net, store, config(net)) as daemon,
            httpx.AsyncClient(
                base_url=daemon.renter_api.url if daemon.renter_api else "",
                headers={"Authorization": f"Bearer {alice_key}"},
                timeout=30,
            ) as http,
        ):
            # the daemon polls the worker and proves it; then it is offered
            async def offered() -> bool:
                answer = await http.get("/v1/capacity")
                assert answer.status_code == 200, answer.text
                return bool(answer.json()["gpus"])

            await until(offered, 60, "the verified worker offered")
            (line,) = (await http.get("/v1/capacity")).json()["gpus"]
            assert line["count"] == 1 and line["max_per_lease"] == 1
            assert line["price_per_gpu_hour"] == 2.0 and line["region"] is None

            # bob's limit cannot pay for an hour: 403 before anything is started
            bob = {"Authorization": f"Bearer {bob_key}"}
            ask = {"count": 1, "duration_hours": 1, "max_price_per_gpu_hour": 3}
            over = await http.post("/v1/leases", json=ask, headers=bob)
            assert over.status_code == 403
            assert over.json()["error"]["code"] == "spend_limit_exceeded"
            too_cheap = await http.post("/v1/leases", json={**ask, "max_price_per_gpu_hour": 1})
            assert too_cheap.status_code == 409
            assert too_cheap.json()["error"]["code"] == "no_capacity"

            created = await http.post("/v1/leases", json=ask)
            assert created.status_code == 201, created.text
            lease = created.json()
            lease_id = lease["id"]
            assert lease["status"] == "active" and lease["gpu_uuids"] == [worker.device_uuid]
            assert (lease["miner_hotkey"], lease["worker_pubkey"]) == (miner.hotkey, pubkey)
            assert lease["cost"] == pytest.approx(2.0, rel=1e-3)
            # the start receipt was countersigned before the answer came back
            (start,) = await receipts(store, net.validator_hotkey, lease_id)
            assert (start.receipt.seq, start.receipt.kind, start.receipt.seconds) == (0, "start", 0)
            assert start.receipt.price_per_gpu_hour_micros == 2_000_000
            verify_signatures(start, verify_hotkey_signature)
            # the worker is ours now: neither offered nor challenged
            assert (await http.get("/v1/capacity")).json()["gpus"] == []
            plan = await daemon.plan_once()
            assert plan.skipped[(miner.hotkey, pubkey)] is Skip.LEASED

            # a job: output, an artifact, logs
            code = (
                "import os, sys; print('on', os.environ['CUDA_VISIBLE_DEVICES']); "
                "sys.stderr.write('warn\\n'); "
                "open('output/model.bin', 'wb').write(bytes(range(256)) * 40)"
            )
            job = {"image": "local", "command": [PY, "-c", code], "timeout_s": 120}
            submitted = await http.post(f"/v1/leases/{lease_id}/jobs", json=job)
            assert submitted.status_code == 201, submitted.text
            job_path = f"/v1/leases/{lease_id}/jobs/{submitted.json()['id']}"
            done = await final_job(http, job_path)
            assert (done["state"], done["exit_code"]) == ("succeeded", 0)
            logs = await http.get(f"{job_path}/logs", params={"stream": "stdout"})
            assert logs.content == f"on {worker.device_uuid}\n".encode()
            assert logs.headers["X-Next-Offset"] == str(len(logs.content))
            assert logs.headers["X-Job-Finished"] == "true"
            tail = await http.get(f"{job_path}/logs", params={"stream": "stderr", "offset": 2})
            assert tail.content == b"rn\n"
            result = (await http.get(f"{job_path}/result")).json()
            expected = bytes(range(256)) * 40
            assert result["job"]["state"] == "succeeded"
            assert result["artifacts"] == [
                {
                    "name": "model.bin",
                    "size": len(expected),
                    "sha256": hashlib.sha256(expected).hexdigest(),
                }
            ]
            artifact = await http.get(f"{job_path}/artifacts/model.bin")
            assert artifact.status_code == 200 and artifact.content == expected
            assert artifact.headers["X-Artifact-SHA256"] == hashlib.sha256(expected).hexdigest()
            missing = await http.get(f"{job_path}/artifacts/nope.bin")
            assert (missing.status_code, missing.json()["error"]["code"]) == (
                404,
                "unknown_artifact",
            )
            # cancelling a running job
            sleeper = {"image": "local", "command": [PY, "-c", "import time; time.sleep(600)"]}
            long_job = await http.post(f"/v1/leases/{lease_id}/jobs", json=sleeper)
            long_path = f"/v1/leases/{lease_id}/jobs/{long_job.json()['id']}"
            assert (await http.delete(long_path)).status_code == 200
            assert (await final_job(http, long_path))["state"] == "cancelled"

            # hourly receipts follow (receipt_interval_s is 1 here)
            async def hourly() -> bool:
                chain = await receipts(store, net.validator_hotkey, lease_id)
                return any(s.receipt.kind == "hourly" for s in chain)

            await until(hourly, 30, "an hourly receipt")
            extended = await http.post(f"/v1/leases/{lease_id}/extend", json={"hours": 2})
            assert extended.status_code == 200, extended.text
            ends = datetime.fromisoformat(extended.json()["ends_at"])
            assert ends - datetime.fromisoformat(lease["ends_at"]) == timedelta(hours=2)
            assert extended.json()["cost"] == pytest.approx(6.0, rel=1e-3)
            # alice's limit is 50: 3 h booked at 2, 23 more hours would make 52
            over_limit = await http.post(f"/v1/leases/{lease_id}/extend", json={"hours": 23})
            assert over_limit.json()["error"]["code"] == "spend_limit_exceeded"

            ended = await http.delete(f"/v1/leases/{lease_id}")
            assert ended.status_code == 200 and ended.json()["status"] == "ended"
            assert ended.json()["end_reason"] == "terminated by the renter"
            assert 0 < ended.json()["cost"] < 6.0  # billed to the termination, not the booking
            late = await http.post(f"/v1/leases/{lease_id}/jobs", json=job)
            assert (late.status_code, late.json()["error"]["code"]) == (409, "lease_not_active")
            # old results stay readable after the lease ended
            assert (await http.get(f"{job_path}/result")).status_code == 200

            chain = await receipts(store, net.validator_hotkey, lease_id)
            for signed in chain:
                verify_signatures(signed, verify_hotkey_signature)
                assert signed.receipt.miner_hotkey == miner.hotkey
            ordered = check_chain(s.receipt for s in chain)
            assert ordered[0].kind == "start" and ordered[-1].kind == "end"
            assert all(r.kind == "hourly" for r in ordered[1:-1]) and len(ordered) >= 3
            # the miner stored exactly the same receipts
            async with daemon.connect(miner.hotkey, lease_endpoint(miner), 10) as client:
                page = await client.receipts(after=0, limit=200)
            assert [s.receipt for s in page.receipts] == [s.receipt for s in chain]
            listed = (await http.get("/v1/leases")).json()["leases"]
            assert [x["id"] for x in listed] == [lease_id]
    finally:
        await store.close()


def lease_endpoint(miner: Any) -> str:
    return f"http://127.0.0.1:{miner.api_port}"


@pytest.mark.slow
async def test_a_lost_worker_ends_its_lease_billed_to_the_last_receipt(
    net: Net, tmp_path: Path
) -> None:
    key = WorkerKey.generate()
    clock = WallClock()
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", auto_upgrade=True)
    renter = await store.leases.add_renter("alice", hash_key(new_key()), spend_limit=None, now=NOW)
    cfg = config(net, leases={"receipt_interval_s": 3600, "worker_lost_after_s": 60})
    try:
        async with running_miner(net, "miner", [key]) as miner:
            daemon = ValidatorDaemon(
                cfg,
                signer=net.validator_wallet,
                hotkey=net.validator_hotkey,
                store=store,
                chain=DevChainClient(net.chain, net.validator_hotkey),
                rng=random.Random(0),
                wall_clock=clock,
            )
            await daemon.start()
            manager = daemon.lease_manager
            assert manager is not None
            try:
                async with running_worker(miner.workers_url, key):

                    async def verified() -> bool:
                        await daemon.poll_once()
                        await daemon.challenge_round()
                        return bool(await manager.capacity())

                    await until(verified, 60, "the worker verified")
                    from neurons.validator.leasing.matching import LeaseRequest

                    lease = await manager.create(
                        renter, LeaseRequest(count=1, duration_hours=5, max_price_per_gpu_hour=9)
                    )
                # the worker is gone; polls see it offline, then the grace passes
                await daemon.poll_once()
                await manager.tick()
                assert (await store.leases.lease(lease.id)).status == "active"  # type: ignore[union-attr]
                clock.offset += timedelta(seconds=61)
                await manager.tick()
                lost = await store.leases.lease(lease.id)
                assert lost is not None and lost.status == "lost"
                assert lost.end_reason is not None and "missing" in lost.end_reason
                (start,) = await receipts(store, net.validator_hotkey, lease.id)
                assert start.receipt.kind == "start"  # no end receipt for unobserved time
                assert lost.ended_at == datetime.fromtimestamp(start.receipt.period_end, UTC)
                assert booked_amount(lost) < 2.0 * 1 / 3600 * 2  # about nothing was billed
            finally:
                await daemon.shutdown()
    finally:
        await store.close()


# --------------------------------------------------------------------------- the store


def lease_row(renter_id: int, lease_id: str = "L1", **kw: Any) -> LeaseRow:
    values: dict[str, Any] = {
        "id": lease_id,
        "renter_id": renter_id,
        "miner_hotkey": "5Miner",
        "worker_pubkey": "ab" * 32,
        "gpu_uuids": ("GPU-1", "GPU-2"),
        "price_per_gpu_hour": 1.5,
        "created_at": NOW,
        "ends_at": NOW + timedelta(hours=4),
        "status": "active",
        "started_at": NOW,
    }
    values.update(kw)
    return LeaseRow(**values)


def signed_receipt(seq: int, kind: str, start: int, end: int, price: int = 1_500_000) -> Any:
    receipt = Receipt(
        netuid=128, lease_id="L1", seq=seq, kind=kind,  # type: ignore[arg-type]
        validator_hotkey="5Validator", miner_hotkey="5Miner", worker_pubkey="ab" * 32,
        gpu_uuids=["GPU-1", "GPU-2"], gpus=2, price_per_gpu_hour_micros=price,
        period_start=start, period_end=end, issued_at=end,
    )  # fmt: skip
    return SignedReceipt(receipt=receipt, validator_signature=b"v" * 64, miner_signature=b"m" * 64)


async def test_the_lease_store_keeps_renters_leases_and_own_receipts(store: SqlStore) -> None:
    leases = store.leases
    alice = await leases.add_renter("alice", "h" * 64, spend_limit=10.0, now=NOW)
    with pytest.raises(ValueError, match="exists already"):
        await leases.add_renter("alice", "x" * 64, spend_limit=None, now=NOW)
    assert await leases.renter_by_key_hash("h" * 64) == alice
    assert await leases.renter_by_key_hash("nope") is None
    await leases.insert_lease(lease_row(alice.id))
    await leases.insert_lease(lease_row(alice.id, "L2", status="failed", started_at=None))
    assert await leases.held_workers() == {("5Miner", "ab" * 32)}
    assert await leases.spent(alice.id) == pytest.approx(1.5 * 2 * 4)  # the failed one is free
    # only an active lease moves to ended, once
    assert await leases.set_status(
        "L1", "ended", expect=("active",), ended_at=NOW + timedelta(hours=1), end_reason="done"
    )
    assert not await leases.set_status("L1", "lost", expect=("active",))
    ended = await leases.lease("L1")
    assert ended is not None and (ended.status, ended.end_reason) == ("ended", "done")
    assert await leases.spent(alice.id) == pytest.approx(1.5 * 2 * 1)
    assert await leases.held_workers() == set()
    assert not await leases.extend("L1", NOW + timedelta(hours=9))

    start = int(NOW.timestamp())
    first = signed_receipt(0, "start", start, start)
    assert await leases.insert_receipt(first, NOW)
    assert not await leases.insert_receipt(first, NOW)  # the same receipt again: a no-op
    with pytest.raises(StorageError, match="other content"):
        await leases.insert_receipt(signed_receipt(0, "start", start, start, price=1), NOW)
    await leases.insert_receipt(signed_receipt(1, "hourly", start, start + 3600), NOW)
    tip = await leases.receipt_tip("5Validator", "L1")
    assert (tip.seq, tip.period_end) == (1, start + 3600)
    stored = await leases.receipts_of("5Validator", "L1")
    assert [s.receipt.seq for s in stored] == [0, 1]
    assert stored[1].miner_signature == b"m" * 64
    empty = await leases.receipt_tip("5Validator", "other")
    assert (empty.seq, empty.period_end) == (None, None)

    assert await leases.revoke_renter("alice", NOW)
    assert not await leases.revoke_renter("nobody", NOW)
    (summary,) = await leases.renters()
    assert summary.renter.revoked and summary.spent == pytest.approx(3.0)


# --------------------------------------------------------------------------- denied cases


@dataclass
class Api:
    url: str
    store: SqlStore
    keys: dict[str, str]


@contextlib.asynccontextmanager
async def renter_api(
    tmp_path: Path, settings: RenterApiSettings | None = None
) -> AsyncIterator[Api]:
    """The renter API over a real SQLite store with no workers, on uvicorn at 127.0.0.1:0."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", auto_upgrade=True)
    keys = {name: new_key() for name in ("alice", "bob", "carol")}
    ids = {}
    for name, limit in (("alice", 10.0), ("bob", None), ("carol", None)):
        renter = await store.leases.add_renter(
            name, hash_key(keys[name]), spend_limit=limit, now=NOW
        )
        ids[name] = renter.id
    await store.leases.revoke_renter("carol", NOW)
    now = datetime.now(UTC)
    await store.leases.insert_lease(
        lease_row(ids["alice"], "alice-lease", created_at=now, started_at=now,
                  ends_at=now + timedelta(hours=2), price_per_gpu_hour=1.0)
    )  # fmt: skip
    manager = lease_manager(store)
    app = create_renter_app(store=store.leases, manager=manager, settings=settings)
    server = RenterApiServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield Api(server.url, store, keys)
    finally:
        await server.stop()
        await store.close()


def lease_manager(store: SqlStore) -> LeaseManager:
    def no_miners(*_: Any) -> Any:
        raise AssertionError("no miner is contacted in these tests")

    return LeaseManager(
        leases=store.leases,
        store=store,
        section=ValidatorConfig().leases,
        netuid=128,
        validator_hotkey="5Validator",
        connect=no_miners,
        request_timeout_s=5,
        wall_clock=lambda: datetime.now(UTC),
    )


def error_of(answer: httpx.Response) -> tuple[int, str]:
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return answer.status_code, body["error"]["code"]


async def test_requests_without_a_valid_key_are_refused(tmp_path: Path) -> None:
    async with renter_api(tmp_path) as api, httpx.AsyncClient(base_url=api.url) as http:
        missing = await http.get("/v1/capacity")
        assert error_of(missing) == (401, "unauthenticated")
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await http.get("/v1/leases", headers={"Authorization": "Bearer blr_wrong"})
        assert error_of(wrong) == (401, "unauthenticated")
        basic = await http.get("/v1/leases", headers={"Authorization": "Basic abc"})
        assert error_of(basic) == (401, "unauthenticated")
        revoked = await http.get(
            "/v1/leases", headers={"Authorization": f"Bearer {api.keys['carol']}"}
        )
        assert error_of(revoked) == (403, "key_revoked")
        # the schema and the docs are public
        schema = await http.get("/v1/openapi.json")
        assert schema.status_code == 200 and "/v1/leases/{lease_id}/jobs" in schema.json()["paths"]
        assert (await http.get("/v1/docs")).status_code == 200


async def test_another_renters_lease_is_not_found_and_limits_hold(tmp_path: Path) -> None:
    async with renter_api(tmp_path) as api:
        alice = httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {api.keys['alice']}"}
        )
        bob = httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {api.keys['bob']}"}
        )
        async with alice, bob:
            assert (await alice.get("/v1/leases/alice-lease")).status_code == 200
            for method, path, body in [
                ("GET", "/v1/leases/alice-lease", None),
                ("POST", "/v1/leases/alice-lease/extend", {"hours": 1}),
                ("DELETE", "/v1/leases/alice-lease", None),
                ("POST", "/v1/leases/alice-lease/jobs", {"image": "x", "command": ["true"]}),
                ("GET", "/v1/leases/alice-lease/jobs/j1", None),
                ("GET", "/v1/leases/alice-lease/jobs/j1/logs", None),
                ("GET", "/v1/leases/alice-lease/jobs/j1/result", None),
                ("GET", "/v1/leases/alice-lease/jobs/j1/artifacts/a.bin", None),
                ("DELETE", "/v1/leases/alice-lease/jobs/j1", None),
            ]:
                answer = await bob.request(method, path, json=body)
                assert error_of(answer) == (404, "not_found"), (method, path)
            assert (await bob.get("/v1/leases")).json() == {"leases": []}
            # alice booked 2 GPUs x 2 h x 1.0 = 4 of her 10: 2 more hours fit, 2 more do not
            ok = await alice.post("/v1/leases/alice-lease/extend", json={"hours": 1.5})
            assert ok.status_code == 200 and ok.json()["cost"] == pytest.approx(7.0, rel=1e-3)
            over = await alice.post("/v1/leases/alice-lease/extend", json={"hours": 2})
            assert error_of(over) == (403, "spend_limit_exceeded")
            too_long = await alice.post("/v1/leases/alice-lease/extend", json={"hours": 8000})
            assert error_of(too_long) == (422, "duration_exceeds_limit")
            nothing = await alice.post(
                "/v1/leases", json={"count": 1, "duration_hours": 1, "max_price_per_gpu_hour": 9}
            )
            assert error_of(nothing) == (409, "no_capacity")
            bad = await alice.post("/v1/leases", json={"count": 0, "duration_hours": 1})
            assert error_of(bad) == (422, "invalid_request")
            junk = await alice.post(
                "/v1/leases", content=b"{not json", headers={"Content-Type": "application/json"}
            )
            assert error_of(junk) == (422, "invalid_request")
            reserved = await alice.post(
                "/v1/leases/alice-lease/jobs",
                json={"image": "x", "env": {"CUDA_VISIBLE_DEVICES": "0"}},
            )
            assert error_of(reserved) == (422, "invalid_request")
            assert error_of(await alice.get("/v1/nowhere")) == (404, "not_found")
            assert error_of(await alice.put("/v1/leases")) == (405, "method_not_allowed")


async def test_oversized_bodies_and_fast_clients_are_refused(tmp_path: Path) -> None:
    settings = RenterApiSettings(max_body_bytes=2048, rate_limit_per_minute=60, rate_limit_burst=5)
    async with (
        renter_api(tmp_path, settings) as api,
        httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {api.keys['bob']}"}
        ) as http,
    ):
        big = {"image": "x", "command": ["y" * 4096]}
        assert error_of(await http.post("/v1/leases/x/jobs", json=big)) == (413, "too_large")

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b" " * 1024

        streamed = await http.post(
            "/v1/leases/x/jobs", content=chunked(), headers={"Content-Type": "application/json"}
        )
        assert error_of(streamed) == (413, "too_large")
        answers = [await http.get("/v1/leases") for _ in range(6)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        limited = answers[-1]
        assert error_of(limited) == (429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # the limit is per key: another renter is not slowed down
        other = await http.get(
            "/v1/leases", headers={"Authorization": f"Bearer {api.keys['alice']}"}
        )
        assert other.status_code == 200


# --------------------------------------------------------------------------- schemathesis


@pytest.fixture
def asgi_api(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """The app for schemathesis, which calls it from its own event loops: the engine keeps no
    connection between calls (NullPool), so none outlives its loop."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"

    async def prepare() -> str:
        engine = create_engine(url)
        try:
            await upgrade_engine(engine)
        finally:
            await engine.dispose()
        store = SqlStore(create_engine(url, poolclass=NullPool))
        key = new_key()
        renter = await store.leases.add_renter("alice", hash_key(key), spend_limit=5.0, now=NOW)
        now = datetime.now(UTC)
        await store.leases.insert_lease(
            lease_row(renter.id, "L1", created_at=now, started_at=now,
                      ends_at=now + timedelta(hours=1))
        )  # fmt: skip
        return key

    key = run_async(prepare)
    store = SqlStore(create_engine(url, poolclass=NullPool))
    settings = RenterApiSettings(rate_limit_per_minute=1_000_000, rate_limit_burst=1_000_000)
    app = create_renter_app(store=store.leases, manager=lease_manager(store), settings=settings)
    yield app, key


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_endpoint_survives_bad_input(asgi_api: tuple[Any, str], mode: Any) -> None:
    """Every operation of the OpenAPI schema, with data that fits it and data that does not:
    never a 5xx, only documented statuses and content types, bodies that match the schema.
    (Driven through hypothesis directly: schemathesis's pytest plugin does not run on the
    pytest this project uses.)"""
    app, key = asgi_api
    api = schemathesis.openapi.from_asgi("/v1/openapi.json", app)
    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the schema of every route loads
        operations.append(result.ok())
    assert len(operations) == 12  # every route of the API
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    for operation in operations:

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=checks)

        run()


async def test_deeply_nested_and_unterminated_json_is_a_typed_400(tmp_path: Path) -> None:
    async with renter_api(tmp_path) as api:
        headers = {
            "Authorization": f"Bearer {api.keys['alice']}",
            "Content-Type": "application/json",
        }
        async with httpx.AsyncClient(base_url=api.url, headers=headers) as http:
            for body in (
                b'{"model": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",  # past any parser's depth
                b"[" * 500_000,  # never closed
                b'{"model": "H100", "count": 1e999999}',  # a number no float holds
            ):
                answer = await http.post("/v1/leases", content=body)
                assert answer.status_code in (400, 422), answer.text
                assert error_of(answer)[1] in ("malformed", "invalid_request")
            # and the API still serves the same renter afterwards
            assert (await http.get("/v1/leases")).status_code == 200
