"""The pure chain port: endpoints, metagraph views, weights validation, error types."""

from __future__ import annotations

import ipaddress
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from byteleap.chain import (
    ChainRateLimited,
    ChainRefused,
    Endpoint,
    MetagraphView,
    NeuronView,
    NotRegistered,
    WeightsReceipt,
    check_serve_address,
    check_weights,
)
from byteleap.errors import ByteLeapError, ChainError, TransientError, outcome_of

# --------------------------------------------------------------------------- Endpoint


def test_endpoint_parses_ipv4() -> None:
    endpoint = Endpoint.parse("203.0.113.7:8091")
    assert endpoint == Endpoint("203.0.113.7", 8091)
    assert str(endpoint) == "203.0.113.7:8091"
    assert endpoint.url() == "http://203.0.113.7:8091"
    assert not endpoint.is_ipv6


def test_endpoint_parses_bracketed_ipv6_and_canonicalises() -> None:
    endpoint = Endpoint.parse("[2001:0db8:0000::0001]:443")
    assert endpoint.ip == "2001:db8::1"
    assert endpoint.port == 443
    assert endpoint.is_ipv6
    assert str(endpoint) == "[2001:db8::1]:443"
    assert endpoint.url("https") == "https://[2001:db8::1]:443"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "203.0.113.7",  # no port
        "203.0.113.7:",  # empty port
        "203.0.113.7:x1",  # not a number
        "203.0.113.7:0",  # port 0
        "203.0.113.7:65536",  # port too large
        "2001:db8::1:8091",  # IPv6 without brackets is ambiguous
        "[2001:db8::1]8091",  # no colon after the bracket
        "[203.0.113.7]:8091",  # brackets are for IPv6
        "example.com:8091",  # not an IP address
        "300.1.1.1:80",
    ],
)
def test_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.parse(text)


def test_endpoint_validates_fields() -> None:
    with pytest.raises(ValueError, match="port"):
        Endpoint("10.0.0.1", 0)
    with pytest.raises(ValueError, match="port"):
        Endpoint("10.0.0.1", True)
    with pytest.raises(ValueError, match="IP"):
        Endpoint("localhost", 80)
    assert Endpoint("10.0.0.1", np.uint16(80)).port == 80  # type: ignore[arg-type]


@given(
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(min_value=1, max_value=65_535),
)
def test_endpoint_text_round_trip(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    endpoint = Endpoint(str(address), port)
    assert Endpoint.parse(str(endpoint)) == endpoint
    assert ipaddress.ip_address(endpoint.ip) == address


def test_check_serve_address_refuses_unspecified() -> None:
    assert check_serve_address("127.0.0.1", 8091) == Endpoint("127.0.0.1", 8091)
    for ip in ("0.0.0.0", "::"):
        with pytest.raises(ValueError, match="external IP"):
            check_serve_address(ip, 8091)


# --------------------------------------------------------------------------- MetagraphView


def _neuron(uid: int, *, stake: float = 0.0, permit: bool = False) -> NeuronView:
    return NeuronView(
        uid=uid,
        hotkey=f"hot{uid}",
        coldkey=f"cold{uid}",
        stake=stake,
        validator_permit=permit,
        axon=Endpoint("10.0.0.1", 9000 + uid),
    )


def _graph() -> MetagraphView:
    return MetagraphView(
        netuid=128,
        block=77,
        neurons=(
            _neuron(2, stake=5_000.0, permit=True),
            _neuron(0, stake=10.0, permit=True),
            _neuron(1, stake=99_999.0, permit=False),
        ),
    )


def test_metagraph_lookups() -> None:
    graph = _graph()
    assert [n.uid for n in graph.neurons] == [0, 1, 2]  # ordered by uid
    assert graph.hotkeys == ("hot0", "hot1", "hot2")
    assert len(graph) == 3
    assert graph.by_hotkey("hot1") == _neuron(1, stake=99_999.0)
    assert graph.by_hotkey("nobody") is None
    assert graph.by_uid(2) is not None and graph.by_uid(2).hotkey == "hot2"  # type: ignore[union-attr]
    assert graph.by_uid(9) is None


def test_metagraph_validators_need_permit_and_stake() -> None:
    graph = _graph()
    assert [n.uid for n in graph.validators()] == [0, 2]
    assert [n.uid for n in graph.validators(min_stake=1_000.0)] == [2]
    assert graph.validators(min_stake=1e9) == ()
    assert graph.is_validator("hot2", min_stake=5_000.0)
    assert not graph.is_validator("hot2", min_stake=5_000.5)
    assert not graph.is_validator("hot1")  # lots of stake, no permit
    assert not graph.is_validator("nobody")


def test_metagraph_require_raises_not_registered() -> None:
    graph = _graph()
    assert graph.require("hot0").uid == 0
    with pytest.raises(NotRegistered) as info:
        graph.require("5Fnobody")
    assert info.value.hotkey == "5Fnobody"
    assert info.value.netuid == 128
    assert "5Fnobody" in str(info.value) and "netuid 128" in str(info.value)
    assert "register" in str(info.value)


def test_metagraph_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="uids"):
        MetagraphView(netuid=1, block=0, neurons=(_neuron(0), _neuron(0)))
    twin = NeuronView(uid=1, hotkey="hot0", coldkey="c", stake=0.0, validator_permit=False)
    with pytest.raises(ValueError, match="hotkeys"):
        MetagraphView(netuid=1, block=0, neurons=(_neuron(0), twin))


