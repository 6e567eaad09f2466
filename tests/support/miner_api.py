"""Helpers for the tests that call a miner's validator API over real HTTP on 127.0.0.1.

Identities are real bittensor wallets made offline from fixed seeds (one name, one hotkey);
:func:`serving` runs an ASGI app under uvicorn on port 0 in the test's event loop; :func:`signed`
and :func:`api_error` are the two ends of a btauth/1 request. The ``ids`` fixture
(``tests/integration/conftest.py``) is :func:`identities` of :data:`NAMES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from bittensor import http_auth

from byteleap.chain import MetagraphView, NeuronView
from byteleap.protocol import codec
from byteleap.protocol.miner_api.errors import ApiError
from daemonkit.http import EmbeddedServer
from neurons.miner.api import CONTENT_TYPE
from tests.wallets import make_wallet

NETUID = 128
#: the wallets of the ``ids`` fixture
NAMES = ("miner", "validator", "validator2", "outsider")


@dataclass(frozen=True)
class Identities:
    wallets: dict[str, Any]
    hotkeys: dict[str, str]


def identities(root: Path, names: Iterable[str] = NAMES) -> Identities:
    """One wallet per name under ``root``, its hotkey seeded by the name (stable across runs)."""
    wallets, hotkeys = {}, {}
    for name in names:
        wallet, hotkey = make_wallet(root, name, seed=name.encode().ljust(32, b"\0"))
        wallets[name], hotkeys[name] = wallet, hotkey
    return Identities(wallets, hotkeys)


def metagraph(ids: Identities) -> MetagraphView:
    """The miner (uid 0) and two permitted validators with 5,000 and 3,000 stake."""
    rows = [("miner", 0.0, False), ("validator", 5000.0, True), ("validator2", 3000.0, True)]
    neurons = tuple(
        NeuronView(uid=uid, hotkey=ids.hotkeys[n], coldkey=f"c{uid}", stake=s, validator_permit=p)
        for uid, (n, s, p) in enumerate(rows)
    )
    return MetagraphView(netuid=NETUID, block=1, neurons=neurons)


@contextlib.asynccontextmanager
async def serving(app: Any, name: str = "miner API") -> AsyncIterator[str]:
    """The daemons' :class:`~daemonkit.http.EmbeddedServer` on 127.0.0.1:0 on this event loop
    (the hub lives here too); yields its base URL."""
    async with EmbeddedServer(app, "127.0.0.1", 0, name=name, http="h11") as server:
        yield server.url


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 20 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class HasWallets(Protocol):
    @property
    def wallets(self) -> Mapping[str, Any]: ...


class HasHotkey(Protocol):
    @property
    def hotkey(self) -> str: ...


def signed(
    ids: HasWallets,
    miner: HasHotkey,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    who: str = "validator",
    **sign_kw: Any,
) -> dict[str, str]:
    """btauth/1 headers of ``who``'s request to ``miner`` (override any signing argument)."""
    sign_kw.setdefault("receiver_ss58", miner.hotkey)
    headers = http_auth.sign(ids.wallets[who], method=method, path=path, body=body, **sign_kw)
    headers["Content-Type"] = CONTENT_TYPE
    return headers


def api_error(response: httpx.Response) -> ApiError:
    """The typed error a miner answered with."""
    assert response.headers["content-type"] == CONTENT_TYPE
    error = codec.decode(response.content, codec.MINER_RESPONSE, max_bytes=1 << 20)
    assert isinstance(error, ApiError)
    return error
