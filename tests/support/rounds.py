"""The network of the validator-rounds tests: a devchain file with a registered validator, and
real miner daemons (``MinerDaemon``: worker hub and validator API) run in the test's event loop.

The ``net`` fixture (``tests/integration/conftest.py``) is a :class:`Net` in the test's temp
directory; :func:`running_miner` registers and serves one more miner on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from byteleap.config import MinerConfig
from byteleap.crypto import WorkerKey
from neurons.chain import DevChain, DevChainParams
from neurons.miner.daemon import MinerDaemon
from tests.support.ports import free_port
from tests.wallets import coldkey_of, make_wallet


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 60.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"{what} not reached in time"
        await asyncio.sleep(0.1)


class WallClock:
    """Real UTC time plus an offset a test can move forward: availability counts only
    completed 5-minute buckets, and no test should wait five minutes for one."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def skip_bucket(self) -> None:
        self.offset += timedelta(minutes=5)


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
    uid: int
    api_port: int
    workers_url: str
    stop: asyncio.Event
    task: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_miner(net: Net, name: str, keys: Sequence[WorkerKey]) -> AsyncIterator[Miner]:
    """A real miner daemon in this event loop, registered on the devchain and serving."""
    wallet, hotkey = make_wallet(net.root / "wallets", name)
    uid = net.chain.register(hotkey, coldkey_of(wallet))
    api_port, workers_port = free_port(), free_port()
    cfg = MinerConfig.model_validate(
        {
            "wallet": {"name": name, "hotkey": "default", "path": str(net.root / "wallets")},
            "chain": {"network": f"devchain:{net.chain_file}", "sync_interval_s": 0.5},
            "workers": {
                "host": "127.0.0.1",
                "port": workers_port,
                "authorized_keys": [k.public_key.hex() for k in keys],
            },
            "api": {"host": "127.0.0.1", "port": api_port, "external_ip": "127.0.0.1"},
            "paths": {"data_dir": str(net.root / name)},
            "metrics": {"enabled": False},
        }
    )
    daemon = MinerDaemon(cfg, hotkey, wallet.hotkey.sign, net.chain.client(hotkey))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    miner = Miner(hotkey, uid, api_port, f"ws://127.0.0.1:{workers_port}/worker", stop, task)

    async def serving() -> bool:
        if task.done():
            task.result()  # raise the miner's error
        neuron = net.chain.metagraph().by_hotkey(hotkey)
        return neuron is not None and neuron.axon is not None

    await until(serving, 30, "the miner serving its endpoint")
    try:
        yield miner
    finally:
        await stop_miner(miner)


async def stop_miner(miner: Miner) -> None:
    miner.stop.set()
    await asyncio.wait_for(asyncio.shield(miner.task), 30)


def new_net(root: Path) -> Net:
    """A devchain in ``root`` with a validator (5,000 stake, permit); the caller closes it."""
    chain_file = root / "chain.db"
    chain = DevChain.create(
        chain_file, DevChainParams(block_seconds=0.25, tempo=20, weights_rate_limit=4)
    )
    wallet, hotkey = make_wallet(root / "wallets", "validator")
    chain.register(hotkey, coldkey_of(wallet), stake=5000.0, validator_permit=True)
    return Net(root, chain_file, chain, wallet, hotkey)
