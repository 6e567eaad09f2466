"""The bittensor adapter, without a network: a fake client fed with the SDK's real types.

The fake implements exactly the client methods the adapter calls (``block``,
``subnets.metagraph``, ``query``, ``execute``, ``close``). Everything crossing it is a real SDK
object: ``Metagraph``/``MetagraphNeuron``/``Balance`` in, ``SetWeights``/``ServeAxon`` intents
captured, ``ExtrinsicResult``/``ChainError`` out, and real wallets sign nothing but are passed
through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bittensor as bt
import pytest
from bittensor.error_map import ErrorCode
from bittensor.intents.weights import normalize
from bittensor.metagraph import Metagraph, MetagraphNeuron, _axon_endpoint
from bittensor.result import ChainError as SdkChainError
from bittensor.result import ConnectionNotReady, ExtrinsicResult, PolicyError, RpcConnectionError

from byteleap import version_key
from byteleap.chain import (
    ChainPort,
    ChainRateLimited,
    ChainRefused,
    Endpoint,
    NotRegistered,
)
from byteleap.errors import ChainError, ConfigError
from neurons.chain.bittensor_adapter import Backoff, BittensorChain, parse_axon
from tests.wallets import coldkey_of, make_wallet

NETUID = 128


# --------------------------------------------------------------------------- SDK-typed fixtures


def _axon(ip: str | None, port: int = 8091) -> str | None:
    """The axon string exactly as the SDK renders it from the chain's (ip int, ip_type) record."""
    if ip is None:
        return _axon_endpoint({"ip": 0, "port": 0, "ip_type": 4})
    address = ipaddress.ip_address(ip)
    return _axon_endpoint({"ip": int(address), "port": port, "ip_type": address.version})


