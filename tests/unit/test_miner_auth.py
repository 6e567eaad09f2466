"""ValidatorGate: btauth/1 authentication and validator authorization, without HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bittensor import http_auth

from byteleap.chain import MetagraphView, NeuronView
from byteleap.errors import Forbidden, Unauthenticated
from neurons.miner.auth import ValidatorGate
from tests.wallets import make_wallet

NOW = 1_750_000_000 * 10**9


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, str]]:
    root = tmp_path_factory.mktemp("gate-wallets")
    return {
        name: make_wallet(root, name, seed=(b"gate-" + name.encode()).ljust(32, b"\0"))
        for name in ("miner", "validator", "outsider", "nopermit", "poor", "listed")
    }


def _metagraph(keys: dict[str, tuple[Any, str]]) -> MetagraphView:
    rows = [("validator", 5000.0, True), ("nopermit", 9000.0, False), ("poor", 999.0, True)]
    return MetagraphView(
        netuid=128,
        block=7,
        neurons=tuple(
            NeuronView(uid, keys[name][1], f"c{uid}", stake, permit)
            for uid, (name, stake, permit) in enumerate(rows)
        ),
    )


def _gate(
    keys: dict[str, tuple[Any, str]], metagraph: MetagraphView | None = None
) -> ValidatorGate:
    mg = metagraph if metagraph is not None else _metagraph(keys)
    return ValidatorGate(
        keys["miner"][1],
        metagraph_source=lambda: mg,
        min_stake=1000.0,
        allowed={keys["listed"][1]},
        now_ns=lambda: NOW,
    )


def _sign(
    keys: dict[str, tuple[Any, str]], who: str = "validator", body: bytes = b"x", **kw: Any
) -> dict[str, str]:
    kw.setdefault("receiver_ss58", keys["miner"][1])
    kw.setdefault("nonce_ns", NOW)
    return http_auth.sign(keys[who][0], method="POST", path="/challenge", body=body, **kw)


def test_permitted_validator_passes(keys: dict[str, tuple[Any, str]]) -> None:
    gate = _gate(keys)
    assert gate.check(_sign(keys), b"x", "POST", "/challenge") == keys["validator"][1]


def test_header_names_are_case_insensitive(keys: dict[str, tuple[Any, str]]) -> None:
    headers = {k.lower(): v for k, v in _sign(keys).items()}
    assert _gate(keys).check(headers, b"x", "POST", "/challenge") == keys["validator"][1]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop(http_auth.HEADER_SIGNATURE), "missing"),
        (lambda h: h.pop(http_auth.HEADER_RECEIVER), "missing"),
        (lambda h: h.__setitem__(http_auth.HEADER_NONCE, "soon"), "MalformedAuth"),
        (lambda h: h.__setitem__(http_auth.HEADER_SIGNATURE, "0xzz"), "MalformedAuth"),
        (lambda h: h.__setitem__(http_auth.HEADER_VERSION, "2"), "MalformedAuth"),
    ],
)
def test_malformed_headers_are_unauthenticated(
    keys: dict[str, tuple[Any, str]], mutate: Any, reason: str
) -> None:
    headers = _sign(keys)
    mutate(headers)
    with pytest.raises(Unauthenticated, match=reason):
        _gate(keys).check(headers, b"x", "POST", "/challenge")


def test_wrong_receiver(keys: dict[str, tuple[Any, str]]) -> None:
    headers = _sign(keys, receiver_ss58=keys["outsider"][1])
    with pytest.raises(Unauthenticated, match="WrongReceiver"):
        _gate(keys).check(headers, b"x", "POST", "/challenge")


@pytest.mark.parametrize("offset_s", [-11.0, 3.0])
def test_stale_or_future_nonce(keys: dict[str, tuple[Any, str]], offset_s: float) -> None:
    headers = _sign(keys, nonce_ns=NOW + int(offset_s * 1e9))
    with pytest.raises(Unauthenticated, match="StaleRequest"):
        _gate(keys).check(headers, b"x", "POST", "/challenge")


def test_nonce_inside_window_passes(keys: dict[str, tuple[Any, str]]) -> None:
    headers = _sign(keys, nonce_ns=NOW - 9 * 10**9)
    assert _gate(keys).check(headers, b"x", "POST", "/challenge") == keys["validator"][1]


@pytest.mark.parametrize(
    ("body", "method", "path"),
    [(b"y", "POST", "/challenge"), (b"x", "PUT", "/challenge"), (b"x", "POST", "/reveal")],
)
def test_signature_covers_body_method_and_path(
    keys: dict[str, tuple[Any, str]], body: bytes, method: str, path: str
) -> None:
    with pytest.raises(Unauthenticated, match="BadSignature"):
        _gate(keys).check(_sign(keys), body, method, path)


def test_replay_is_refused_across_paths_of_one_gate(keys: dict[str, tuple[Any, str]]) -> None:
    gate = _gate(keys)
    headers = _sign(keys)
    gate.check(headers, b"x", "POST", "/challenge")
    with pytest.raises(Unauthenticated, match="ReplayedRequest"):
        gate.check(headers, b"x", "POST", "/challenge")
    # a different nonce from the same hotkey is fine
    gate.check(_sign(keys, nonce_ns=NOW + 1), b"x", "POST", "/challenge")


def test_failed_signature_does_not_poison_the_nonce_store(
    keys: dict[str, tuple[Any, str]],
) -> None:
    gate = _gate(keys)
    headers = _sign(keys)
    with pytest.raises(Unauthenticated):
        gate.check(headers, b"tampered", "POST", "/challenge")
    assert gate.check(headers, b"x", "POST", "/challenge") == keys["validator"][1]


def test_messages_never_echo_the_signature(keys: dict[str, tuple[Any, str]]) -> None:
    headers = _sign(keys)
    with pytest.raises(Unauthenticated) as info:
        _gate(keys).check(headers, b"tampered", "POST", "/challenge")
    assert headers[http_auth.HEADER_SIGNATURE][2:] not in str(info.value)


@pytest.mark.parametrize(
    ("who", "fragment"),
    [
        ("outsider", "unknown hotkey"),
        ("nopermit", "no validator permit"),
        ("poor", "stake 999, below the minimum 1000"),
    ],
)
def test_authorization_failures_name_the_condition(
    keys: dict[str, tuple[Any, str]], who: str, fragment: str
) -> None:
    with pytest.raises(Forbidden, match=fragment):
        _gate(keys).check(_sign(keys, who), b"x", "POST", "/challenge")


def test_allow_list_bypasses_the_metagraph(keys: dict[str, tuple[Any, str]]) -> None:
    gate = _gate(keys)
    assert gate.check(_sign(keys, "listed"), b"x", "POST", "/challenge") == keys["listed"][1]


def test_no_metagraph_yet(keys: dict[str, tuple[Any, str]]) -> None:
    gate = ValidatorGate(
        keys["miner"][1],
        metagraph_source=lambda: None,
        min_stake=0.0,
        allowed={keys["listed"][1]},
        now_ns=lambda: NOW,
    )
    with pytest.raises(Forbidden, match="metagraph is not synced"):
        gate.check(_sign(keys), b"x", "POST", "/challenge")
    assert gate.check(_sign(keys, "listed"), b"x", "POST", "/challenge") == keys["listed"][1]


def test_default_clock_and_store(keys: dict[str, tuple[Any, str]]) -> None:
    gate = ValidatorGate(
        keys["miner"][1], metagraph_source=lambda: _metagraph(keys), min_stake=1000.0
    )
    headers = _sign(keys, nonce_ns=time.time_ns())
    assert gate.check(headers, b"x", "POST", "/challenge") == keys["validator"][1]
    assert gate.nonce_store.retention >= gate.max_age + gate.allowed_skew  # type: ignore[attr-defined]
