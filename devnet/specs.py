"""The devnet's numbers and the shape of a plan: the chain's timing, the validators' and the
leases' tuning that make an epoch take seconds, the options, and the spec of every process the
plan starts (see :mod:`devnet.plan`, which builds one)."""

from __future__ import annotations

import copy
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from byteleap.challenge.params import ChallengeParams
from byteleap.config import validate_config
from devnet.cheat_modes import Cheat, CheatMode
from neurons.chain import DevChainParams

Role = Literal["validator", "miner", "worker"]


PortSource = Callable[[], int]


M = TypeVar("M", bound=BaseModel)


NETUID = 128


#: fast blocks, so weights come every couple of seconds
BLOCK_SECONDS = 0.25


WEIGHTS_INTERVAL_BLOCKS = 8


WEIGHTS_RATE_LIMIT_BLOCKS = 4


TEMPO_BLOCKS = 20


#: the first validator's stake; each further one has half the stake of the one before
VALIDATOR_STAKE = 10_000.0


#: the most validators ``--validators`` starts (the last has 1,250, above every bound below)
MAX_VALIDATORS = 4


#: the miner answers validators with at least this much stake (every validator has more)
MIN_VALIDATOR_STAKE = 500.0


#: a receipt_mint cheater's colluding validator: permitted, but below every honest validator
COLLUDER_STAKE = 1_000.0


#: seconds between a colluding validator's epochs: it does not bother to test the network (it
#: still runs every loop of the real validator), so it adds next to no load to the devices
COLLUDER_EPOCH_S = 3600.0


#: the environment variable that carries a --database-url to the validator (never written to disk)
DATABASE_URL_ENV = "BYTELEAP_DEVNET_DATABASE_URL"


#: every devnet worker's CPU challenge (the validator's ``challenge.cpu``)
CPU_CHALLENGE: Mapping[str, int] = {"m": 128, "n": 128, "k": 128, "v": 15, "stages": 4}


#: seconds every devnet device takes for that challenge, whatever the machine's load
DEVICE_SECONDS = 1.5


#: the speed every devnet worker's device is paced to (``compute.pace_flops``), in FLOP/s
PACE_FLOPS = ChallengeParams(**CPU_CHALLENGE).flops / DEVICE_SECONDS


#: the validator's settings that make an epoch take seconds instead of minutes. A CPU device is
#: expected at exactly the pace (the calibration floor of 1 keeps it there), so an honest
#: device's commit arrives after DEVICE_SECONDS, against a deadline of 1.5 x DEVICE_SECONDS
#: plus the round trip (at most 0.5 s) from the epoch's first dispatch; a claim that queued
#: behind another on one device arrives after 2 x DEVICE_SECONDS or more.
#: GPU claims (phantom_gpu, cpu_as_gpu, ambiguous_model) get challenges sized to 2 s.
VALIDATOR_TUNING: Mapping[str, Any] = {
    "challenge": {
        "interval_s": 4.0,
        "jitter": 0.25,
        "plan_interval_s": 0.5,
        "target_seconds": 2.0,
        "epoch_spread_s": 0.25,
        "cpu_workers": True,
        "cpu_expected_flops": PACE_FLOPS,
        "calibration_floor": 1.0,
        "deadline_factor": 1.5,
        "deadline_grace_s": 0.5,
        "reveal_timeout_s": 10.0,
        "cpu": dict(CPU_CHALLENGE),
    },
    "scoring": {
        "weights_interval_blocks": WEIGHTS_INTERVAL_BLOCKS,
        "weights_check_interval_s": 1.0,
        # availability counts completed buckets only: the shortest bucket gets the first
        # weights soonest (within a minute of the workers coming online)
        "bucket_minutes": 1,
    },
    "miners": {"poll_interval_s": 1.0, "request_timeout_s": 5.0},
}


def validator_stake(index: int) -> float:
    """The stake of validator ``index`` (from 0): 10,000, 5,000, 2,500, 1,250."""
    return VALIDATOR_STAKE / (1 << index)


