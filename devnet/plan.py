"""What a devnet starts: every process, its command line, its config, its keys and its files.

:func:`build_plan` is pure apart from the port source and the randomness it is given: it writes
nothing and starts nothing, so tests can check a plan (configs validate, ports are distinct,
cheat modes are assigned) without a network. :mod:`devnet.prepare` puts a plan on disk.

Every config is built as a dict and validated with the process's own config model before it is
used, so a renamed or removed key fails here, naming the key, instead of in a child process.

Layout of the run directory::

    chain.db                  the devchain
    wallets/                  bittensor wallets of the validator and every miner (unencrypted)
    configs/NAME.yaml         one config per process
    logs/NAME.log             each process's stdout and stderr
    data/NAME/                each process's paths.data_dir (worker keys live here)

    devices/sybil-N.lock      the one device a sybil's claims share (with ``--cheat sybil``)
    data/colluder-N/minted.jsonl  what a receipt_mint cheater's colluding validator did

**Validators.** ``--validators V`` starts V validators (``validator``, ``validator-2``, ...),
each with its own wallet, database (SQLite in its data directory; a ``--database-url`` is the
first one's) and config, all with the same tuning, and with stakes :func:`validator_stake`
(10,000, 5,000, 2,500, 1,250): different, all with a permit and above the miners'
:data:`MIN_VALIDATOR_STAKE`. Each receipt_mint cheater adds a colluding validator
(``colluder-N``, :class:`ColluderSpec`) with :data:`COLLUDER_STAKE`, below every honest one.

With renters (``--renters``), the first validator serves its renter API on a free 127.0.0.1 port
(every renter rents through it), the honest workers run renters' jobs with the development
subprocess runner, and each renter's API key is made by that validator's own ``renters add``
command (:class:`RenterSpec`).

**Pacing.** A 2-core machine running a dozen workers gives no stable timings, and the validator's
deadlines (at most 1.5 x the expected time) need them. So every devnet worker, honest or not,
gets ``compute.pace_flops`` = :data:`PACE_FLOPS`: its CPU challenge (``challenge.cpu``) takes
:data:`DEVICE_SECONDS` whatever the load, and the validator expects exactly that speed of a CPU
device (``challenge.cpu_expected_flops``, with ``calibration_floor`` 1 so its calibration cannot
lower it). Every worker thus behaves like one simulated GPU of that speed.
"""

from __future__ import annotations

import copy
import random
import shutil
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from byteleap.challenge.params import ChallengeParams
from byteleap.config import MinerConfig, ValidatorConfig, WorkerConfig, validate_config
from byteleap.crypto import WorkerKey
from devnet.cheats import (
    HONEST_WORKER_MODES,
    PHANTOM_BUSY_CLAIMS,
    SYBIL_CLAIMS,
    Cheat,
    CheatMode,
    mode_for,
)
from neurons.chain import DEVCHAIN_PREFIX, DevChainParams

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


