"""The chain port: what the neurons need from the Bittensor chain, and nothing more.

The miner and the validator talk to the chain only through :class:`ChainPort`. Two implementations
live in ``neurons/chain/``:

- ``BittensorChain`` (``neurons.chain.bittensor_adapter``): the real chain through the bittensor
  SDK;
- ``DevChainClient`` (``neurons.chain.devchain``): a local stand-in shared through a SQLite file,
  used only by ``byteleap devnet`` and the tests.

Everything here is plain data and pure functions: the views are frozen dataclasses built by an
adapter, so the rest of the code (authentication, scoring) can be tested without any chain.

Units. ``NeuronView.stake`` is the neuron's *total stake weight on the subnet* as the chain's
metagraph reports it (``total_stake``), expressed in the subnet's own token units (alpha; one unit
is 10**9 rao). ``min_validator_stake`` in the configuration is compared against this number.

Failures. Every implementation raises :class:`byteleap.errors.ChainError` (a ``TransientError``)
or one of the subclasses below. :class:`ChainRefused` and its subclasses mean the chain looked at
the request and said no: retrying it unchanged fails the same way. A plain ``ChainError`` means
the chain could not be reached or failed; it is worth retrying later. Invalid arguments (a
negative weight, port 0) are the caller's bug and raise ``ValueError`` before anything is sent.
"""

from __future__ import annotations

import ipaddress
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from byteleap.errors import ChainError

U16_MAX = 65_535

# --------------------------------------------------------------------------- errors


class ChainRefused(ChainError):
    """The chain refused the request; retrying it unchanged would fail the same way."""

    code = "chain_refused"


class NotRegistered(ChainRefused):
    """The hotkey is not registered on the subnet."""

    code = "not_registered"

    def __init__(self, hotkey: str, netuid: int, detail: str = "") -> None:
        text = f"hotkey {hotkey} is not registered on netuid {netuid}"
        if detail:
            text += f" ({detail})"
        super().__init__(
            text + "; register it first (btcli subnets register --netuid "
            f"{netuid}), or check wallet.name / wallet.hotkey and the network"
        )
        self.hotkey = hotkey
        self.netuid = netuid


class ChainRateLimited(ChainRefused):
    """The chain's rate limit for this call has not elapsed yet (weights or serving)."""

    code = "chain_rate_limited"

    def __init__(self, message: str, *, blocks_remaining: int | None = None) -> None:
        super().__init__(message)
        self.blocks_remaining = blocks_remaining


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A served ``ip:port``. ``ip`` is the canonical text form (IPv4 or IPv6, no brackets)."""

    ip: str
    port: int

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.ip)
        except ValueError:
            raise ValueError(f"invalid IP address {self.ip!r}") from None
        try:
            if isinstance(self.port, bool):
                raise TypeError
            port = operator.index(self.port)
        except TypeError:
            raise ValueError(f"port must be an integer, got {self.port!r}") from None
        if not 1 <= port <= 65_535:
            raise ValueError(f"port must be in 1..65535, got {port}")
        object.__setattr__(self, "ip", str(address))
        object.__setattr__(self, "port", port)

    @property
    def is_ipv6(self) -> bool:
        return ipaddress.ip_address(self.ip).version == 6

    @property
    def host(self) -> str:
        """The host part of a URL: IPv6 addresses in brackets."""
        return f"[{self.ip}]" if self.is_ipv6 else self.ip

    def url(self, scheme: str = "http") -> str:
        """``scheme://host:port``, e.g. ``http://[2001:db8::1]:8091``."""
        return f"{scheme}://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``"1.2.3.4:8091"`` or ``"[2001:db8::1]:8091"`` (the metagraph's axon format).

        Raises ``ValueError`` for anything else, including an unbracketed IPv6 address.
        """
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"invalid endpoint {text!r}: expected [ipv6]:port")
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(f"invalid endpoint {text!r}: brackets are for IPv6 only")
        else:
            host, sep, port = text.rpartition(":")
            if not sep or ":" in host:
                raise ValueError(f"invalid endpoint {text!r}: expected ip:port or [ipv6]:port")
        if not port.isdigit():
            raise ValueError(f"invalid endpoint {text!r}: port is not a number")
        return cls(host, int(port))


@dataclass(frozen=True, slots=True)
class NeuronView:
    """One registered neuron as the metagraph shows it."""

    uid: int
    hotkey: str
    coldkey: str
    #: total stake weight on the subnet, in the subnet's alpha units (see the module docstring)
    stake: float
    validator_permit: bool
    #: the endpoint it serves, or ``None`` when it serves nothing
    axon: Endpoint | None = None

    def is_validator(self, min_stake: float = 0.0) -> bool:
        """Holds a validator permit and at least ``min_stake``."""
        return self.validator_permit and self.stake >= min_stake


@dataclass(frozen=True, slots=True)
class MetagraphView:
    """The subnet's neurons at one block, ordered by uid."""

    netuid: int
    block: int
    neurons: tuple[NeuronView, ...]
    _by_hotkey: dict[str, NeuronView] = field(init=False, repr=False, compare=False)
    _by_uid: dict[int, NeuronView] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        neurons = tuple(sorted(self.neurons, key=lambda n: n.uid))
        by_hotkey = {n.hotkey: n for n in neurons}
        by_uid = {n.uid: n for n in neurons}
        if len(by_uid) != len(neurons):
            raise ValueError("metagraph has duplicate uids")
        if len(by_hotkey) != len(neurons):
            raise ValueError("metagraph has duplicate hotkeys")
        object.__setattr__(self, "neurons", neurons)
        object.__setattr__(self, "_by_hotkey", by_hotkey)
        object.__setattr__(self, "_by_uid", by_uid)

    def __len__(self) -> int:
        return len(self.neurons)

    @property
    def hotkeys(self) -> tuple[str, ...]:
        return tuple(n.hotkey for n in self.neurons)

    def by_hotkey(self, hotkey: str) -> NeuronView | None:
        """The neuron registered under ``hotkey``, or ``None``."""
        return self._by_hotkey.get(hotkey)

    def by_uid(self, uid: int) -> NeuronView | None:
        """The neuron at ``uid``, or ``None``."""
        return self._by_uid.get(uid)

    def require(self, hotkey: str) -> NeuronView:
        """The neuron registered under ``hotkey``; raises :class:`NotRegistered` when absent."""
        neuron = self._by_hotkey.get(hotkey)
        if neuron is None:
            raise NotRegistered(hotkey, self.netuid, f"not in the metagraph at block {self.block}")
        return neuron

    def validators(self, min_stake: float = 0.0) -> tuple[NeuronView, ...]:
        """Neurons with a validator permit and at least ``min_stake``, ordered by uid."""
        return tuple(n for n in self.neurons if n.is_validator(min_stake))

    def is_validator(self, hotkey: str, min_stake: float = 0.0) -> bool:
        """Whether ``hotkey`` is registered with a validator permit and at least ``min_stake``."""
        neuron = self._by_hotkey.get(hotkey)
        return neuron is not None and neuron.is_validator(min_stake)


