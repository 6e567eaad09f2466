"""One device behind several claims cannot pass them all in one epoch (SPEC 4.5).

Everything is real but the chain (a devchain file): two miner daemons on 127.0.0.1, the validator's
daemon object driving one epoch (``challenge_round``), its signed HTTP client, the verifier's
process pool and a ``SqlStore`` on SQLite. The sybil is three real cheating-worker *processes*
(``python -m devnet.cheat_worker --mode sybil``), two behind one miner and one behind the
other, each claiming one CPU device of its own. Every claim is computed honestly, but all three
share one simulated device: a file lock held for each whole paced run, so the device serves them
one after another. An honest worker, paced to the same speed, runs next to them.

The epoch dispatches every claim at once; each paced run takes :data:`DEVICE_SECONDS`, and the
deadline is 1.5 x that plus the round trip. So of the claims sharing the device exactly the first
one served (the first to finish) is verified, and the ones that queued behind it time out, while
the honest device of the same speed is verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from byteleap.challenge.params import ChallengeParams
from byteleap.config import MinerConfig, ValidatorConfig
from byteleap.crypto import WorkerKey
from byteleap.errors import Outcome
from devnet.cheat_devices import SharedDevice
from neurons.chain import DevChain, DevChainClient, DevChainParams
from neurons.miner.daemon import MinerDaemon
from neurons.validator.daemon import ValidatorDaemon
from neurons.validator.store import SqlStore, open_store
from tests.support.ports import free_port
from tests.support.worker import running_worker
from tests.wallets import coldkey_of, make_wallet
from workers.backends.base import Device
from workers.backends.numpy_backend import NumpyBackend, cpu_device_uuid
from workers.keys import read_key, write_key

ROOT = Path(__file__).resolve().parents[2]
CPU_PARAMS = ChallengeParams(m=64, n=64, k=64, v=15, stages=4)
#: what one paced run of the CPU challenge takes on the shared device (and on the honest one)
DEVICE_SECONDS = 1.0
PACE_FLOPS = CPU_PARAMS.flops / DEVICE_SECONDS
#: a worker process's start-up (Python, NumPy, the link) on a busy 2-core machine
START_S = 60.0


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"{what} not reached in time"
        await asyncio.sleep(0.2)


class PacedBackend(NumpyBackend):
    """The honest NumPy backend, paced like every devnet device."""

    def __init__(self, device: Device, **kwargs: Any) -> None:
        kwargs["pace_flops"] = PACE_FLOPS
        super().__init__(device, **kwargs)


# --------------------------------------------------------------------------- the network


@dataclass
class Net:
    root: Path
    chain_file: Path
    chain: DevChain
    validator_wallet: Any
    validator_hotkey: str


@dataclass
class Miner:
    hotkey: str
    workers_url: str


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    chain_file = tmp_path / "chain.db"
    chain = DevChain.create(
        chain_file, DevChainParams(block_seconds=0.25, tempo=20, weights_rate_limit=4)
    )
    wallet, hotkey = make_wallet(tmp_path / "wallets", "validator")
    chain.register(hotkey, coldkey_of(wallet), stake=5000.0, validator_permit=True)
    try:
        yield Net(tmp_path, chain_file, chain, wallet, hotkey)
    finally:
        chain.close()


@contextlib.asynccontextmanager
async def running_miner(net: Net, name: str, pubkeys: Sequence[str]) -> AsyncIterator[Miner]:
    """A real miner daemon in this event loop, registered on the devchain and serving."""
    wallet, hotkey = make_wallet(net.root / "wallets", name)
    net.chain.register(hotkey, coldkey_of(wallet))
    api_port, workers_port = free_port(), free_port()
    cfg = MinerConfig.model_validate(
        {
            "wallet": {"name": name, "hotkey": "default", "path": str(net.root / "wallets")},
            "chain": {"network": f"devchain:{net.chain_file}", "sync_interval_s": 0.5},
            "workers": {
                "host": "127.0.0.1",
                "port": workers_port,
                "authorized_keys": list(pubkeys),
            },
            "api": {"host": "127.0.0.1", "port": api_port, "external_ip": "127.0.0.1"},
            "paths": {"data_dir": str(net.root / name)},
            "metrics": {"enabled": False},
        }
    )
    daemon = MinerDaemon(cfg, hotkey, wallet.hotkey.sign, net.chain.client(hotkey))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))

    async def serving() -> bool:
        if task.done():
            task.result()  # raise the miner's error
        neuron = net.chain.metagraph().by_hotkey(hotkey)
        return neuron is not None and neuron.axon is not None

    await until(serving, 30, f"{name} serving its endpoint")
    try:
        yield Miner(hotkey, f"ws://127.0.0.1:{workers_port}/worker")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.shield(task), 30)


def validator_config(net: Net) -> ValidatorConfig:
    return ValidatorConfig.model_validate(
        {
            "wallet": {"name": "validator", "hotkey": "default", "path": str(net.root / "wallets")},
            "chain": {"network": f"devchain:{net.chain_file}", "sync_interval_s": 1},
            "database": {"url": "sqlite+aiosqlite:///unused.db"},
            "challenge": {
                "interval_s": 3600,  # no epoch of its own: the test starts the one it checks
                "jitter": 0.0,
                "plan_interval_s": 0.2,
                "cpu_workers": True,
                # a CPU device is expected at exactly the pace, and calibration cannot lower it
                "cpu_expected_flops": PACE_FLOPS,
                "calibration_floor": 1.0,
                "deadline_factor": 1.5,
                "deadline_grace_s": 0.5,
                "epoch_spread_s": 0.25,
                "reveal_timeout_s": 10,
                "verifier_processes": 1,
                "cpu": CPU_PARAMS.model_dump(),
                "sampling": {"stages": 2, "rows": 8, "columns": 4},
            },
            "miners": {"poll_interval_s": 1, "request_timeout_s": 5},
            "scoring": {"weights_interval_blocks": 8, "weights_check_interval_s": 0.5},
            "paths": {"data_dir": str(net.root / "validator")},
            "metrics": {"enabled": False},
            "api": {"port": 0},
        }
    )


@contextlib.asynccontextmanager
async def validator(net: Net, store: SqlStore) -> AsyncIterator[ValidatorDaemon]:
    """The validator's daemon object (its loops not started), after its start-up steps."""
    daemon = ValidatorDaemon(
        validator_config(net),
        signer=net.validator_wallet,
        hotkey=net.validator_hotkey,
        store=store,
        chain=DevChainClient(net.chain, net.validator_hotkey),
        rng=random.Random(0),
    )
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.shutdown()