def _neuron(
    uid: int,
    hotkey: str,
    coldkey: str,
    *,
    stake_rao: int,
    permit: bool,
    axon: str | None,
) -> MetagraphNeuron:
    alpha = bt.Balance.from_rao
    return MetagraphNeuron(
        uid=uid,
        hotkey=hotkey,
        coldkey=coldkey,
        active=True,
        validator_permit=permit,
        last_update=0,
        block_at_registration=1,
        rank=0.0,
        trust=0.0,
        consensus=0.0,
        incentive=0.0,
        dividends=0.0,
        pruning_score=0.0,
        emission=alpha(0, NETUID),
        alpha_stake=alpha(stake_rao // 2, NETUID),
        tao_stake=alpha(stake_rao // 4),
        total_stake=alpha(stake_rao, NETUID),
        axon=axon,
        identity=None,
        commitment=None,
    )


def _metagraph(neurons: list[MetagraphNeuron], block: int = 4_242) -> Metagraph:
    return Metagraph(
        netuid=NETUID,
        mechid=0,
        name="byteleap",
        symbol="x",
        block=block,
        tempo=360,
        last_step=4_000,
        blocks_since_last_step=242,
        owner_hotkey="5Owner",
        owner_coldkey="5OwnerCold",
        network_registered_at=1,
        num_uids=len(neurons),
        max_uids=256,
        price=None,
        moving_price=None,
        identity=None,
        neurons=neurons,
        commitments={},
        unregistered_commitments={},
        raw={},
    )


class _Subnets:
    def __init__(self, fake: FakeClient) -> None:
        self._fake = fake

    async def metagraph(self, netuid: int, *, commitments: bool = True) -> Metagraph | None:
        self._fake.calls.append(("metagraph", netuid, commitments))
        graph: Metagraph | None = self._fake.step("metagraph", self._fake.graph)
        return graph


class FakeClient:
    """Stands in for ``bittensor.Client``; ``script`` queues raise/return per method."""

    def __init__(self, graph: Metagraph | None = None) -> None:
        self.graph = graph
        self.subnets = _Subnets(self)
        self.calls: list[tuple[Any, ...]] = []
        self.intents: list[Any] = []
        self.script: dict[str, list[Any]] = {}
        self.results: list[ExtrinsicResult] = []
        self.head = 5_000
        self.tempo_value: Any = 360
        self.closed = False

    def step(self, method: str, default: Any) -> Any:
        queue = self.script.get(method)
        if queue:
            item = queue.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        return default

    async def block(self) -> int:
        self.calls.append(("block",))
        return int(self.step("block", self.head))

    async def query(self, item: Any, params: list[Any] | None = None) -> Any:
        self.calls.append(("query", item, params))
        return self.step("query", self.tempo_value)

    async def execute(self, intent: Any, wallet: Any, **kwargs: Any) -> ExtrinsicResult:
        self.calls.append(("execute", type(intent).__name__, wallet, kwargs))
        self.intents.append(intent)
        default = self.results.pop(0) if self.results else ExtrinsicResult(success=True)
        return self.step("execute", default)  # type: ignore[no-any-return]

    async def close(self) -> None:
        self.closed = True


class Harness:
    """A BittensorChain whose connect() hands out FakeClients and whose sleep is recorded."""

    def __init__(self, wallet: bt.Wallet, make: Callable[[], FakeClient], **kwargs: Any) -> None:
        self.clients: list[FakeClient] = []
        self.sleeps: list[float] = []
        self.connect_failures: list[BaseException] = []
        self._make = make

        async def connect(network: str) -> FakeClient:
            assert network == "finney"
            if self.connect_failures:
                raise self.connect_failures.pop(0)
            client = self._make()
            self.clients.append(client)
            return client

        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)

        self.chain = BittensorChain(
            wallet, netuid=NETUID, network="finney", connect=connect, sleep=sleep, **kwargs
        )

    @property
    def client(self) -> FakeClient:
        return self.clients[-1]


@pytest.fixture
def wallets(tmp_path: Path) -> dict[str, tuple[bt.Wallet, str]]:
    root = tmp_path / "wallets"
    return {
        name: make_wallet(root, name, seed=bytes([i + 1]) * 32)
        for i, name in enumerate(("validator", "miner", "other"))
    }


@pytest.fixture
def graph(wallets: dict[str, tuple[bt.Wallet, str]]) -> Metagraph:
    (vw, vhot), (mw, mhot), (ow, ohot) = (
        wallets["validator"],
        wallets["miner"],
        wallets["other"],
    )
    return _metagraph(
        [
            _neuron(0, vhot, coldkey_of(vw), stake_rao=12_345_600_000_000, permit=True, axon=None),
            _neuron(
                1,
                mhot,
                coldkey_of(mw),
                stake_rao=1_500_000_000,
                permit=False,
                axon=_axon("203.0.113.9"),
            ),
            _neuron(
                2,
                ohot,
                coldkey_of(ow),
                stake_rao=0,
                permit=False,
                axon=_axon("2001:db8::7", 9443),
            ),
        ]
    )


@pytest.fixture
def harness(wallets: dict[str, tuple[bt.Wallet, str]], graph: Metagraph) -> Harness:
    return Harness(wallets["validator"][0], lambda: FakeClient(graph))


# --------------------------------------------------------------------------- construction


def test_construction_is_lazy_and_reads_the_hotkey(
    harness: Harness, wallets: dict[str, tuple[bt.Wallet, str]]
) -> None:
    assert harness.clients == []  # nothing connects until the first call
    assert harness.chain.hotkey == wallets["validator"][1]
    assert harness.chain.netuid == NETUID
    assert isinstance(harness.chain, ChainPort)


def test_bad_network_and_missing_hotkey_are_config_errors(
    tmp_path: Path, wallets: dict[str, tuple[bt.Wallet, str]]
) -> None:
    with pytest.raises(ConfigError, match="network"):
        BittensorChain(wallets["validator"][0], netuid=NETUID, network="nowhere")
    ghost = bt.Wallet("ghost", "default", path=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="hotkey"):
        BittensorChain(ghost, netuid=NETUID)
    BittensorChain(wallets["validator"][0], netuid=NETUID, network="ws://127.0.0.1:9944")


# --------------------------------------------------------------------------- reads


async def test_metagraph_is_converted_field_by_field(
    harness: Harness, graph: Metagraph, wallets: dict[str, tuple[bt.Wallet, str]]
) -> None:
    view = await harness.chain.metagraph()
    assert harness.client.calls == [("metagraph", NETUID, False)]  # commitments not fetched
    assert view.netuid == NETUID and view.block == 4_242
    assert len(view) == 3
    for sdk, ours in zip(graph.neurons, view.neurons, strict=True):
        assert ours.uid == sdk.uid
        assert ours.hotkey == sdk.hotkey
        assert ours.coldkey == sdk.coldkey
        assert ours.validator_permit == sdk.validator_permit
        assert ours.stake == sdk.total_stake.amount  # alpha units
    assert view.by_uid(0).stake == 12_345.6  # type: ignore[union-attr]
    assert view.by_uid(1).stake == 1.5  # type: ignore[union-attr]
    assert view.by_uid(0).axon is None  # type: ignore[union-attr]
    assert graph.neurons[1].axon == "203.0.113.9:8091"
    assert view.by_uid(1).axon == Endpoint("203.0.113.9", 8091)  # type: ignore[union-attr]
    assert graph.neurons[2].axon == "[2001:db8::7]:9443"
    assert view.by_uid(2).axon == Endpoint("2001:db8::7", 9443)  # type: ignore[union-attr]

    vhot = wallets["validator"][1]
    assert view.require(vhot).uid == 0
    assert [n.hotkey for n in view.validators(min_stake=1_000)] == [vhot]
    assert view.validators(min_stake=20_000) == ()


def test_parse_axon() -> None:
    assert parse_axon(None) is None
    assert parse_axon("") is None
    assert parse_axon("10.0.0.1:80") == Endpoint("10.0.0.1", 80)
    assert parse_axon("[::1]:80") == Endpoint("::1", 80)
    assert parse_axon("garbage") is None  # one bad row must not break the whole metagraph
    assert parse_axon("10.0.0.1:0") is None


async def test_metagraph_of_a_missing_subnet_is_refused(harness: Harness) -> None:
    harness._make = lambda: FakeClient(None)
    with pytest.raises(ChainRefused, match="does not exist") as info:
        await harness.chain.metagraph()
    assert info.value.__cause__ is None
    assert harness.sleeps == []  # a definite answer is not retried


async def test_current_block_and_tempo(harness: Harness) -> None:
    assert await harness.chain.current_block() == 5_000
    assert await harness.chain.tempo() == 360
    assert harness.client.calls[-1] == ("query", bt.storage.SubtensorModule.Tempo, [NETUID])
    assert len(harness.clients) == 1  # one connection, reused
    harness.client.tempo_value = None
    with pytest.raises(ChainRefused, match="tempo"):
        await harness.chain.tempo()


# --------------------------------------------------------------------------- writes


async def test_set_weights_sends_a_real_setweights_intent(
    harness: Harness, wallets: dict[str, tuple[bt.Wallet, str]]
) -> None:
    weights = {7: 0.1, 2: 0.6, 5: 0.3, 9: 0.0}
    await harness.chain.current_block()  # connect
    harness.client.results.append(
        ExtrinsicResult(success=True, message="Success", extrinsic_id="4243-0005")
    )
    receipt = await harness.chain.set_weights(weights, version_key=version_key("1.2.3"))

    (intent,) = harness.client.intents
    assert isinstance(intent, bt.SetWeights)
    assert intent.netuid == NETUID
    assert intent.mechid == 0
    assert intent.raw_u16 is False
    assert intent.uids == [2, 5, 7, 9]
    assert intent.weights == [0.6, 0.3, 0.1, 0.0]
    assert intent.version_key == 1_002_003
    _, name, wallet, kwargs = harness.client.calls[-1]
    assert name == "SetWeights"
    assert wallet is wallets["validator"][0]
    assert kwargs == {"retries": 2, "wait_for_finalization": False}

    sent = normalize(intent.uids, intent.weights)
    assert (list(receipt.uids), list(receipt.values)) == sent
    assert receipt.uids == (2, 5, 7)  # the zero weight is dropped
    assert receipt.values[0] == 65535
    assert receipt.success and receipt.message == "Success"
    assert receipt.block == 4243  # from the extrinsic id
    assert receipt.version_key == 1_002_003


async def test_set_weights_block_falls_back_to_the_head(harness: Harness) -> None:
    receipt = await harness.chain.set_weights({1: 1.0}, version_key=1)
    assert receipt.block == 5_000
    assert harness.client.calls[-1] == ("block",)


async def test_set_weights_reports_a_commit_reveal_round(harness: Harness) -> None:
    await harness.chain.current_block()
    harness.client.results.append(
        ExtrinsicResult(True, "Success", extrinsic_id="9-0001", data={"reveal_round": 123456})
    )
    receipt = await harness.chain.set_weights({1: 1.0}, version_key=1)
    assert receipt.block == 9
    assert "drand round 123456" in receipt.message


async def test_set_weights_rejects_bad_vectors_before_sending(harness: Harness) -> None:
    for bad in ({}, {1: 0.0}, {1: -1.0}, {1: float("nan")}, {70_000: 1.0}):
        with pytest.raises(ValueError):
            await harness.chain.set_weights(bad, version_key=1)
    assert harness.clients == []


async def test_serve_sends_a_real_serveaxon_intent(
    harness: Harness, wallets: dict[str, tuple[bt.Wallet, str]]
) -> None:
    await harness.chain.serve("203.0.113.9", 8091)
    await harness.chain.serve("2001:0db8::0007", 9443)
    first, second = harness.client.intents
    assert isinstance(first, bt.ServeAxon) and isinstance(second, bt.ServeAxon)
    assert (first.netuid, first.ip, first.port, first.protocol, first.version) == (
        NETUID,
        "203.0.113.9",
        8091,
        4,
        1,
    )
    assert (second.ip, second.port) == ("2001:db8::7", 9443)
    assert ipaddress.ip_address(second.ip).version == 6  # what ServeAxon.build derives ip_type from
    _, name, wallet, kwargs = harness.client.calls[-1]
    assert name == "ServeAxon" and wallet is wallets["validator"][0]
    assert kwargs["wait_for_finalization"] is False
    with pytest.raises(ValueError, match="external IP"):
        await harness.chain.serve("0.0.0.0", 8091)
    assert len(harness.client.intents) == 2


# --------------------------------------------------------------------------- error mapping


def _failed(name: str, message: str = "the chain said no") -> ExtrinsicResult:
    return ExtrinsicResult(success=False, message=message, error=SdkChainError(message, name))


@pytest.mark.parametrize(
    ("failure", "expected", "match"),
    [
        (_failed("HotKeyNotRegisteredInSubNet"), NotRegistered, "not registered on netuid 128"),
        (_failed("SettingWeightsTooFast"), ChainRateLimited, "SettingWeightsTooFast"),
        (_failed("IncorrectWeightVersionKey"), ChainRefused, "IncorrectWeightVersionKey"),
        (_failed("NeuronNoValidatorPermit"), ChainRefused, "NeuronNoValidatorPermit"),
        # the SDK's own preflight raises instead of returning a failed result
        (
            SdkChainError("Hotkey 5X is not registered", code=ErrorCode.NOT_REGISTERED),
            NotRegistered,
            "Hotkey 5X is not registered",
        ),
        (
            SdkChainError("last set 3 blocks ago", code=ErrorCode.RATE_LIMITED),
            ChainRateLimited,
            "last set 3 blocks ago",
        ),
        (PolicyError(["spend cap"]), ChainRefused, "spend cap"),
        # a failed result without an error object is classified from its message
        (ExtrinsicResult(success=False, message="rate limit hit"), ChainRateLimited, "rate limit"),
    ],
)
async def test_refusals_are_mapped_and_not_retried(
    harness: Harness, failure: Any, expected: type[ChainError], match: str
) -> None:
    await harness.chain.current_block()
    harness.client.script["execute"] = [failure]
    with pytest.raises(expected, match=match) as info:
        await harness.chain.set_weights({1: 1.0}, version_key=1)
    assert type(info.value) is expected
    assert isinstance(info.value, ChainError)
    assert harness.sleeps == []
    assert len(harness.client.intents) == 1


async def test_not_registered_names_the_hotkey(
    harness: Harness, wallets: dict[str, tuple[bt.Wallet, str]]
) -> None:
    await harness.chain.current_block()
    harness.client.results.append(_failed("HotKeyNotRegisteredInSubNet"))
    with pytest.raises(NotRegistered) as info:
        await harness.chain.serve("203.0.113.9", 8091)
    assert info.value.hotkey == wallets["validator"][1]
    assert info.value.netuid == NETUID
    assert wallets["validator"][1] in str(info.value)


# --------------------------------------------------------------------------- retries


async def test_connection_errors_are_retried_with_backoff_and_reconnect(harness: Harness) -> None:
    await harness.chain.current_block()
    first = harness.client
    first.script["block"] = [RpcConnectionError("socket closed")]
    harness.connect_failures.append(OSError("connection refused"))
    replacements = iter([_scripted(block=[ConnectionNotReady("not yet")]), _scripted(block=[77])])
    harness._make = lambda: next(replacements)

    assert await harness.chain.current_block() == 77
    # attempt 1: the socket dropped -> closed; attempt 2: connect refused;
    # attempt 3: new client not ready -> closed; attempt 4: another new client answers
    assert harness.sleeps == [1.0, 2.0, 4.0]
    assert first.closed
    assert len(harness.clients) == 3
    assert harness.clients[1].closed and not harness.clients[2].closed
    assert harness.clients[2].calls == [("block",)]


async def test_gives_up_after_the_last_attempt(harness: Harness) -> None:
    harness._make = lambda: _scripted(block=[TimeoutError("slow")] * 10)
    with pytest.raises(ChainError, match="gave up after 4 attempts") as info:
        await harness.chain.current_block()
    assert not isinstance(info.value, ChainRefused)
    assert "cannot reach finney" in str(info.value)
    assert harness.sleeps == [1.0, 2.0, 4.0]


async def test_unknown_chain_errors_are_retried_on_the_same_connection(harness: Harness) -> None:
    await harness.chain.current_block()
    harness.client.script["execute"] = [_failed("SomethingNew", "odd"), ExtrinsicResult(True)]
    receipt = await harness.chain.set_weights({3: 1.0}, version_key=1)
    assert receipt.uids == (3,)
    assert harness.sleeps == [1.0]
    assert len(harness.clients) == 1 and not harness.client.closed
    assert len(harness.client.intents) == 2


async def test_unexpected_exceptions_become_chain_errors(harness: Harness) -> None:
    harness._make = lambda: _scripted(metagraph=[KeyError("hotkeys")] * 10)
    harness.chain._backoff = Backoff(attempts=2, initial=0.5)
    with pytest.raises(ChainError, match="unexpected KeyError"):
        await harness.chain.metagraph()
    assert harness.sleeps == [0.5]
    assert len(harness.clients) == 2  # reconnected after a state it did not understand


def test_backoff_delays() -> None:
    assert list(Backoff().delays()) == [1.0, 2.0, 4.0]
    assert list(Backoff(attempts=6, initial=1.0, factor=10.0, max_delay=5.0).delays()) == [
        1.0,
        5.0,
        5.0,
        5.0,
        5.0,
    ]
    assert list(Backoff(attempts=1).delays()) == []
    with pytest.raises(ValueError):
        Backoff(attempts=0)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)


async def test_close(harness: Harness) -> None:
    await harness.chain.close()  # nothing open yet: fine
    assert harness.clients == []
    fresh = Harness(harness.chain.wallet, lambda: FakeClient())
    await fresh.chain.current_block()
    await fresh.chain.close()
    assert fresh.client.closed
    with pytest.raises(ChainError, match="closed"):
        await fresh.chain.current_block()
    assert len(fresh.clients) == 1
    assert fresh.sleeps == []


def _scripted(**script: list[Any]) -> FakeClient:
    client = FakeClient()
    client.script = {k: list(v) for k, v in script.items()}
    return client
