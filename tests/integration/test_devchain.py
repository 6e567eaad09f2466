"""The devchain: a SQLite file shared by devnet's processes, implementing the chain port."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bittensor.intents.weights import normalize

from byteleap import version_key
from byteleap.chain import (
    ChainPort,
    ChainRateLimited,
    ChainRefused,
    Endpoint,
    MetagraphView,
    NotRegistered,
)
from byteleap.errors import ChainError, ConfigError
from neurons.chain import BittensorChain, devchain_path, open_chain
from neurons.chain.devchain import DevChain, DevChainClient
from neurons.chain.devchain_file import DevChainParams
from tests.wallets import coldkey_of, make_wallet

GENESIS = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = GENESIS) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def params() -> DevChainParams:
    return DevChainParams(netuid=128, tempo=10, block_seconds=12.0, weights_rate_limit=5)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chain.db"


@pytest.fixture
def chain(db: Path, params: DevChainParams, clock: FakeClock) -> Iterator[DevChain]:
    created = DevChain.create(db, params, genesis=GENESIS, clock=clock)
    yield created
    created.close()


def _setup(chain: DevChain) -> tuple[int, int, int]:
    validator = chain.register("5Val", "5ColdV", stake=10_000.0, validator_permit=True)
    miner_a = chain.register("5MinerA", "5ColdA", stake=1.0)
    miner_b = chain.register("5MinerB", "5ColdB")
    return validator, miner_a, miner_b


# --------------------------------------------------------------------------- the file


def test_open_requires_an_existing_devchain(db: Path) -> None:
    with pytest.raises(ChainError, match="no devchain"):
        DevChain(db)
    assert not db.exists()  # opening must not create an empty file
    db.write_bytes(b"")
    with pytest.raises(ChainError, match="not"):
        DevChain(db)


def test_create_refuses_to_clobber(chain: DevChain, db: Path, params: DevChainParams) -> None:
    with pytest.raises(ChainError, match="already exists"):
        DevChain.create(db, params)
    other = DevChainParams(netuid=7)
    with pytest.raises(ChainError, match="created with"):
        DevChain.create(db, other, exist_ok=True)


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="block_seconds"):
        DevChainParams(block_seconds=0)
    with pytest.raises(ValueError, match="tempo"):
        DevChainParams(tempo=0)
    with pytest.raises(ValueError, match="weights_rate_limit"):
        DevChainParams(weights_rate_limit=-1)


def test_blocks_follow_the_clock(chain: DevChain, clock: FakeClock) -> None:
    assert chain.current_block() == 0
    clock.advance(11.9)
    assert chain.current_block() == 0
    clock.advance(0.1)
    assert chain.current_block() == 1
    clock.advance(12.0 * 99)
    assert chain.current_block() == 100
    assert chain.block_at(GENESIS - 100) == 0  # never negative
    assert chain.block_at(GENESIS + 36) == 3


def test_fast_blocks(tmp_path: Path, clock: FakeClock) -> None:
    fast = DevChain.create(
        tmp_path / "fast.db", DevChainParams(block_seconds=0.25), genesis=GENESIS, clock=clock
    )
    clock.advance(2.5)
    assert fast.current_block() == 10
    fast.close()


def test_register_hands_out_uids_in_order(chain: DevChain) -> None:
    assert _setup(chain) == (0, 1, 2)
    graph = chain.metagraph()
    assert graph.netuid == 128
    assert [(n.uid, n.hotkey, n.coldkey) for n in graph.neurons] == [
        (0, "5Val", "5ColdV"),
        (1, "5MinerA", "5ColdA"),
        (2, "5MinerB", "5ColdB"),
    ]
    assert graph.by_hotkey("5Val").stake == 10_000.0  # type: ignore[union-attr]
    assert [n.uid for n in graph.validators(min_stake=1_000)] == [0]
    assert all(n.axon is None for n in graph.neurons)


def test_register_again_is_idempotent(chain: DevChain) -> None:
    _setup(chain)
    assert chain.register("5MinerA", "5ColdA", stake=7.0, validator_permit=True) == 1
    neuron = chain.metagraph().by_hotkey("5MinerA")
    assert neuron is not None and neuron.stake == 7.0 and neuron.validator_permit
    assert len(chain.metagraph()) == 3
    with pytest.raises(ChainRefused, match="another coldkey"):
        chain.register("5MinerA", "5Thief")


def test_register_respects_capacity(tmp_path: Path) -> None:
    small = DevChain.create(tmp_path / "s.db", DevChainParams(max_uids=2))
    small.register("a", "c")
    small.register("b", "c")
    with pytest.raises(ChainRefused, match="full"):
        small.register("c", "c")
    small.close()


def test_set_stake(chain: DevChain) -> None:
    _setup(chain)
    chain.set_stake("5MinerB", 500.0, validator_permit=True)
    neuron = chain.metagraph().by_hotkey("5MinerB")
    assert neuron is not None and neuron.stake == 500.0 and neuron.validator_permit
    with pytest.raises(NotRegistered):
        chain.set_stake("5Nobody", 1.0)


# --------------------------------------------------------------------------- serve


def test_serve_round_trips_through_the_metagraph(chain: DevChain) -> None:
    _setup(chain)
    chain.serve("5MinerA", "127.0.0.1", 8091)
    chain.serve("5MinerB", "2001:0db8::0001", 443)
    graph = chain.metagraph()
    assert graph.by_hotkey("5MinerA").axon == Endpoint("127.0.0.1", 8091)  # type: ignore[union-attr]
    assert str(graph.by_hotkey("5MinerB").axon) == "[2001:db8::1]:443"  # type: ignore[union-attr]
    chain.serve("5MinerA", "127.0.0.2", 9000)  # re-serve replaces the endpoint
    assert chain.metagraph().by_uid(1).axon == Endpoint("127.0.0.2", 9000)  # type: ignore[union-attr]


def test_serve_requires_registration_and_a_real_address(chain: DevChain) -> None:
    _setup(chain)
    with pytest.raises(NotRegistered) as info:
        chain.serve("5Nobody", "127.0.0.1", 8091)
    assert info.value.hotkey == "5Nobody" and info.value.netuid == 128
    with pytest.raises(ValueError, match="external IP"):
        chain.serve("5MinerA", "0.0.0.0", 8091)
    with pytest.raises(ValueError, match="port"):
        chain.serve("5MinerA", "127.0.0.1", 0)
    assert chain.metagraph().by_hotkey("5MinerA").axon is None  # type: ignore[union-attr]


def test_serving_rate_limit(tmp_path: Path, clock: FakeClock) -> None:
    limited = DevChain.create(
        tmp_path / "r.db", DevChainParams(serving_rate_limit=3), genesis=GENESIS, clock=clock
    )
    limited.register("m", "c")
    limited.serve("m", "10.0.0.1", 1)
    clock.advance(12.0 * 2)
    with pytest.raises(ChainRateLimited) as info:
        limited.serve("m", "10.0.0.2", 2)
    assert info.value.blocks_remaining == 1
    clock.advance(12.0)
    limited.serve("m", "10.0.0.2", 2)
    assert limited.metagraph().by_hotkey("m").axon == Endpoint("10.0.0.2", 2)  # type: ignore[union-attr]
    limited.close()


# --------------------------------------------------------------------------- weights


def test_set_weights_stores_the_bittensor_u16_vector(chain: DevChain, clock: FakeClock) -> None:
    _setup(chain)
    clock.advance(12.0 * 3)
    weights = {2: 0.25, 1: 0.75, 0: 0.0}
    receipt = chain.set_weights("5Val", weights, version_key=version_key())
    expected = normalize([0, 1, 2], [0.0, 0.75, 0.25])
    assert (list(receipt.uids), list(receipt.values)) == expected
    assert receipt.uids == (1, 2) and receipt.values == (65535, 21845)
    assert receipt.success and receipt.block == 3
    assert receipt.version_key == version_key()

    latest = chain.latest_weights()
    assert list(latest) == [0]
    record = latest[0]
    assert record.hotkey == "5Val" and record.block == 3
    assert record.weights == {1: 65535, 2: 21845}
    assert record.shares() == pytest.approx({1: 0.75, 2: 0.25}, abs=1e-4)
    assert record.submitted_at == GENESIS + 36


def test_weights_rate_limit(chain: DevChain, clock: FakeClock) -> None:
    _setup(chain)
    chain.set_weights("5Val", {1: 1.0}, version_key=1)
    clock.advance(12.0 * 4)
    with pytest.raises(ChainRateLimited) as info:
        chain.set_weights("5Val", {2: 1.0}, version_key=1)
    assert info.value.blocks_remaining == 1
    assert "rate limit is 5 blocks" in str(info.value)
    clock.advance(12.0)
    receipt = chain.set_weights("5Val", {2: 1.0}, version_key=1)
    assert receipt.block == 5
    history = chain.weights_history(0)
    assert [(r.block, r.uids) for r in history] == [(0, (1,)), (5, (2,))]
    assert chain.latest_weights()[0].uids == (2,)


def test_weights_are_refused_like_the_real_chain(tmp_path: Path) -> None:
    strict = DevChain.create(tmp_path / "v.db", DevChainParams(min_version_key=1_000))
    strict.register("val", "c", stake=1.0, validator_permit=True)
    strict.register("miner", "c")
    with pytest.raises(NotRegistered):
        strict.set_weights("nobody", {0: 1.0}, version_key=1_000)
    with pytest.raises(ChainRefused, match="validator permit"):
        strict.set_weights("miner", {0: 1.0}, version_key=1_000)
    with pytest.raises(ChainRefused, match="not registered: \\[7\\]"):
        strict.set_weights("val", {1: 1.0, 7: 1.0}, version_key=1_000)
    with pytest.raises(ChainRefused, match="version_key 999"):
        strict.set_weights("val", {1: 1.0}, version_key=999)
    with pytest.raises(ValueError, match="zero"):
        strict.set_weights("val", {1: 0.0}, version_key=1_000)
    with pytest.raises(ValueError, match="finite"):
        strict.set_weights("val", {1: -1.0}, version_key=1_000)
    assert strict.weights_history() == []  # nothing refused was stored
    strict.set_weights("val", {1: 1.0}, version_key=1_000)
    assert len(strict.weights_history()) == 1
    strict.close()


# --------------------------------------------------------------------------- sharing


def test_restart_keeps_everything(db: Path, params: DevChainParams, clock: FakeClock) -> None:
    first = DevChain.create(db, params, genesis=GENESIS, clock=clock)
    _setup(first)
    first.serve("5MinerA", "10.1.2.3", 8091)
    first.set_weights("5Val", {1: 1.0, 2: 3.0}, version_key=5)
    first.close()
    with pytest.raises(ChainError, match="closed"):
        first.metagraph()

    clock.advance(12.0 * 2)
    reopened = DevChain(db, clock=clock)
    assert reopened.params == params
    assert reopened.genesis == GENESIS
    assert reopened.current_block() == 2
    graph = reopened.metagraph()
    assert graph.hotkeys == ("5Val", "5MinerA", "5MinerB")
    assert graph.by_uid(1).axon == Endpoint("10.1.2.3", 8091)  # type: ignore[union-attr]
    assert reopened.latest_weights()[0].weights == {1: 21845, 2: 65535}
    # the rate limit survives the restart too
    with pytest.raises(ChainRateLimited):
        reopened.set_weights("5Val", {1: 1.0}, version_key=5)
    # create(exist_ok) with the same parameters opens it unchanged
    again = DevChain.create(db, params, exist_ok=True, genesis=GENESIS + 999, clock=clock)
    assert again.genesis == GENESIS and len(again.metagraph()) == 3
    again.close()
    reopened.close()


def test_two_connections_see_each_other(chain: DevChain, db: Path, clock: FakeClock) -> None:
    other = DevChain(db, clock=clock)
    chain.register("5Val", "c", stake=1.0, validator_permit=True)
    uid = other.register("5Miner", "c")
    assert uid == 1
    assert chain.metagraph().by_hotkey("5Miner") is not None
    other.serve("5Miner", "10.0.0.9", 7000)
    chain.set_weights("5Val", {uid: 1.0}, version_key=1)
    assert chain.metagraph().by_uid(1).axon == Endpoint("10.0.0.9", 7000)  # type: ignore[union-attr]
    assert other.latest_weights()[0].weights == {1: 65535}
    other.close()


def test_concurrent_registration_from_many_connections(chain: DevChain, db: Path) -> None:
    handles = [DevChain(db) for _ in range(4)]
    errors: list[BaseException] = []

    def work(index: int, handle: DevChain) -> None:
        try:
            for n in range(15):
                handle.register(f"t{index}-{n}", "c")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, h)) for i, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for handle in handles:
        handle.close()
    assert errors == []
    graph = chain.metagraph()
    assert [n.uid for n in graph.neurons] == list(range(60))
    assert len(set(graph.hotkeys)) == 60


_WORKER = textwrap.dedent(
    """
    import sys
    from neurons.chain.devchain import DevChain

    path, tag = sys.argv[1], sys.argv[2]
    chain = DevChain(path)
    for n in range(20):
        chain.register(f"{tag}-{n}", "cold-" + tag)
    chain.serve(f"{tag}-0", "10.0.0.1", 1000 + int(tag[1:]))
    chain.close()
    """
)


def test_processes_share_one_file(chain: DevChain, db: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(db), f"p{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    graph = chain.metagraph()
    assert [n.uid for n in graph.neurons] == list(range(60))
    for i in range(3):
        tagged = [n for n in graph.neurons if n.hotkey.startswith(f"p{i}-")]
        assert len(tagged) == 20 and {n.coldkey for n in tagged} == {f"cold-p{i}"}
        assert graph.by_hotkey(f"p{i}-0").axon == Endpoint("10.0.0.1", 1000 + i)  # type: ignore[union-attr]


# --------------------------------------------------------------------------- the async port


async def test_client_implements_the_port(chain: DevChain, clock: FakeClock) -> None:
    _setup(chain)
    validator = chain.client("5Val")
    miner = chain.client("5MinerA")
    assert isinstance(validator, ChainPort)
    assert await validator.tempo() == 10
    clock.advance(12.0 * 7)
    assert await validator.current_block() == 7

    await miner.serve("127.0.0.1", 8091)
    graph = await validator.metagraph()
    assert graph.block == 7
    assert graph.require("5MinerA").axon == Endpoint("127.0.0.1", 8091)

    receipt = await validator.set_weights({1: 2.0, 2: 1.0}, version_key=3)
    assert receipt.block == 7 and receipt.uids == (1, 2) and receipt.values == (65535, 32768)
    with pytest.raises(ChainRateLimited):
        await validator.set_weights({1: 1.0}, version_key=3)
    with pytest.raises(ChainRefused, match="permit"):
        await miner.set_weights({0: 1.0}, version_key=3)

    await validator.close()
    with pytest.raises(ChainError, match="closed"):
        await validator.metagraph()
    assert len(chain.metagraph()) == 3  # a shared chain stays open


async def test_client_not_registered(chain: DevChain) -> None:
    stranger = chain.client("5Stranger")
    with pytest.raises(NotRegistered) as info:
        await stranger.serve("127.0.0.1", 8091)
    assert "5Stranger" in str(info.value)
    with pytest.raises(NotRegistered):
        await stranger.set_weights({0: 1.0}, version_key=1)
    with pytest.raises(NotRegistered):
        (await stranger.metagraph()).require("5Stranger")


async def test_client_runs_sqlite_off_the_event_loop(
    chain: DevChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = chain.metagraph

    def spy() -> MetagraphView:
        seen.append(threading.get_ident())
        return original()

    monkeypatch.setattr(chain, "metagraph", spy)
    await chain.client("x").metagraph()
    assert seen and seen[0] != threading.get_ident()


async def test_concurrent_async_clients(chain: DevChain) -> None:
    clients = [chain.client(f"h{i}") for i in range(10)]
    for i in range(10):
        chain.register(f"h{i}", "c")
    await asyncio.gather(*(c.serve("10.0.0.1", 2000 + i) for i, c in enumerate(clients)))
    graph = await clients[0].metagraph()
    assert {str(n.axon) for n in graph.neurons} == {f"10.0.0.1:{2000 + i}" for i in range(10)}


async def test_client_for_a_real_wallet(chain: DevChain, db: Path, tmp_path: Path) -> None:
    wallet, hotkey = make_wallet(tmp_path / "wallets", "miner")
    chain.register(hotkey, coldkey_of(wallet))
    client = await DevChainClient.for_wallet(db, wallet)
    assert client.hotkey == hotkey and client.netuid == 128
    await client.serve("192.0.2.10", 8091)
    assert (await client.metagraph()).require(hotkey).axon == Endpoint("192.0.2.10", 8091)
    await client.close()
    await client.close()  # idempotent
    with pytest.raises(ChainError, match="closed"):
        await client.current_block()


async def test_open_chain_picks_the_implementation(
    chain: DevChain, db: Path, tmp_path: Path
) -> None:
    wallet, hotkey = make_wallet(tmp_path / "wallets", "v")
    port = await open_chain(wallet, network=f"devchain:{db}", netuid=128)
    assert isinstance(port, DevChainClient) and port.hotkey == hotkey
    await port.close()
    with pytest.raises(ConfigError, match="netuid"):
        await open_chain(wallet, network=f"devchain:{db}", netuid=1)
    with pytest.raises(ConfigError, match="path"):
        devchain_path("devchain:")
    assert devchain_path("finney") is None
    real = await open_chain(wallet, network="finney", netuid=128)  # lazy: connects on first use
    assert isinstance(real, BittensorChain) and real.hotkey == hotkey
    await real.close()