# --------------------------------------------------------------------------- the sybil


@dataclass
class SybilWorker:
    name: str
    key: WorkerKey
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pubkey(self) -> str:
        return self.key.public_key.hex()

    @property
    def claim(self) -> str:
        return cpu_device_uuid(self.key.public_key)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYTELEAP_")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def sybil_key(root: Path, name: str) -> tuple[WorkerKey, Path]:
    key_file = root / name / "worker.key"
    return write_key(key_file), key_file


@contextlib.contextmanager
def sybil_workers(
    root: Path, lock: Path, keyed: Sequence[tuple[str, Path, str]]
) -> Iterator[list[SybilWorker]]:
    """``(name, key file, miner url)`` -> real cheating-worker processes, each claiming one CPU
    device, all sharing the device behind ``lock``. Stopped (SIGTERM, then SIGKILL) at the end."""
    workers: list[SybilWorker] = []
    try:
        for name, key_file, url in keyed:
            config = {
                "link": {
                    "miner_url": url,
                    "key_file": str(key_file),
                    "connect_timeout_s": 5.0,
                    "reconnect_min_s": 0.1,
                    "reconnect_max_s": 0.5,
                },
                "compute": {"backend": "numpy", "pace_flops": PACE_FLOPS},
                "jobs": {"runner": "none"},
                "paths": {"data_dir": str(key_file.parent)},
                "metrics": {"enabled": False},
            }
            config_file = root / f"{name}.yaml"
            config_file.write_text(yaml.safe_dump(config))
            log = root / f"{name}.log"
            argv = [
                *(sys.executable, "-m", "devnet.cheat_worker", "run"),
                *("-c", str(config_file), "--mode", "sybil", "--claims", "1"),
                *("--device-lock", str(lock)),
            ]
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT, env=worker_env(), cwd=ROOT
                )
            workers.append(SybilWorker(name, read_key(key_file), process, log))
        yield workers
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in workers:
            try:
                worker.process.wait(10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(10)


async def online(daemon: ValidatorDaemon, pubkeys: set[str], sybils: list[SybilWorker]) -> bool:
    for worker in sybils:
        code = worker.process.poll()
        assert code is None, f"{worker.name} exited with {code}:\n{worker.tail()}"
    await daemon.sync.sync()
    await daemon.poll_once()
    rows = await daemon.store.workers(datetime.now(UTC))
    idle = {w.worker_pubkey for w in rows if w.online and w.state == "idle"}
    return pubkeys <= idle


# --------------------------------------------------------------------------- the test


@pytest.mark.slow
async def test_one_device_behind_three_claims_passes_only_the_first_in_an_epoch(
    net: Net,
) -> None:
    lock = net.root / "devices" / "sybil.lock"
    keys = {name: sybil_key(net.root, name) for name in ("a-1", "a-2", "b-1")}
    honest = WorkerKey.generate()
    a_keys = [keys["a-1"][0].public_key.hex(), keys["a-2"][0].public_key.hex()]
    b_keys = [keys["b-1"][0].public_key.hex(), honest.public_key.hex()]
    store = await open_store(f"sqlite+aiosqlite:///{net.root / 'validator.db'}", auto_upgrade=True)
    try:
        async with (
            running_miner(net, "sybil-a", a_keys) as miner_a,
            running_miner(net, "sybil-b", b_keys) as miner_b,
            running_worker(miner_b.workers_url, honest, backend_type=PacedBackend) as fair,
            validator(net, store) as daemon,
        ):
            plan = [
                ("a-1", keys["a-1"][1], miner_a.workers_url),
                ("a-2", keys["a-2"][1], miner_a.workers_url),
                ("b-1", keys["b-1"][1], miner_b.workers_url),
            ]
            with sybil_workers(net.root, lock, plan) as sybils:
                everyone = {w.pubkey for w in sybils} | {honest.public_key.hex()}
                await until(
                    lambda: online(daemon, everyone, sybils),
                    START_S,
                    "every worker online and idle",
                )
                results = await daemon.challenge_round()
                epoch = {r.challenge_id for r in results}

                def runs() -> list[dict[str, Any]]:
                    ledger = SharedDevice(lock).ledger()
                    return [e for e in ledger if e["challenge_id"] in epoch]

                async def all_served() -> bool:
                    return len(runs()) >= len(sybils)

                # the epoch closed the late claims at their deadline; the device still serves
                # them to the end (one run after another)
                await until(all_served, 4 * DEVICE_SECONDS * len(sybils), "every claim served")
                served = sorted(runs(), key=lambda e: e["began"])
                logs = "\n".join(f"--- {w.name}\n{w.tail()}" for w in sybils)

            verdicts = {v.gpu_uuid: v for r in results for v in r.verdicts}
            claims = [w.claim for w in sybils]
            # one epoch challenged every claim, and the honest device, at once
            assert set(claims) | {fair.device_uuid} <= set(verdicts), (verdicts, logs)
            # the shared device served every claim, one after another
            assert sorted(e["claim"] for e in served) == sorted(claims), (served, logs)
            for before, after in itertools.pairwise(served):
                assert before["ended"] <= after["began"], served
                assert after["ended"] - after["began"] >= DEVICE_SECONDS * 0.95, served
            # exactly the first to finish is verified; the claims that queued behind it are late
            first, *queued = (e["claim"] for e in served)
            assert verdicts[first].outcome is Outcome.VERIFIED, (verdicts[first], logs)
            for claim in queued:
                verdict = verdicts[claim]
                assert (verdict.outcome, verdict.failure) == (Outcome.TIMEOUT, "timeout"), (
                    verdict,
                    logs,
                )
            # a device of the same speed that serves only its own claim meets the deadline
            assert verdicts[fair.device_uuid].outcome is Outcome.VERIFIED
            # nobody is called a fraud: every claim was computed honestly
            assert not any(v.outcome is Outcome.FRAUD for v in verdicts.values())
            rows = {row.gpu_uuid: row for row in await store.recent_challenges(limit=50)}
            elapsed = rows[first].elapsed_s
            assert elapsed is not None and elapsed >= DEVICE_SECONDS * 0.95, rows[first]
    finally:
        await store.close()
