"""The real chain: :class:`byteleap.chain.ChainPort` over the bittensor SDK (11.x).

``BittensorChain`` holds one async ``bittensor.Client``, opened on first use and reopened after a
connection failure. Reads go through the typed namespaces (``client.subnets.metagraph``,
``client.block``, ``client.query``); writes are intents executed with the wallet
(``bittensor.SetWeights``, which conforms the vector to the subnet's hyperparameters and picks
plain or commit-reveal submission itself, and ``bittensor.ServeAxon``).

Errors are mapped into ByteLeap's tree by the SDK's machine-readable ``ErrorCode``:

- ``not_registered`` -> :class:`byteleap.chain.NotRegistered`;
- ``rate_limited`` -> :class:`byteleap.chain.ChainRateLimited`;
- any other definite refusal (bad argument, no permit, subnet missing, ...) ->
  :class:`byteleap.chain.ChainRefused`;
- everything else (connection lost, RPC refused, unknown or internal chain errors) ->
  ``ChainError``, retried here with exponential backoff before it reaches the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import bittensor as bt
from bittensor.error_map import ErrorCode
from bittensor.intents.serving import ServeAxon
from bittensor.intents.weights import SetWeights, normalize
from bittensor.result import (
    BittensorError,
    ConnectionNotReady,
    ExtrinsicResult,
    PolicyError,
    RpcConnectionError,
)
from bittensor.result import ChainError as SdkChainError
from bittensor.settings import resolve_endpoint

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
from byteleap.errors import ChainError, ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Connect = Callable[[str], Awaitable[Any]]

#: SDK error codes that are a definite answer: the same request would fail the same way.
_REFUSED_CODES = frozenset(
    {
        ErrorCode.INSUFFICIENT_BALANCE,
        ErrorCode.INSUFFICIENT_LIQUIDITY,
        ErrorCode.NOT_AUTHORIZED,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.NOT_FOUND,
        ErrorCode.SUBNET_NOT_EXISTS,
        ErrorCode.SUBTOKEN_DISABLED,
        ErrorCode.DISABLED,
        ErrorCode.TOO_EARLY,
        ErrorCode.EXPIRED,
        ErrorCode.LIMIT_EXCEEDED,
        ErrorCode.UNIT_MISMATCH,
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.POLICY_VIOLATION,
    }
)

#: Exceptions that mean the connection itself is unusable: drop the client and reconnect.
_CONNECTION_ERRORS = (RpcConnectionError, ConnectionNotReady, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: try ``attempts`` times, sleeping ``initial * factor**n`` in between
    (capped at ``max_delay``)."""

    attempts: int = 4
    initial: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.initial < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError("delays must be >= 0 and factor >= 1")

    def delays(self) -> Iterator[float]:
        """The sleeps between attempts (``attempts - 1`` of them)."""
        delay = self.initial
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= self.factor


async def connect_client(network: str) -> bt.Client:
    """Open an async ``bittensor.Client`` on ``network`` (a name like ``finney`` or a ws URL)."""
    client = bt.Client(network)
    try:
        await client.connect()
    except BaseException:
        with contextlib.suppress(Exception):
            await client.close()
        raise
    return client


def parse_axon(axon: str | None) -> Endpoint | None:
    """The metagraph's axon string (``ip:port`` or ``[ipv6]:port``) as an Endpoint.

    ``None`` when nothing is served, and for a string that is not a usable endpoint (logged).
    """
    if not axon:
        return None
    try:
        return Endpoint.parse(axon)
    except ValueError as exc:
        log.warning("ignoring unusable axon %r: %s", axon, exc)
        return None


def _hotkey_ss58(wallet: Any) -> str:
    try:
        return str(wallet.hotkey.ss58_address)
    except Exception as exc:
        raise ConfigError(
            f"cannot load the hotkey of {wallet!r}: {exc}", key="wallet.hotkey"
        ) from exc