def build_plan(
    options: DevnetOptions,
    run_dir: Path,
    *,
    ports: PortSource = free_port,
    rng: random.Random | None = None,
) -> Plan:
    rng = rng or random.SystemRandom()
    run_dir = run_dir.resolve()
    chain_path = run_dir / "chain.db"
    wallets = run_dir / "wallets"
    network = f"{DEVCHAIN_PREFIX}{chain_path}"
    taken: set[int] = set()

    def port() -> int:
        for _ in range(1000):
            candidate = ports()
            if candidate not in taken:
                taken.add(candidate)
                return candidate
        raise RuntimeError("could not find enough free TCP ports")

    def spec(name: str, role: Role, argv: tuple[str, ...], config: Mapping[str, Any],
             env: Mapping[str, str] | None = None) -> ProcessSpec:  # fmt: skip
        config_path = run_dir / "configs" / f"{name}.yaml"
        return ProcessSpec(
            name=name,
            role=role,
            argv=(*argv, "run", "-c", str(config_path)),
            config=config,
            config_path=config_path,
            log_path=run_dir / "logs" / f"{name}.log",
            data_dir=run_dir / "data" / name,
            env=dict(env or {}),
        )

    def chain_section() -> dict[str, Any]:
        return {"network": network, "netuid": NETUID, "sync_interval_s": 1.0}

    # ---------------------------------------------------------------- validators
    validator_argv = console_command("byteleap-validator", "neurons.validator.cli")
    tuning = validator_tuning(options.validators)

    def validator_config(
        name: str, *, api: Mapping[str, Any], database: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "wallet": {"name": name, "hotkey": "default", "path": str(wallets)},
            "chain": chain_section(),
            "database": dict(database),
            **copy.deepcopy(tuning),
            "leases": copy.deepcopy(dict(LEASES_TUNING)),
            "api": dict(api),
            "paths": {"data_dir": str(run_dir / "data" / name)},
            "metrics": {"enabled": False},
        }

    renter_api_url: str | None = None
    validators: list[ValidatorSpec] = []
    bucket_seconds = 0
    receipt_poll_s = RECEIPT_POLL_S
    for index in range(options.validators):
        name = "validator" if index == 0 else f"validator-{index + 1}"
        env: dict[str, str] = {}
        database: dict[str, Any] = {}
        api: dict[str, Any] = {"enabled": False}
        if index == 0:
            # the first validator takes the --database-url and serves the renters
            if options.database_url is not None:
                env[DATABASE_URL_ENV] = options.database_url
                database["url"] = {"env": DATABASE_URL_ENV}
            if options.renters:
                api_port = port()
                api = {"enabled": True, "host": "127.0.0.1", "port": api_port}
                api.update(RENTER_API_LIMITS)
                renter_api_url = f"http://127.0.0.1:{api_port}"
        config = validator_config(name, api=api, database=database)
        parsed = checked(ValidatorConfig, config, f"validator {name}", **env)
        bucket_seconds = parsed.scoring.bucket_minutes * 60
        receipt_poll_s = parsed.leases.receipt_poll_interval_s
        validators.append(
            ValidatorSpec(
                process=spec(name, "validator", validator_argv, config, env),
                wallet_name=name,
                wallet_seed=rng.randbytes(32),
                stake=validator_stake(index),
                database_url=parsed.database.resolve_url(env),
            )
        )
    validator = validators[0]
    renters = tuple(
        RenterSpec(
            name=f"renter-{i + 1}",
            add_argv=(
                *validator_argv,
                *("renters", "add", f"renter-{i + 1}"),
                *("-c", str(validator.process.config_path)),
                *("--limit", f"{RENTER_SPEND_LIMIT:g}"),
            ),
            env=dict(validator.process.env),
        )
        for i in range(options.renters)
    )

    # ---------------------------------------------------------------- miners and workers
    miners = []
    colluders: list[ColluderSpec] = []
    roster = _roster(options, run_dir)
    for entry in roster:
        miner_name, mode = entry.name, entry.mode
        api_port, workers_port = port(), port()
        workers = []
        for j, claims in enumerate(entry.claims):
            name = f"{miner_name}.worker-{j + 1}"
            key_seed = rng.randbytes(32)
            data_dir = run_dir / "data" / name
            key_file = data_dir / "worker.key"
            config = {
                "link": {
                    "miner_url": f"ws://127.0.0.1:{workers_port}/worker",
                    "key_file": str(key_file),
                    "connect_timeout_s": 5.0,
                    "reconnect_min_s": 0.2,
                    "reconnect_max_s": 1.0,
                },
                # every device, honest or not, behaves like one simulated GPU of PACE_FLOPS
                "compute": {"backend": "numpy", "pace_flops": PACE_FLOPS},
                # renters' jobs run as plain processes on honest workers (no Docker needed)
                "jobs": (
                    {"runner": "subprocess", "allow_subprocess_runner": True}
                    if options.renters and mode is None
                    else {"runner": "none"}
                ),
                "paths": {"data_dir": str(data_dir)},
                "metrics": {"enabled": False},
            }
            checked(WorkerConfig, config, name)
            cheat = None
            if mode is None or j < entry.production_workers:
                argv = console_command("byteleap-worker", "workers.cli")
            else:
                cheat = Cheat(
                    mode,
                    # a phantom miner's odd workers never commit, so timeouts show up too
                    never_commit=mode is CheatMode.PHANTOM_GPU and j % 2 == 1,
                    claims=claims,
                    device_lock=entry.device_lock,
                    # a phantom_busy miner's first worker is the honest one beside the busy one
                    companion=mode is CheatMode.PHANTOM_BUSY and j == 0,
                )
                argv = (sys.executable, "-m", "devnet.cheat_worker")
            process = spec(name, "worker", argv, config, WORKER_ENV)
            if cheat is not None:
                process = replace(process, argv=(*process.argv, *cheat_argv(cheat)))
            workers.append(
                WorkerSpec(
                    process=process,
                    key_seed=key_seed,
                    pubkey=WorkerKey.from_seed(key_seed).public_key.hex(),
                    key_file=key_file,
                    cheat=cheat,
                    devices=claims if cheat is None else _claimed(cheat),
                )
            )
        miner_config = {
            "wallet": {"name": miner_name, "hotkey": "default", "path": str(wallets)},
            "chain": chain_section(),
            "workers": {
                "host": "127.0.0.1",
                "port": workers_port,
                "authorized_keys": [w.pubkey for w in workers],
            },
            "api": {
                "host": "127.0.0.1",
                "port": api_port,
                "external_ip": "127.0.0.1",
                "min_validator_stake": MIN_VALIDATOR_STAKE,
            },
            "paths": {"data_dir": str(run_dir / "data" / miner_name)},
            "metrics": {"enabled": False},
        }
        checked(MinerConfig, miner_config, miner_name)
        if mode is CheatMode.RECEIPT_MINT:
            colluders.append(
                _colluder(
                    f"colluder-{len(colluders) + 1}",
                    miner_name,
                    api_port,
                    run_dir=run_dir,
                    config=validator_config,
                    spec=spec,
                    seed=rng.randbytes(32),
                )
            )
        miners.append(
            MinerSpec(
                process=spec(
                    miner_name,
                    "miner",
                    console_command("byteleap-miner", "neurons.miner.cli"),
                    miner_config,
                ),
                wallet_name=miner_name,
                wallet_seed=rng.randbytes(32),
                api_port=api_port,
                workers_port=workers_port,
                workers=tuple(workers),
                cheat=mode,
            )
        )

    return Plan(
        run_dir=run_dir,
        chain_path=chain_path,
        chain_params=DevChainParams(
            netuid=NETUID,
            tempo=TEMPO_BLOCKS,
            block_seconds=BLOCK_SECONDS,
            weights_rate_limit=WEIGHTS_RATE_LIMIT_BLOCKS,
        ),
        wallets_dir=wallets,
        validators=tuple(validators),
        bucket_seconds=bucket_seconds,
        miners=tuple(miners),
        rounds=options.rounds,
        renters=renters,
        renter_api_url=renter_api_url,
        receipt_poll_s=receipt_poll_s,
        shared_devices=tuple(dict.fromkeys(e.device_lock for e in roster if e.device_lock)),
        colluders=tuple(colluders),
    )


