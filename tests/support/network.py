"""A small network of real processes for the chaos and load suites.

One devchain file, one miner (``byteleap-miner``), its workers (``byteleap-worker``) and, when
asked, a validator (``byteleap-validator``), each started through its real command line with a
generated config, a real wallet or worker key, and JSON logs. Nothing is faked but the chain.

Processes are ordinary children of the test: :meth:`Proc.kill9` sends SIGKILL (no handler, no
clean-up: what a power cut or the OOM killer does) and :meth:`Proc.start` starts the same
process again with the same config, key and data directory. The teardown of :func:`network`
stops every child that is still running, so a failed test leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import bittensor as bt
import psutil
import yaml

from byteleap.config import MinerConfig, ValidatorConfig, WorkerConfig, validate_config
from byteleap.crypto import WorkerKey
from byteleap.errors import Outcome
from neurons.chain import DevChain, DevChainParams
from neurons.common.miner_client import MinerClient
from neurons.validator.store import ChallengeRow, SqlStore, open_store
from tests.support.ports import free_port
from tests.wallets import coldkey_of, make_wallet
from workers.keys import write_key

T = TypeVar("T")

NETUID = 128
VALIDATOR_STAKE = 10_000.0
MIN_VALIDATOR_STAKE = 1_000.0
#: the environment variable that carries the validator's database URL (never written to disk)
DATABASE_URL_ENV = "BYTELEAP_CHAOS_DATABASE_URL"
#: a CPU challenge that takes the NumPy backend a couple of seconds (about 2.5 ms a stage on the
#: development machine), so a test can see it in flight and kill a process in the middle of it
SLOW_CPU_CHALLENGE = {"m": 256, "n": 256, "k": 256, "v": 15, "stages": 800}
SLOW_CPU_FLOPS = 2 * 256**3 * 800
#: one BLAS thread per process: the suites run on two cores
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def clean_env() -> dict[str, str]:
    """This environment without ByteLeap settings (the suite's database URL must not reach a
    child), with JSON logs and one BLAS thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYTELEAP_")}
    return {**env, **ONE_THREAD, "BYTELEAP_LOGGING__FORMAT": "json"}


