"""SIGKILL the worker that holds a lease, then the miner that routed it.

What the worker and miner guarantee today (docs/leases-and-receipts.md, "State that survives
restarts"): a lease lives in the worker process, so a killed worker comes back holding none and
refuses the lease's jobs with the typed reason ``not_leased``; while it is gone the miner
answers job requests with ``unavailable`` (409) and no longer lists it. The miner keeps its
lease table and every countersigned receipt in SQLite, so after a SIGKILL of the miner the
receipts (the billing data) are still served by ``GET /receipts`` with both signatures.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from byteleap.errors import PeerUnavailable
from byteleap.leases.receipts import verify_signatures
from byteleap.protocol.miner_api.forward import LeaseStatusRequest
from byteleap.protocol.miner_api.receipts import Receipt
from byteleap.protocol.worker_link.jobs import JobAccepted, JobRefused, JobSpec, JobSubmit
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from neurons.common.miner_client import verify_hotkey_signature
from tests.support.network import NETUID, Network, eventually, network, running, worker_uuid

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.slow]

LEASE = "lease-chaos-1"


def receipt(net: Network, uuid: str, seq: int, start: int, end: int) -> Receipt:
    return Receipt(
        netuid=NETUID,
        lease_id=LEASE,
        seq=seq,
        kind="start" if seq == 0 else "hourly",
        validator_hotkey=net.validator_hotkey,
        miner_hotkey=net.miner_hotkey,
        worker_pubkey=net.worker_keys[0].public_key.hex(),
        gpu_uuids=[uuid],
        gpus=1,
        price_per_gpu_hour_micros=2_000_000,
        period_start=start,
        period_end=end,
        issued_at=end,
    )


def job(job_id: str) -> JobSubmit:
    spec = JobSpec(image="local", command=[sys.executable, "-c", "print('hi')"], timeout_s=60)
    return JobSubmit(request_id=f"r-{job_id}", lease_id=LEASE, job_id=job_id, spec=spec)


def test_a_leased_worker_killed_loses_its_lease_and_receipts_survive_the_miner(
    tmp_path: Path,
) -> None:
    net = network(
        tmp_path, worker={"jobs": {"runner": "subprocess", "allow_subprocess_runner": True}}
    )
    worker = net.workers[0]
    pubkey = net.worker_keys[0].public_key.hex()

    async def listed() -> bool:
        async with net.client(timeout=5) as client:
            inventory = await client.inventory()
        return any(w.worker_pubkey == pubkey for w in inventory.workers)

    async def gone() -> bool:
        return not await listed()

    async def scenario() -> None:
        net.miner.start()
        worker.start()
        uuid = await worker_uuid(net)
        async with net.client() as client:
            start = LeaseStart(lease_id=LEASE, gpu_uuids=[uuid], ends_at=int(time.time()) + 3600)
            started = await client.forward(pubkey, start)
            assert isinstance(started, LeaseAck) and started.accepted, started
            t0 = int(time.time())
            first = await client.submit_receipt(receipt(net, uuid, 0, t0, t0))
            accepted = await client.forward(pubkey, job("before-kill"))
            assert isinstance(accepted, JobAccepted), accepted
            await asyncio.sleep(1.1)  # an hourly receipt must be issued after its period ends
            t1 = int(time.time())
            second = await client.submit_receipt(receipt(net, uuid, 1, t0, t1))

        worker.kill9()
        # the miner reports the worker gone: not listed, and its jobs unreachable (409)
        await eventually(gone, 30, "the miner to drop the killed worker", net)
        async with net.client() as client:
            with pytest.raises(PeerUnavailable):
                await client.forward(pubkey, job("while-gone"))

        worker.start()
        await worker_uuid(net)
        async with net.client() as client:
            inventory = await client.inventory()
            (summary,) = [w for w in inventory.workers if w.worker_pubkey == pubkey]
            assert summary.state != "leased", summary  # the restarted process holds no lease
            refused = await client.forward(pubkey, job("after-restart"))
            assert isinstance(refused, JobRefused) and refused.reason == "not_leased", refused
            # the miner still routes the lease it recorded (its table is durable)
            status = await client.lease_status(LeaseStatusRequest(lease_id=LEASE))
            assert status.state == "active", status

        net.miner.kill9()
        net.miner.start()
        await worker_uuid(net)
        async with net.client() as client:
            page = await client.receipts(after=0, limit=200)
            status = await client.lease_status(LeaseStatusRequest(lease_id=LEASE))
        assert status.state == "active", status
        assert page.cursors == [first.cursor, second.cursor]
        assert [r.receipt for r in page.receipts] == [first.signed.receipt, second.signed.receipt]
        for signed in page.receipts:
            verify_signatures(signed, verify_hotkey_signature)  # both signatures still hold
        assert page.receipts == [first.signed, second.signed]

    with running(net):
        asyncio.run(scenario())