def _colluder(
    name: str,
    miner: str,
    miner_api_port: int,
    *,
    run_dir: Path,
    config: Callable[..., dict[str, Any]],
    spec: Callable[..., ProcessSpec],
    seed: bytes,
) -> ColluderSpec:
    """The colluding validator of receipt_mint cheater ``miner``: a validator config with the
    same tuning but rare epochs (it does not bother to test), started through the devnet-only
    :mod:`devnet.colluder`, which finds the miner on the devchain by its endpoint."""
    data = run_dir / "data" / name
    ledger, start_file = data / "minted.jsonl", data / "start"
    colluder_config = config(name, api={"enabled": False}, database={})
    colluder_config["challenge"]["interval_s"] = COLLUDER_EPOCH_S
    parsed = checked(ValidatorConfig, colluder_config, f"colluder {name}")
    argv = (sys.executable, "-m", "devnet.colluder")
    process = spec(name, "validator", argv, colluder_config)
    extra = (
        *("--miner-endpoint", f"127.0.0.1:{miner_api_port}"),
        *("--ledger", str(ledger), "--start-file", str(start_file)),
    )
    return ColluderSpec(
        process=replace(process, argv=(*process.argv, *extra)),
        wallet_name=name,
        wallet_seed=seed,
        stake=COLLUDER_STAKE,
        database_url=parsed.database.resolve_url({}),
        miner=miner,
        ledger=ledger,
        start_file=start_file,
    )


@dataclass(frozen=True)
class _RosterEntry:
    name: str
    mode: CheatMode | None
    #: devices each of the miner's workers claims
    claims: tuple[int, ...]
    device_lock: Path | None = None
    #: how many of its first workers run the production worker (a cheating miner's honest ones)
    production_workers: int = 0


def _roster(options: DevnetOptions, run_dir: Path) -> list[_RosterEntry]:
    """Every miner: the honest ones, the ``--cheaters`` (fraud modes in turn), then one per
    ``--cheat`` (two for ``sybil``, sharing one device; a phantom_busy miner has its honest
    companion and the busy worker, whatever ``--workers`` says; every worker of a receipt_mint
    miner is a production worker)."""
    one_each = (1,) * options.workers
    roster = [_RosterEntry(f"miner-{i + 1}", None, one_each) for i in range(options.miners)]
    modes = [mode_for(i) for i in range(options.cheaters)]
    sybils = 0
    for mode in [*modes, *options.cheats]:
        if mode is CheatMode.SYBIL:
            sybils += 1
            lock = run_dir / "devices" / f"sybil-{sybils}.lock"
            for claims in SYBIL_CLAIMS:
                name = f"cheater-{len(roster) - options.miners + 1}"
                roster.append(_RosterEntry(name, mode, claims, lock))
        elif mode is CheatMode.PHANTOM_BUSY:
            name = f"cheater-{len(roster) - options.miners + 1}"
            roster.append(_RosterEntry(name, mode, (1, PHANTOM_BUSY_CLAIMS)))
        else:
            name = f"cheater-{len(roster) - options.miners + 1}"
            honest = len(one_each) if mode in HONEST_WORKER_MODES else 0
            roster.append(_RosterEntry(name, mode, one_each, production_workers=honest))
    return roster


def _claimed(cheat: Cheat | None) -> int:
    if cheat is None:
        return 1
    if cheat.mode is CheatMode.COPIED_ROOTS:
        return 2
    return cheat.claims


def cheat_argv(cheat: Cheat) -> tuple[str, ...]:
    """The cheating worker's options for ``cheat``."""
    argv: tuple[str, ...] = ("--mode", cheat.mode.value)
    if cheat.never_commit:
        argv += ("--never-commit",)
    if cheat.mode is CheatMode.SYBIL:
        argv += ("--claims", str(cheat.claims), "--device-lock", str(cheat.device_lock))
    elif cheat.claims != 1:
        argv += ("--claims", str(cheat.claims))
    if cheat.companion:
        argv += ("--companion",)
    return argv