@dataclass
class Proc:
    """One daemon started through its command line; restartable with the same config."""

    name: str
    module: str
    config: Path
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Proc:
        assert not self.alive(), f"{self.name} is already running"
        self.starts += 1
        argv = [sys.executable, "-c", f"from {self.module} import main; main()"]
        with self.log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            self.popen = subprocess.Popen(
                [*argv, "run", "-c", str(self.config)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**clean_env(), **self.env},
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        assert self.popen is not None and self.alive(), f"{self.name} is not running"
        os.kill(self.popen.pid, signal.SIGKILL)
        assert self.popen.wait(timeout=30) == -signal.SIGKILL

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code (None if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=30)
        return self.popen.returncode

    def rss(self) -> int:
        """Resident memory of the process in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines of every run of this process (optionally only ``event``)."""
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                found.append(record)
        return found


@dataclass
class Network:
    root: Path
    chain: DevChain
    miner_wallet: bt.Wallet
    miner_hotkey: str
    validator_wallet: bt.Wallet
    validator_hotkey: str
    validator_uid: int
    worker_keys: list[WorkerKey]
    api_port: int
    workers_port: int
    database_url: str
    miner: Proc
    workers: list[Proc]
    validator: Proc

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def client(self, wallet: bt.Wallet | None = None, timeout: float = 30.0) -> MinerClient:
        """A validator's btauth/1 client of the miner (the network's validator by default)."""
        return MinerClient(wallet or self.validator_wallet, self.miner_hotkey, self.base_url,
                           timeout=timeout)  # fmt: skip

    def procs(self) -> list[Proc]:
        return [self.validator, self.miner, *self.workers]

    def logs(self) -> str:
        """The end of every process's log, for assertion messages."""
        return "\n".join(f"--- {p.name}\n{p.tail(25)}" for p in self.procs())

    async def store(self) -> SqlStore:
        """The validator's store, once the validator has created its schema."""

        async def opened() -> SqlStore | None:
            try:
                return await open_store(self.database_url, pool_size=2)
            except Exception:  # not created yet
                return None

        return await eventually(opened, 60, "the validator's database", self)


def network(
    root: Path,
    *,
    workers: int = 1,
    database_url: str | None = None,
    validator: Mapping[str, Any] | None = None,
    miner: Mapping[str, Any] | None = None,
    worker: Mapping[str, Any] | None = None,
    authorized: Sequence[str] = (),
) -> Network:
    """Write wallets, keys, configs and the devchain for one miner with ``workers`` workers and a
    validator. Mappings given as ``validator``/``miner``/``worker`` are merged into the generated
    configs section by section; ``authorized`` are more worker keys (hex) the miner admits.
    Nothing is started."""
    root = root.resolve()
    chain_file = root / "chain.db"
    params = DevChainParams(netuid=NETUID, tempo=20, block_seconds=0.25, weights_rate_limit=4)
    chain = DevChain.create(chain_file, params)
    wallets = root / "wallets"
    miner_wallet, miner_hotkey = make_wallet(wallets, "miner")
    validator_wallet, validator_hotkey = make_wallet(wallets, "validator")
    validator_uid = chain.register(validator_hotkey, coldkey_of(validator_wallet),
                                   stake=VALIDATOR_STAKE, validator_permit=True)  # fmt: skip
    chain.register(miner_hotkey, coldkey_of(miner_wallet))
    chain_section = {"network": f"devchain:{chain_file}", "netuid": NETUID, "sync_interval_s": 1.0}
    api_port, workers_port = free_port(), free_port()
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)

    def write(name: str, model: type[Any], config: dict[str, Any], **env: str) -> Path:
        validate_config(model, config, source=f"config of {name}", env=env)
        path = root / "configs" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def merged(base: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
        for key, value in (extra or {}).items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                base[key] = merged(base[key], value)
            else:
                base[key] = value
        return base

    keys, worker_procs = [], []
    for i in range(workers):
        name = f"worker-{i + 1}"
        key_file = root / "data" / name / "worker.key"
        keys.append(write_key(key_file))
        config = merged(
            {
                "link": {
                    "miner_url": f"ws://127.0.0.1:{workers_port}/worker",
                    "key_file": str(key_file),
                    "connect_timeout_s": 5.0,
                    "reconnect_min_s": 0.1,
                    "reconnect_max_s": 0.5,
                },
                "compute": {"backend": "numpy"},
                "paths": {"data_dir": str(root / "data" / name)},
                "metrics": {"enabled": False},
            },
            worker,
        )
        path = write(name, WorkerConfig, config)
        worker_procs.append(Proc(name, "workers.cli", path, root / "logs" / f"{name}.log"))

    miner_config = merged(
        {
            "wallet": {"name": "miner", "hotkey": "default", "path": str(wallets)},
            "chain": dict(chain_section),
            "workers": {
                "host": "127.0.0.1",
                "port": workers_port,
                "authorized_keys": [*(k.public_key.hex() for k in keys), *authorized],
            },
            "api": {
                "host": "127.0.0.1",
                "port": api_port,
                "external_ip": "127.0.0.1",
                "min_validator_stake": MIN_VALIDATOR_STAKE,
            },
            "paths": {"data_dir": str(root / "data" / "miner")},
            "metrics": {"enabled": False},
        },
        miner,
    )
    miner_proc = Proc("miner", "neurons.miner.cli", write("miner", MinerConfig, miner_config),
                      root / "logs" / "miner.log")  # fmt: skip

    env: dict[str, str] = {}
    database: dict[str, Any] = {}
    if database_url is not None:
        env[DATABASE_URL_ENV] = database_url
        database["url"] = {"env": DATABASE_URL_ENV}
    validator_config = merged(
        {
            "wallet": {"name": "validator", "hotkey": "default", "path": str(wallets)},
            "chain": dict(chain_section),
            "database": database,
            "challenge": {
                "interval_s": 1.0,
                "jitter": 0.0,
                "plan_interval_s": 0.3,
                # a long deadline (45 s) so that a process can be killed mid-challenge
                "cpu_workers": True,
                "cpu_expected_flops": SLOW_CPU_FLOPS / 30.0,
                "target_seconds": 100.0,
                "reveal_timeout_s": 15.0,
                "cpu": dict(SLOW_CPU_CHALLENGE),
            },
            "scoring": {
                "weights_interval_blocks": 8,
                "weights_check_interval_s": 0.5,
                "bucket_minutes": 1,
            },
            "miners": {"poll_interval_s": 0.5, "request_timeout_s": 5.0},
            "api": {"enabled": False},
            "paths": {"data_dir": str(root / "data" / "validator")},
            "metrics": {"enabled": False},
        },
        validator,
    )
    path = write("validator", ValidatorConfig, validator_config, **env)
    parsed = validate_config(ValidatorConfig, validator_config, source="validator", env=env)
    validator_proc = Proc("validator", "neurons.validator.cli", path,
                          root / "logs" / "validator.log", env)  # fmt: skip
    return Network(
        root=root,
        chain=chain,
        miner_wallet=miner_wallet,
        miner_hotkey=miner_hotkey,
        validator_wallet=validator_wallet,
        validator_hotkey=validator_hotkey,
        validator_uid=validator_uid,
        worker_keys=keys,
        api_port=api_port,
        workers_port=workers_port,
        database_url=parsed.database.resolve_url(env),
        miner=miner_proc,
        workers=worker_procs,
        validator=validator_proc,
    )


@contextmanager
def running(net: Network) -> Iterator[Network]:
    """Stop every process of ``net`` that is still running when the block ends."""
    try:
        yield net
    finally:
        for proc in net.procs():
            if proc.alive() and proc.popen is not None:
                proc.popen.send_signal(signal.SIGTERM)
        for proc in net.procs():
            proc.stop()
        net.chain.close()


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    timeout: float,
    what: str,
    net: Network | None = None,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something other than None (or False); fail after
    ``timeout`` seconds naming ``what`` and showing the processes' logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            logs = net.logs() if net is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")
        await asyncio.sleep(interval)


async def worker_uuid(net: Network, index: int = 0, timeout: float = 60.0) -> str:
    """The device UUID of worker ``index`` once the miner lists it."""
    pubkey = net.worker_keys[index].public_key.hex()

    async def listed() -> str | None:
        try:
            async with net.client(timeout=5) as client:
                inventory = await client.inventory()
        except Exception:  # the miner is still starting
            return None
        for summary in inventory.workers:
            if summary.worker_pubkey == pubkey and summary.gpus:
                return summary.gpus[0].uuid
        return None

    return await eventually(listed, timeout, f"the miner to list {net.workers[index].name}", net)


async def challenges(store: SqlStore) -> list[ChallengeRow]:
    """Every challenge row, oldest first (the suites run a few dozen at most)."""
    rows = await store.recent_challenges(limit=100_000)
    return sorted(rows, key=lambda r: (r.dispatched_at, r.challenge_id, r.gpu_uuid))


async def verified_after(
    net: Network, store: SqlStore, since: datetime, timeout: float = 60.0
) -> ChallengeRow:
    """A challenge dispatched after ``since`` and verified."""

    async def found() -> ChallengeRow | None:
        for row in await challenges(store):
            if row.dispatched_at > since and row.outcome is Outcome.VERIFIED:
                return row
        return None

    return await eventually(found, timeout, f"a challenge verified after {since}", net)


async def started_challenge(net: Network, worker: Proc, seen: int, timeout: float = 60.0) -> str:
    """The id of the next challenge ``worker`` starts computing (its ``challenge_started``
    log event number ``seen + 1``)."""

    async def started() -> str | None:
        events = worker.events("challenge_started")
        return str(events[seen]["challenge"]) if len(events) > seen else None

    return await eventually(started, timeout, f"{worker.name} to start a challenge", net, 0.05)


async def row_of(store: SqlStore, challenge_id: str) -> ChallengeRow | None:
    rows = await store.challenge(challenge_id)
    return rows[0] if rows else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def assert_no_double_close(net: Network) -> None:
    """The validator never closed a challenge twice (the store refuses a second close with
    "is already closed", and the challenger logs ``challenge_closed`` once per challenge)."""
    closed: dict[str, int] = {}
    for record in net.validator.events("challenge_closed"):
        closed[str(record["challenge"])] = closed.get(str(record["challenge"]), 0) + 1
    twice = {cid: n for cid, n in closed.items() if n > 1}
    assert not twice, f"challenges closed more than once: {twice}"
    log = net.validator.log.read_text(errors="replace")
    assert "already closed" not in log, net.validator.tail()
