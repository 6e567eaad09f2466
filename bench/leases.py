"""Leases on one machine: receipts countersigned and paged, jobs routed through miner to worker.

    python bench/leases.py                 # 200 receipts, 20 jobs
    python bench/leases.py --receipts 500 --jobs 50
    python bench/leases.py --quick         # 20 receipts, 3 jobs: a smoke run
    python bench/leases.py --json out.json # also write the figures as JSON

Everything runs in this process on 127.0.0.1: the miner's API (uvicorn), its worker hub, a worker
runtime with the subprocess runner, and a validator's ``MinerClient``, with real offline wallets
and a real SQLite file. It reports, side by side:

* receipt round trip (validator signs, miner checks, countersigns and stores durably, validator
  verifies the miner's signature): p50 and rate;
* paging: ``GET /receipts`` of 200 and verifying both signatures of each, per receipt;
* a trivial job (``python -c pass``) from submit to its final state through the whole chain,
  against spawning the same process directly: the routing overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import bittensor as bt

from byteleap.chain import MetagraphView, NeuronView
from byteleap.config.miner import MinerApiSection, WorkerServerSection
from byteleap.crypto import WorkerKey
from byteleap.leases.receipts import Receipt, verify_signatures
from byteleap.protocol.worker_link.jobs import (
    JobAccepted,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from byteleap.sessions.worker_agent import WorkerAgent
from daemonkit.http import EmbeddedServer
from daemonkit.logs import configure_logging
from neurons.common.miner_client import MinerClient, verify_hotkey_signature
from neurons.miner.api import create_app
from neurons.miner.auth import ValidatorGate
from neurons.miner.authorized import AuthorizedKeys
from neurons.miner.hub import WorkerHub
from neurons.miner.store import MinerStore
from workers.backends.numpy_backend import NumpyBackend
from workers.backends.select import advertise_devices
from workers.compute import ChallengeExecutor
from workers.inventory import collect_inventory
from workers.jobs.manager import JobManager
from workers.jobs.subprocess_runner import SubprocessRunner
from workers.runtime import LinkSettings, WorkerRuntime

T0 = 1_800_000_000


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench set-up did not come up")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def worker_runtime(url: str, key: WorkerKey, jobs: JobManager) -> AsyncIterator[str]:
    """A worker on the NumPy backend with the subprocess job runner; yields its device UUID."""
    backend = NumpyBackend.for_worker(key.public_key, "bench CPU", threads=1)
    inventory, _ = collect_inventory(nvml=None, backends=["numpy"])
    agent = WorkerAgent(
        key, advertise_devices(inventory, backend), agent_version="bench", job_runner="subprocess"
    )
    runtime = WorkerRuntime(
        agent,
        ChallengeExecutor(backend, key, clock=time.perf_counter),
        LinkSettings(url, 1 << 24, 5.0, 0.05, 0.2),
        jobs=jobs,
    )
    task = asyncio.create_task(runtime.run())
    try:
        yield backend.devices()[0].uuid
    finally:
        runtime.request_exit()
        await asyncio.wait_for(task, 30)


def wallet(root: Path, name: str) -> bt.Wallet:
    w = bt.Wallet(name, "default", path=str(root))
    w.create_new_coldkey(use_password=False, suppress=True)
    w.create_new_hotkey(use_password=False, suppress=True)
    return w


async def run(receipts: int, jobs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        miner_w, validator_w = wallet(root, "miner"), wallet(root, "validator")
        miner_hk, validator_hk = miner_w.hotkey.ss58_address, validator_w.hotkey.ss58_address
        view = MetagraphView(
            netuid=128,
            block=1,
            neurons=(NeuronView(0, validator_hk, "c", 10_000.0, True),),
        )
        key = WorkerKey.generate()
        section = WorkerServerSection(
            host="127.0.0.1", port=0, authorized_keys_file=root / "keys",
            authorized_keys=[key.public_key.hex()],
        )  # fmt: skip
        hub = WorkerHub(section, AuthorizedKeys.from_config(section), miner_hk)
        store = MinerStore(root / "miner.sqlite3")
        clock = Clock()
        app = create_app(
            miner_hotkey=miner_hk,
            signer=miner_w.hotkey.sign,
            gate=ValidatorGate(miner_hk, metagraph_source=lambda: view, min_stake=1.0),
            workers=hub,
            config=MinerApiSection(request_timeout_s=30.0),
            clock=clock,
            store=store,
            netuid=128,
            rate_per_second=100_000.0,
            rate_burst=100_000,
        )
        server = EmbeddedServer(app, "127.0.0.1", 0, name="validator API")
        await hub.start()
        await server.start()
        url = server.url
        manager = JobManager(
            SubprocessRunner(stop_timeout_s=1.0), root / "jobs",
            max_output_bytes=1 << 16, max_artifact_bytes=1 << 20, max_parallel=4,
        )  # fmt: skip
        async with (
            worker_runtime(f"ws://127.0.0.1:{hub.port}/worker", key, manager) as device,
            MinerClient(validator_w, miner_hk, url, timeout=30) as client,
        ):
            await until(hub.summaries)
            worker = key.public_key.hex()
            started = await client.forward(
                worker, LeaseStart(lease_id="L", gpu_uuids=[device], ends_at=T0 + 10**7)
            )
            assert isinstance(started, LeaseAck) and started.accepted
            clock.now = T0 + 3600 * (receipts + 1)

            def receipt(seq: int) -> Receipt:
                start = T0 + 3600 * max(0, seq - 1)
                end = start if seq == 0 else start + 3600
                return Receipt(
                    netuid=128, lease_id="L", seq=seq, kind="start" if seq == 0 else "hourly",
                    validator_hotkey=validator_hk, miner_hotkey=miner_hk,
                    worker_pubkey=key.public_key.hex(), gpu_uuids=[device], gpus=1,
                    price_per_gpu_hour_micros=2_000_000, period_start=start, period_end=end,
                    issued_at=end,
                )  # fmt: skip

            times = []
            began = time.perf_counter()
            for seq in range(receipts):
                t = time.perf_counter()
                await client.submit_receipt(receipt(seq))
                times.append(time.perf_counter() - t)
            total = time.perf_counter() - began
            out["receipt_round_trip_p50_ms"] = statistics.median(times) * 1e3
            out["receipts_per_s"] = receipts / total

            t = time.perf_counter()
            page = await client.receipts(limit=min(200, receipts))
            fetched = time.perf_counter() - t
            t = time.perf_counter()
            for signed in page.receipts:
                verify_signatures(signed, verify_hotkey_signature)
            verified = time.perf_counter() - t
            out["page_fetch_per_receipt_ms"] = fetched / len(page.receipts) * 1e3
            out["verify_both_signatures_per_receipt_ms"] = verified / len(page.receipts) * 1e3

            spec = JobSpec(image="local", command=[sys.executable, "-c", "pass"], timeout_s=60)
            latencies = []
            for i in range(jobs):
                t = time.perf_counter()
                job_id = f"j{i}"
                submit = JobSubmit(request_id="s", lease_id="L", job_id=job_id, spec=spec)
                accepted = await client.forward(worker, submit)
                assert isinstance(accepted, JobAccepted), accepted
                while True:
                    query = JobStatusQuery(request_id="q", lease_id="L", job_id=job_id)
                    status = await client.forward(worker, query)
                    assert isinstance(status, JobStatus), status
                    if status.job.final:
                        break
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - t)
            direct = []
            for _ in range(jobs):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], check=True)  # noqa: ASYNC221
                direct.append(time.perf_counter() - t)
            out["job_submit_to_final_p50_ms"] = statistics.median(latencies) * 1e3
            out["same_process_spawned_directly_p50_ms"] = statistics.median(direct) * 1e3
            out["job_routing_overhead_ratio"] = (
                out["job_submit_to_final_p50_ms"] / out["same_process_spawned_directly_p50_ms"]
            )
        await server.stop()
        await hub.stop()
        store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--receipts", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="20 receipts and 3 jobs")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.receipts, args.jobs = 20, 3
    configure_logging("WARNING")
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the figures
        figures = asyncio.run(run(args.receipts, args.jobs))
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}, indent=2))
    if args.json:
        out = {"receipts": args.receipts, "jobs": args.jobs, **figures}
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
