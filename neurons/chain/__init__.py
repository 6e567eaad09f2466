"""The chain port's implementations: the real chain (bittensor SDK) and the local devchain.

Pick one with :func:`open_chain`: the ``network`` setting is a bittensor network name or
``ws(s)://`` URL for the real chain, or ``devchain:PATH`` for the devchain file at ``PATH``.
"""

from __future__ import annotations

import os
from typing import Any

from byteleap.chain import ChainPort
from byteleap.errors import ConfigError
from neurons.chain.bittensor_adapter import Backoff, BittensorChain, connect_client, parse_axon
from neurons.chain.devchain import DevChain, DevChainClient
from neurons.chain.devchain_file import DevChainParams, WeightsRecord

DEVCHAIN_PREFIX = "devchain:"


def devchain_path(network: str) -> str | None:
    """The file named by ``network`` = ``devchain:PATH``, or ``None`` for a real network."""
    if network.startswith(DEVCHAIN_PREFIX):
        path = network[len(DEVCHAIN_PREFIX) :]
        if not path:
            raise ConfigError(
                "devchain: needs a file path, e.g. devchain:/tmp/devnet/chain.db",
                key="chain.network",
            )
        return os.path.expanduser(path)
    return None


async def open_chain(wallet: Any, *, network: str, netuid: int) -> ChainPort:
    """The :class:`ChainPort` for ``wallet``'s hotkey on ``netuid`` of ``network``.

    Connecting to a real network happens lazily, on the first call. A devchain is opened now,
    and its netuid must match ``netuid``.
    """
    path = devchain_path(network)
    if path is None:
        return BittensorChain(wallet, netuid=netuid, network=network)
    client = await DevChainClient.for_wallet(path, wallet)
    if client.netuid != netuid:
        await client.close()
        raise ConfigError(
            f"the devchain at {path} runs netuid {client.netuid}, the configuration says {netuid}",
            key="chain.netuid",
        )
    return client


__all__ = [
    "DEVCHAIN_PREFIX",
    "Backoff",
    "BittensorChain",
    "DevChain",
    "DevChainClient",
    "DevChainParams",
    "WeightsRecord",
    "connect_client",
    "devchain_path",
    "open_chain",
    "parse_axon",
]