def test_metagraph_equality_ignores_input_order() -> None:
    graph = _graph()
    again = MetagraphView(netuid=128, block=77, neurons=tuple(reversed(graph.neurons)))
    assert graph == again
    assert hash(graph) == hash(again)


# --------------------------------------------------------------------------- weights


def test_check_weights_normalises_keys_and_order() -> None:
    checked = check_weights({np.int64(5): 0.5, 1: 2, 3: np.float32(0.0)})  # type: ignore[dict-item]
    assert checked == {1: 2.0, 3: 0.0, 5: 0.5}
    assert list(checked) == [1, 3, 5]
    assert all(type(k) is int and type(v) is float for k, v in checked.items())


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({0: -0.1}, "finite"),
        ({0: math.nan}, "finite"),
        ({0: math.inf}, "finite"),
        ({}, "zero"),
        ({0: 0.0, 1: 0.0}, "zero"),
        ({-1: 1.0}, "0..65535"),
        ({65_536: 1.0}, "0..65535"),
        ({True: 1.0}, "integer"),
        ({"3": 1.0}, "integer"),
    ],
)
def test_check_weights_rejects(weights: dict[object, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_weights(weights)  # type: ignore[arg-type]


def test_weights_receipt_is_plain_data() -> None:
    receipt = WeightsReceipt(
        success=True, message="ok", block=10, uids=(1, 2), values=(65535, 3), version_key=1_000
    )
    assert receipt == WeightsReceipt(True, "ok", 10, (1, 2), (65535, 3), 1_000)
    with pytest.raises(AttributeError):
        receipt.block = 11  # type: ignore[misc]


# --------------------------------------------------------------------------- errors


def test_chain_errors_fit_the_error_tree() -> None:
    not_registered = NotRegistered("5Fhot", 128)
    limited = ChainRateLimited("wait", blocks_remaining=7)
    for error in (not_registered, limited, ChainRefused("no")):
        assert isinstance(error, ChainError)
        assert isinstance(error, TransientError)
        assert isinstance(error, ByteLeapError)
        assert outcome_of(error).value == "excused"  # never blamed on a peer
    assert isinstance(not_registered, ChainRefused)
    assert isinstance(limited, ChainRefused)
    assert not isinstance(ChainError("down"), ChainRefused)
    assert limited.blocks_remaining == 7
    assert {not_registered.code, limited.code, ChainRefused.code} == {
        "not_registered",
        "chain_rate_limited",
        "chain_refused",
    }