def validator_tuning(validators: int) -> dict[str, Any]:
    """Every validator's settings (the same for all) when ``validators`` of them run.

    Each validator challenges every device, and a device serves one challenge at a time: a
    challenge that finds it busy with another validator's is a missed one (no lease explains
    it). So the epoch interval grows with the number of validators, and each device spends
    about the same share of its time on challenges as with one validator."""
    tuning = copy.deepcopy({key: dict(value) for key, value in VALIDATOR_TUNING.items()})
    tuning["challenge"]["interval_s"] = VALIDATOR_TUNING["challenge"]["interval_s"] * validators
    return tuning


#: price per GPU-hour of every devnet device (the workers' CPU devices are priced as 'cpu')
DEVNET_PRICE = 1.0


#: seconds between a running lease's usage receipts (production: hourly)
RECEIPT_INTERVAL_S = 5.0


#: seconds between two collections of the miners' receipts
RECEIPT_POLL_S = 2.0


#: the spending limit each renter's key gets (far above what a devnet lease books)
RENTER_SPEND_LIMIT = 10.0


#: the validator's lease settings: receipts and their collection at the devnet's pace
LEASES_TUNING: Mapping[str, Any] = {
    "receipt_interval_s": RECEIPT_INTERVAL_S,
    "receipt_poll_interval_s": RECEIPT_POLL_S,
    "prices": {"default": DEVNET_PRICE, "cpu": DEVNET_PRICE},
}


#: a renter polls its job a few times a second: more than the production rate limit allows
RENTER_API_LIMITS: Mapping[str, Any] = {"rate_limit_per_minute": 6000, "rate_limit_burst": 100}


