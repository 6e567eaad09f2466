"""Real processes: a devchain file, `byteleap-miner run`, `byteleap-worker run`, and a validator
calling the miner with btauth/1-signed requests. Nothing is faked but the chain."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from byteleap.chain import Endpoint
from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.protocol.miner_api.challenges import ChallengeRequest, OpeningsRequest
from byteleap.protocol.worker_link.challenges import OpeningRequest
from neurons.chain import DevChain, DevChainParams
from neurons.common.miner_client import MinerClient
from tests.support.ports import free_port
from tests.wallets import coldkey_of, make_wallet
from workers.keys import write_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARAMS = ChallengeParams(m=128, n=128, k=128, v=15, stages=3)


def start(module: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-c", f"from {module} import main; main()", "run", "-c", str(config)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "BYTELEAP_LOGGING__FORMAT": "json"},
        )


@contextmanager
def stopped_on_exit(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def network(tmp_path: Path) -> dict[str, Any]:
    chain_file = tmp_path / "chain.db"
    chain = DevChain.create(chain_file, DevChainParams(block_seconds=0.25))
    miner_wallet, miner_hotkey = make_wallet(tmp_path / "wallets", "miner")
    validator_wallet, validator_hotkey = make_wallet(tmp_path / "wallets", "validator")
    chain.register(validator_hotkey, coldkey_of(validator_wallet), stake=5000.0,
                   validator_permit=True)  # fmt: skip
    worker_key = write_key(tmp_path / "worker" / "worker.key")
    api_port, workers_port = free_port(), free_port()
    miner_cfg = {
        "wallet": {"name": "miner", "hotkey": "default", "path": str(tmp_path / "wallets")},
        "chain": {"network": f"devchain:{chain_file}", "netuid": 128, "sync_interval_s": 1},
        "workers": {"host": "127.0.0.1", "port": workers_port,
                    "authorized_keys": [worker_key.public_key.hex()]},
        "api": {"host": "127.0.0.1", "port": api_port, "external_ip": "127.0.0.1"},
        "paths": {"data_dir": str(tmp_path / "miner")},
        "metrics": {"enabled": False},
    }  # fmt: skip
    worker_cfg = {
        "link": {"miner_url": f"ws://127.0.0.1:{workers_port}/worker",
                 "key_file": str(tmp_path / "worker" / "worker.key"),
                 "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "compute": {"backend": "numpy"},
        "paths": {"data_dir": str(tmp_path / "worker")},
        "metrics": {"enabled": False},
    }  # fmt: skip
    (tmp_path / "miner.yaml").write_text(yaml.safe_dump(miner_cfg))
    (tmp_path / "worker.yaml").write_text(yaml.safe_dump(worker_cfg))
    return {
        "chain": chain,
        "miner_wallet": miner_wallet,
        "miner_hotkey": miner_hotkey,
        "validator_wallet": validator_wallet,
        "worker_key": worker_key,
        "api_port": api_port,
    }


async def wait_for_worker(client: MinerClient, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            inventory = await client.inventory()
        except Exception:  # the miner is still starting
            inventory = None
        if inventory and inventory.workers:
            return inventory.workers[0].gpus[0].uuid
        await asyncio.sleep(0.2)
    raise AssertionError("the worker never appeared in the miner's inventory")


def test_a_validator_challenges_a_real_worker_through_a_real_miner(tmp_path: Path) -> None:
    net = network(tmp_path)
    net["chain"].register(net["miner_hotkey"], coldkey_of(net["miner_wallet"]))
    miner = start("neurons.miner.cli", tmp_path / "miner.yaml", tmp_path / "miner.log")
    worker = start("workers.cli", tmp_path / "worker.yaml", tmp_path / "worker.log")

    async def validate() -> int:
        base = f"http://127.0.0.1:{net['api_port']}"
        async with MinerClient(net["validator_wallet"], net["miner_hotkey"], base) as client:
            uuid = await wait_for_worker(client, time.monotonic() + 60)
            seed = random.randbytes(32)
            request = ChallengeRequest(
                challenge_id="e2e-1", worker_pubkey=net["worker_key"].public_key.hex(),
                gpu_uuids=[uuid], seed=seed, params=PARAMS, deadline_ms=30_000,
            )  # fmt: skip
            response = await client.challenge(request)  # also checks the miner's signature
            (gpu,) = response.gpus
            assert gpu.verify(net["worker_key"].public_key, "e2e-1")
            samples = draw_sample(PARAMS, SamplingParams(), random.Random(5))
            revealed = await client.reveal(
                OpeningsRequest(
                    challenge_id="e2e-1", worker_pubkey=request.worker_pubkey,
                    openings=[OpeningRequest(gpu_uuid=uuid, stage=s.stage, rows=list(s.rows))
                              for s in samples],
                )
            )  # fmt: skip
            binding = Binding(
                miner_hotkey=net["miner_hotkey"],
                worker_pubkey=net["worker_key"].public_key,
                gpu_uuid=uuid,
            )
            commitment = Commitment(binding, seed, PARAMS, tuple(gpu.root_list()))
            openings = [
                OpenedRow(o.stage, o.row, o.values, tuple(o.proof_list()))
                for o in revealed.openings
            ]
            return verify_openings(commitment, samples, openings)

    with stopped_on_exit(worker, miner):
        checked = asyncio.run(validate())
        assert checked == 3 * 16 * 4
        me = net["chain"].metagraph().by_hotkey(net["miner_hotkey"])
        assert me is not None and me.axon == Endpoint("127.0.0.1", net["api_port"])
    assert miner.returncode == 0, (tmp_path / "miner.log").read_text()[-2000:]
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]


def test_an_unregistered_miner_stops_with_a_clear_message(tmp_path: Path) -> None:
    network(tmp_path)
    miner = start("neurons.miner.cli", tmp_path / "miner.yaml", tmp_path / "miner.log")
    assert miner.wait(timeout=60) == 3
    assert "not registered" in (tmp_path / "miner.log").read_text()


def test_workers_come_back_after_the_miner_restarts(tmp_path: Path) -> None:
    net = network(tmp_path)
    net["chain"].register(net["miner_hotkey"], coldkey_of(net["miner_wallet"]))
    base = f"http://127.0.0.1:{net['api_port']}"

    async def worker_uuid() -> str:
        async with MinerClient(net["validator_wallet"], net["miner_hotkey"], base) as client:
            return await wait_for_worker(client, time.monotonic() + 60)

    async def challenge(uuid: str) -> bool:
        async with MinerClient(net["validator_wallet"], net["miner_hotkey"], base) as client:
            response = await client.challenge(
                ChallengeRequest(
                    challenge_id="after-restart", worker_pubkey=net["worker_key"].public_key.hex(),
                    gpu_uuids=[uuid], seed=random.randbytes(32), params=PARAMS, deadline_ms=30_000,
                )
            )  # fmt: skip
            return response.gpus[0].verify(net["worker_key"].public_key, "after-restart")

    worker = start("workers.cli", tmp_path / "worker.yaml", tmp_path / "worker.log")
    first = start("neurons.miner.cli", tmp_path / "miner.yaml", tmp_path / "miner-1.log")
    with stopped_on_exit(worker, first):
        uuid = asyncio.run(worker_uuid())
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        second = start("neurons.miner.cli", tmp_path / "miner.yaml", tmp_path / "miner-2.log")
        with stopped_on_exit(second):
            assert asyncio.run(worker_uuid()) == uuid  # the same worker, reconnected
            assert asyncio.run(challenge(uuid))
    assert worker.returncode == 0