@dataclass(frozen=True, slots=True)
class WeightsReceipt:
    """The outcome of a weights submission.

    A port returns a receipt only when the chain accepted the submission (``success`` is then
    ``True``); a failed submission raises ``ChainError``. ``uids``/``values`` are the u16 vector
    produced by bittensor's ``normalize`` (max-upscaled to 65535, zeros dropped) from the weights
    passed in. The real chain may further clip it to the subnet's ``max_weight_limit``, and on a
    commit-reveal subnet the vector becomes visible only after the reveal.
    """

    success: bool
    message: str
    #: block the submission was included in (or, when unknown, the head when it was accepted)
    block: int
    uids: tuple[int, ...] = ()
    values: tuple[int, ...] = ()
    version_key: int = 0


def check_weights(weights: Mapping[int, float]) -> dict[int, float]:
    """Validate a ``uid -> weight`` mapping; return it as plain ``int -> float``, sorted by uid.

    Raises ``ValueError`` for a uid outside ``0..65535``, a weight that is negative or not
    finite, or a mapping whose weights are all zero (nothing to set).
    """
    out: dict[int, float] = {}
    for key, weight in weights.items():
        try:
            if isinstance(key, bool):
                raise TypeError
            uid = operator.index(key)
        except TypeError:
            raise ValueError(f"uid must be an integer, got {key!r}") from None
        if not 0 <= uid <= U16_MAX:
            raise ValueError(f"uid must be in 0..{U16_MAX}, got {uid}")
        if uid in out:
            raise ValueError(f"uid {uid} appears twice")
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"weight for uid {uid} must be finite and >= 0, got {weight!r}")
        out[uid] = value
    out = dict(sorted(out.items()))
    if not any(out.values()):
        raise ValueError("every weight is zero: nothing to set")
    return out


def check_serve_address(ip: str, port: int) -> Endpoint:
    """Validate an endpoint to publish; raises ``ValueError`` for one validators cannot reach.

    The unspecified addresses (``0.0.0.0``, ``::``) are refused: the chain would publish them as
    "nothing served". A miner bound to all interfaces must publish its external address.
    """
    endpoint = Endpoint(ip, port)
    if ipaddress.ip_address(endpoint.ip).is_unspecified:
        raise ValueError(
            f"cannot publish the unspecified address {endpoint.ip}: give the external IP "
            "that validators can reach"
        )
    return endpoint


# --------------------------------------------------------------------------- the port


@runtime_checkable
class ChainPort(Protocol):
    """The chain, as seen by one hotkey on one subnet.

    All methods are coroutines and raise ``ChainError`` (or a subclass) on failure.
    """

    async def metagraph(self) -> MetagraphView:
        """The subnet's current metagraph."""
        ...

    async def serve(self, ip: str, port: int) -> None:
        """Publish this hotkey's endpoint. Raises :class:`NotRegistered` when not registered."""
        ...

    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int
    ) -> WeightsReceipt:
        """Submit ``uid -> weight`` (relative; only proportions matter) signed by this hotkey.

        Raises :class:`NotRegistered`, :class:`ChainRateLimited`, :class:`ChainRefused`, or
        ``ChainError``; ``ValueError`` for invalid weights (see :func:`check_weights`).
        """
        ...

    async def current_block(self) -> int:
        """The chain's current block number."""
        ...

    async def tempo(self) -> int:
        """The subnet's tempo in blocks (one epoch)."""
        ...

    async def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...


__all__ = [
    "U16_MAX",
    "ChainPort",
    "ChainRateLimited",
    "ChainRefused",
    "Endpoint",
    "MetagraphView",
    "NeuronView",
    "NotRegistered",
    "WeightsReceipt",
    "check_serve_address",
    "check_weights",
]