class BittensorChain:
    """:class:`byteleap.chain.ChainPort` on a Bittensor network, signing with ``wallet``'s hotkey.

    ``network`` is a bittensor network name (``finney``, ``test``, ``local``) or a ``ws://`` /
    ``wss://`` endpoint. ``connect`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        wallet: Any,
        *,
        netuid: int,
        network: str = "finney",
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
        connect: Connect = connect_client,
        wait_for_finalization: bool = False,
        submit_retries: int = 2,
    ) -> None:
        try:
            resolve_endpoint(network)
        except ValueError as exc:
            raise ConfigError(str(exc), key="chain.network") from None
        self.wallet = wallet
        self.netuid = int(netuid)
        self.network = network
        self.hotkey = _hotkey_ss58(wallet)
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._connect = connect
        self._wait_for_finalization = wait_for_finalization
        self._submit_retries = submit_retries
        self._client: Any = None
        self._connecting = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"BittensorChain(network={self.network!r}, netuid={self.netuid}, "
            f"hotkey={self.hotkey!r})"
        )

    # ------------------------------------------------------------------ connection

    async def _get_client(self) -> Any:
        if self._closed:
            raise ChainError("the chain client is closed")
        async with self._connecting:
            if self._client is None:
                log.info("connecting to bittensor network %s", self.network)
                self._client = await self._connect(self.network)
            return self._client

    async def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception as exc:
                log.debug("closing a broken chain connection failed: %s", exc)

    async def close(self) -> None:
        self._closed = True
        await self._drop_client()

    # ------------------------------------------------------------------ errors and retries

    def _map(self, exc: BaseException, what: str) -> ChainError:
        """The ByteLeap error for an exception raised while doing ``what``."""
        if isinstance(exc, ChainError):
            return exc
        if isinstance(exc, SdkChainError):
            return self._map_sdk_chain_error(exc, what)
        if isinstance(exc, PolicyError):
            return ChainRefused(f"{what}: refused by the SDK policy: {exc}")
        if isinstance(exc, _CONNECTION_ERRORS):
            return ChainError(f"{what}: cannot reach {self.network}: {exc}")
        if isinstance(exc, BittensorError):
            return ChainRefused(f"{what}: {exc}")
        return ChainError(f"{what}: unexpected {type(exc).__name__}: {exc}")

    def _map_sdk_chain_error(self, exc: SdkChainError, what: str) -> ChainError:
        name = f" ({exc.name})" if exc.name else ""
        text = f"{what}: {exc.message}{name}"
        if exc.code is ErrorCode.NOT_REGISTERED:
            return NotRegistered(self.hotkey, self.netuid, f"{what}: {exc.message}")
        if exc.code is ErrorCode.RATE_LIMITED:
            return ChainRateLimited(text)
        if exc.code in _REFUSED_CODES:
            return ChainRefused(f"{text}; {exc.remediation}")
        return ChainError(text)

    async def _call(self, what: str, op: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``op(client)``, retrying transient failures with backoff."""
        delays = self._backoff.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                client = await self._get_client()
                return await op(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = self._map(exc, what)
                if isinstance(error, ChainRefused) or self._closed:
                    if error is exc:
                        raise
                    raise error from exc
                if isinstance(exc, _CONNECTION_ERRORS) or not isinstance(
                    exc, (ChainError, BittensorError)
                ):
                    # the connection is broken, or in a state we do not understand: reopen it
                    await self._drop_client()
                delay = next(delays, None)
                if delay is None:
                    raise ChainError(f"{error.message} (gave up after {attempt} attempts)") from exc
                log.warning(
                    "%s failed (attempt %d/%d), retrying in %.1fs: %s",
                    what,
                    attempt,
                    self._backoff.attempts,
                    delay,
                    error.message,
                )
                await self._sleep(delay)

    def _raise_for_result(self, result: ExtrinsicResult, what: str) -> None:
        if not result.success:
            raise self._map_sdk_chain_error(
                result.error or SdkChainError(result.message or "extrinsic failed"), what
            )

    # ------------------------------------------------------------------ the port

    async def metagraph(self) -> MetagraphView:
        async def op(client: Any) -> MetagraphView:
            graph = await client.subnets.metagraph(self.netuid, commitments=False)
            if graph is None:
                raise ChainRefused(f"netuid {self.netuid} does not exist on {self.network}")
            return _metagraph_view(graph)

        return await self._call("reading the metagraph", op)

    async def current_block(self) -> int:
        async def op(client: Any) -> int:
            return int(await client.block())

        return await self._call("reading the current block", op)

    async def tempo(self) -> int:
        async def op(client: Any) -> int:
            value = await client.query(bt.storage.SubtensorModule.Tempo, [self.netuid])
            if not value:
                raise ChainRefused(
                    f"netuid {self.netuid} has no tempo on {self.network} (does it exist?)"
                )
            return int(value)

        return await self._call("reading the tempo", op)

    async def serve(self, ip: str, port: int) -> None:
        endpoint = check_serve_address(ip, port)
        what = f"serving {endpoint} on netuid {self.netuid}"

        async def op(client: Any) -> None:
            intent = ServeAxon(netuid=self.netuid, ip=endpoint.ip, port=endpoint.port)
            result = await client.execute(
                intent,
                self.wallet,
                retries=self._submit_retries,
                wait_for_finalization=self._wait_for_finalization,
            )
            self._raise_for_result(result, what)

        await self._call(what, op)
        log.info("served %s on netuid %d as %s", endpoint, self.netuid, self.hotkey)

    async def set_weights(
        self, weights: Mapping[int, float], *, version_key: int
    ) -> WeightsReceipt:
        checked = check_weights(weights)
        uids, values = normalize(list(checked), list(checked.values()))
        what = f"setting weights on netuid {self.netuid}"

        async def op(client: Any) -> WeightsReceipt:
            intent = SetWeights(
                netuid=self.netuid,
                uids=list(checked),
                weights=list(checked.values()),
                version_key=int(version_key),
            )
            result = await client.execute(
                intent,
                self.wallet,
                retries=self._submit_retries,
                wait_for_finalization=self._wait_for_finalization,
            )
            self._raise_for_result(result, what)
            block = _block_of(result)
            if block is None:
                block = int(await client.block())
            message = result.message or "Success"
            if "reveal_round" in result.data:  # commit-reveal: the chain reveals it later
                message += f" (committed; revealed at drand round {result.data['reveal_round']})"
            return WeightsReceipt(
                success=True,
                message=message,
                block=block,
                uids=tuple(uids),
                values=tuple(values),
                version_key=int(version_key),
            )

        return await self._call(what, op)


def _block_of(result: ExtrinsicResult) -> int | None:
    """The inclusion block from ``extrinsic_id`` (``"<block>-<index>"``), when present."""
    head, sep, _ = (result.extrinsic_id or "").partition("-")
    return int(head) if sep and head.isdigit() else None


def _metagraph_view(graph: Any) -> MetagraphView:
    neurons = tuple(
        NeuronView(
            uid=int(n.uid),
            hotkey=str(n.hotkey),
            coldkey=str(n.coldkey),
            # total stake weight in the subnet's own units (alpha), whatever the Balance's tag
            stake=float(n.total_stake.amount),
            validator_permit=bool(n.validator_permit),
            axon=parse_axon(n.axon),
        )
        for n in graph.neurons
    )
    return MetagraphView(netuid=int(graph.netuid), block=int(graph.block), neurons=neurons)


__all__ = ["Backoff", "BittensorChain", "connect_client", "parse_axon"]
