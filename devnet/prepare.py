"""Put a :class:`~devnet.specs.Plan` on disk: wallets, worker keys, configs, the devchain.

After :func:`prepare`, every process of the plan can start: its config file exists, its wallet or
key file is where the config says, and every hotkey is registered on the devchain (a miner whose
hotkey is not registered stops at start-up, like on the real chain). The validators and the
colluding validators are registered with a validator permit and their stakes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import bittensor as bt
import yaml

from devnet.specs import NeuronSpec, Plan, ValidatorSpec
from neurons.chain import DevChain


@dataclass(frozen=True)
class NeuronIdentity:
    """A neuron as the devchain knows it."""

    uid: int
    hotkey: str
    coldkey: str
    #: its stake (a validator's; 0 for a miner)
    stake: float = 0.0


@dataclass(frozen=True)
class Network:
    """The prepared devnet: the chain and who is who on it."""

    chain: DevChain
    #: the validators, in the plan's order (the renters' first)
    validators: tuple[NeuronIdentity, ...]
    #: by miner name (``miner-1``, ``cheater-1``)
    miners: dict[str, NeuronIdentity]
    #: the colluding validators, by name (``colluder-1``)
    colluders: dict[str, NeuronIdentity] = field(default_factory=dict)

    @property
    def validator(self) -> NeuronIdentity:
        """The first validator."""
        return self.validators[0]

    @property
    def total_stake(self) -> float:
        """The stake of every validator, colluders included."""
        return sum(v.stake for v in (*self.validators, *self.colluders.values()))


def make_wallet(root: Path, name: str, seed: bytes) -> tuple[str, str]:
    """Create wallet ``name`` (hotkey ``default``) under ``root`` from ``seed``, unencrypted;
    return its hotkey and coldkey ss58. The coldkey is derived from the same seed."""
    wallet = bt.Wallet(name, "default", path=str(root))
    coldkey_seed = hashlib.sha256(b"byteleap/devnet/coldkey" + seed).digest()
    wallet.regenerate_coldkey(seed=coldkey_seed, use_password=False, overwrite=True, suppress=True)
    wallet.regenerate_hotkey(seed=seed, use_password=False, overwrite=True, suppress=True)
    return str(wallet.hotkey.ss58_address), str(wallet.coldkeypub.ss58_address)


def write_worker_key(path: Path, seed: bytes) -> None:
    """The worker key file ``byteleap-worker keygen`` writes (hex seed, mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (seed.hex() + "\n").encode())
    finally:
        os.close(fd)


def write_configs(plan: Plan) -> None:
    for process in plan.processes():
        process.config_path.parent.mkdir(parents=True, exist_ok=True)
        process.log_path.parent.mkdir(parents=True, exist_ok=True)
        process.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        process.config_path.write_text(yaml.safe_dump(dict(process.config), sort_keys=False))


def prepare(plan: Plan) -> Network:
    """Write every file of ``plan``, create the devchain and register every hotkey."""
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    write_configs(plan)
    for worker in plan.workers:
        write_worker_key(worker.key_file, worker.key_seed)
    chain = DevChain.create(plan.chain_path, plan.chain_params)

    def register(neuron: NeuronSpec) -> NeuronIdentity:
        hotkey, coldkey = make_wallet(plan.wallets_dir, neuron.wallet_name, neuron.wallet_seed)
        validator = isinstance(neuron, ValidatorSpec)
        stake = neuron.stake if isinstance(neuron, ValidatorSpec) else 0.0
        uid = chain.register(hotkey, coldkey, stake=stake, validator_permit=validator)
        return NeuronIdentity(uid=uid, hotkey=hotkey, coldkey=coldkey, stake=stake)

    validators = tuple(register(v) for v in plan.validators)
    colluders = {c.name: register(c) for c in plan.colluders}
    miners = {miner.name: register(miner) for miner in plan.miners}
    return Network(chain=chain, validators=validators, miners=miners, colluders=colluders)