#: one BLAS thread per worker: a dozen processes share two cores
WORKER_ENV: Mapping[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class DevnetOptions:
    """What ``byteleap devnet`` was asked for."""

    miners: int = 3
    workers: int = 2
    #: cheating miners in the fraud modes, taken in turn (:func:`devnet.cheats.mode_for`)
    cheaters: int = 2
    rounds: int = 3
    #: the validator's database; None means SQLite in the run directory
    database_url: str | None = None
    #: simulated renters, each leasing one GPU of an honest worker; 0: no leases
    renters: int = 1
    #: one more cheating miner per entry, after the ``cheaters`` (``sybil`` adds two)
    cheats: tuple[CheatMode, ...] = ()
    #: validators with different stakes, all judging the same miners
    validators: int = 1

    def __post_init__(self) -> None:
        if self.miners < 1 or self.workers < 1 or self.cheaters < 0 or self.rounds < 1:
            raise ValueError("need at least one honest miner, one worker each and one round")
        if not 1 <= self.validators <= MAX_VALIDATORS:
            raise ValueError(f"validators must be between 1 and {MAX_VALIDATORS}")
        unknown = [c for c in self.cheats if not isinstance(c, CheatMode)]
        if unknown:
            raise ValueError(f"unknown cheat mode(s): {', '.join(map(str, unknown))}")
        if self.renters < 0:
            raise ValueError("renters cannot be negative")
        honest = self.miners * self.workers
        if self.renters > honest:
            raise ValueError(
                f"{self.renters} renters need as many honest workers (each lease takes one), "
                f"but {self.miners} miners x {self.workers} workers are {honest}"
            )


@dataclass(frozen=True)
class ProcessSpec:
    """One child process: how to start it and where its files are."""

    name: str
    role: Role
    argv: tuple[str, ...]
    config: Mapping[str, Any]
    config_path: Path
    log_path: Path
    data_dir: Path
    #: added to the (cleaned) environment of the devnet itself
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerSpec:
    process: ProcessSpec
    key_seed: bytes
    pubkey: str
    key_file: Path
    cheat: Cheat | None
    #: the devices the worker claims (an honest worker: its one CPU device)
    devices: int = 1

    @property
    def name(self) -> str:
        return self.process.name


@dataclass(frozen=True)
class NeuronSpec:
    """A hotkey registered on the devchain: the validator or a miner."""

    process: ProcessSpec
    wallet_name: str
    #: regenerates the wallet's hotkey (and, derived from it, its coldkey)
    wallet_seed: bytes

    @property
    def name(self) -> str:
        return self.process.name


@dataclass(frozen=True)
class ValidatorSpec(NeuronSpec):
    """A validator: its stake on the devchain (with a permit) and its database."""

    stake: float = VALIDATOR_STAKE
    #: its database URL as the devnet reads it
    database_url: str = ""


@dataclass(frozen=True)
class ColluderSpec(ValidatorSpec):
    """A receipt_mint cheater's colluding validator: the real validator runtime plus a loop
    that leases the cheater's workers without any renter and mints receipts for them
    (:mod:`devnet.colluder`)."""

    #: the name of the cheating miner it colludes with
    miner: str = ""
    #: one JSON line per lease and receipt it made
    ledger: Path = Path()
    #: the devnet creates this file when the colluder may start (after the rounds)
    start_file: Path = Path()


@dataclass(frozen=True)
class MinerSpec(NeuronSpec):
    api_port: int = 0
    workers_port: int = 0
    workers: tuple[WorkerSpec, ...] = ()
    cheat: CheatMode | None = None

    @property
    def devices(self) -> int:
        """The devices this miner's workers claim."""
        return sum(w.devices for w in self.workers)


@dataclass(frozen=True)
class RenterSpec:
    """A simulated renter: its name and the validator command that makes its API key."""

    name: str
    #: ``byteleap-validator renters add NAME -c validator.yaml --limit ...``; prints the key
    add_argv: tuple[str, ...]
    #: the environment the command needs beyond the devnet's (the validator's)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    run_dir: Path
    chain_path: Path
    chain_params: DevChainParams
    wallets_dir: Path
    #: the validators, the first (the renters') first
    validators: tuple[ValidatorSpec, ...]
    #: the validators' availability bucket: a worker counts once a bucket it was online in ends
    bucket_seconds: int
    miners: tuple[MinerSpec, ...]
    rounds: int
    renters: tuple[RenterSpec, ...] = ()
    #: the first validator's renter API (``http://127.0.0.1:PORT``); None without renters
    renter_api_url: str | None = None
    #: the validators' ``leases.receipt_poll_interval_s``
    receipt_poll_s: float = RECEIPT_POLL_S
    #: the lock file of each sybil's one shared device
    shared_devices: tuple[Path, ...] = ()
    #: one colluding validator per receipt_mint cheater
    colluders: tuple[ColluderSpec, ...] = ()

    @property
    def validator(self) -> ValidatorSpec:
        """The first validator: the renters rent through it."""
        return self.validators[0]

    @property
    def database_url(self) -> str:
        """The first validator's database URL."""
        return self.validator.database_url

    @property
    def workers(self) -> tuple[WorkerSpec, ...]:
        return tuple(w for m in self.miners for w in m.workers)

    @property
    def honest_workers(self) -> tuple[WorkerSpec, ...]:
        """The workers of the honest miners (a cheating miner's production workers, such as a
        receipt_mint miner's, are not among them)."""
        return tuple(w for m in self.miners if m.cheat is None for w in m.workers)

    def processes(self) -> list[ProcessSpec]:
        """Every process in start order: validators, colluders, miners, workers."""
        return [
            *(v.process for v in self.validators),
            *(c.process for c in self.colluders),
            *(m.process for m in self.miners),
            *(w.process for w in self.workers),
        ]


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def console_command(script: str, module: str) -> tuple[str, ...]:
    """The installed console script next to this Python, or the same CLI through ``-c``."""
    installed = Path(sys.executable).with_name(script)
    if installed.is_file() and shutil.which(str(installed)):
        return (str(installed),)
    return (sys.executable, "-c", f"from {module} import main; main()")


def checked(model: type[M], data: Mapping[str, Any], name: str, **env: str) -> M:
    """Validate a generated config with the process's model (ConfigError names the key)."""
    return validate_config(model, data, source=f"devnet config of {name}", env=env)
