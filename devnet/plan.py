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
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from byteleap.config import MinerConfig, ValidatorConfig, WorkerConfig
from byteleap.crypto import WorkerKey
from devnet.cheat_modes import (
    HONEST_WORKER_MODES,
    PHANTOM_BUSY_CLAIMS,
    SYBIL_CLAIMS,
    Cheat,
    CheatMode,
    mode_for,
)
from devnet.specs import (
    BLOCK_SECONDS,
    COLLUDER_EPOCH_S,
    COLLUDER_STAKE,
    DATABASE_URL_ENV,
    LEASES_TUNING,
    MIN_VALIDATOR_STAKE,
    NETUID,
    PACE_FLOPS,
    RECEIPT_POLL_S,
    RENTER_API_LIMITS,
    RENTER_SPEND_LIMIT,
    TEMPO_BLOCKS,
    WEIGHTS_RATE_LIMIT_BLOCKS,
    WORKER_ENV,
    ColluderSpec,
    DevnetOptions,
    MinerSpec,
    Plan,
    PortSource,
    ProcessSpec,
    RenterSpec,
    Role,
    ValidatorSpec,
    WorkerSpec,
    checked,
    console_command,
    free_port,
    validator_stake,
    validator_tuning,
)
from neurons.chain import DEVCHAIN_PREFIX, DevChainParams


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
