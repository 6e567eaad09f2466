"""The devnet's plan: valid configs, distinct ports, the right cheats, and its files on disk."""

from __future__ import annotations

import itertools
import random
import stat
from pathlib import Path

import pytest
import yaml

from byteleap.challenge.params import ChallengeParams
from byteleap.config import MinerConfig, ValidatorConfig, WorkerConfig, load_config, validate_config
from byteleap.crypto import WorkerKey
from byteleap.protocol.common import MAX_GPUS
from devnet.cheat_modes import PHANTOM_BUSY_CLAIMS, SYBIL_CLAIMS, CheatMode, mode_for
from devnet.colluder import Ledger
from devnet.observe import colluder_report
from devnet.plan import build_plan
from devnet.prepare import prepare
from devnet.specs import (
    COLLUDER_EPOCH_S,
    COLLUDER_STAKE,
    DATABASE_URL_ENV,
    DEVICE_SECONDS,
    DEVNET_PRICE,
    MAX_VALIDATORS,
    MIN_VALIDATOR_STAKE,
    PACE_FLOPS,
    RENTER_SPEND_LIMIT,
    VALIDATOR_STAKE,
    VALIDATOR_TUNING,
    DevnetOptions,
    Plan,
    validator_stake,
)
from neurons.chain import DevChain
from workers.keys import read_key

MODELS: dict[str, type[ValidatorConfig | MinerConfig | WorkerConfig]] = {
    "validator": ValidatorConfig,
    "miner": MinerConfig,
    "worker": WorkerConfig,
}


def plan_for(tmp_path: Path, **options: object) -> Plan:
    # a port source that repeats itself: the plan must still hand out distinct ports
    ports = itertools.cycle(range(20_000, 20_040))
    return build_plan(
        DevnetOptions(**options),  # type: ignore[arg-type]
        tmp_path / "run",
        ports=lambda: next(ports),
        rng=random.Random(1),
    )


def test_every_generated_config_validates_with_its_process_model(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    processes = plan.processes()
    assert len(processes) == 1 + 5 + 5 * 2
    for process in processes:
        config = validate_config(MODELS[process.role], process.config, env=dict(process.env))
        assert process.config_path.parent == plan.run_dir / "configs"
        assert process.log_path.parent == plan.run_dir / "logs"
        at = process.argv.index("run")
        assert process.argv[at : at + 3] == ("run", "-c", str(process.config_path))
        assert not config.metrics.enabled  # no fixed ports to collide on
    assert [p.role for p in processes[:6]] == ["validator"] + ["miner"] * 5


def test_ports_are_distinct_and_workers_dial_their_own_miner(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, miners=3, workers=3, cheaters=4)
    ports = [p for m in plan.miners for p in (m.api_port, m.workers_port)]
    assert len(ports) == len(set(ports)) == 2 * 7
    for miner in plan.miners:
        cfg = validate_config(MinerConfig, miner.process.config)
        assert (cfg.api.port, cfg.workers.port) == (miner.api_port, miner.workers_port)
        assert str(cfg.api.external_ip) == "127.0.0.1"
        assert cfg.workers.authorized_keys == [w.pubkey for w in miner.workers]
        for worker in miner.workers:
            wcfg = validate_config(WorkerConfig, worker.process.config)
            assert wcfg.link.miner_url == f"ws://127.0.0.1:{miner.workers_port}/worker"
            assert worker.pubkey == WorkerKey.from_seed(worker.key_seed).public_key.hex()
    pubkeys = [w.pubkey for w in plan.workers]
    assert len(set(pubkeys)) == len(pubkeys) == 7 * 3


def test_cheaters_take_the_modes_in_turn_and_only_they_cheat(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, miners=2, workers=2, cheaters=5)
    honest = [m for m in plan.miners if m.cheat is None]
    cheaters = [m for m in plan.miners if m.cheat is not None]
    assert [m.name for m in honest] == ["miner-1", "miner-2"]
    assert [m.cheat for m in cheaters] == [mode_for(i) for i in range(5)]
    assert cheaters[4].cheat is CheatMode.FAKE_ROWS
    for miner in honest:
        for worker in miner.workers:
            assert worker.cheat is None
            assert "devnet.cheat_worker" not in worker.process.argv
    for miner in cheaters:
        for worker in miner.workers:
            assert worker.cheat is not None and worker.cheat.mode is miner.cheat
            argv = worker.process.argv
            assert argv[argv.index("-m") + 1] == "devnet.cheat_worker"
            assert argv[argv.index("--mode") + 1] == miner.cheat.value
    phantom = next(m for m in cheaters if m.cheat is CheatMode.PHANTOM_GPU)
    assert [w.cheat.never_commit for w in phantom.workers if w.cheat] == [False, True]
    assert {w.pubkey for w in plan.honest_workers} == {w.pubkey for m in honest for w in m.workers}


def test_the_validator_is_tuned_for_a_fast_devnet(tmp_path: Path) -> None:
    plan = plan_for(tmp_path)
    cfg = validate_config(ValidatorConfig, plan.validator.process.config)
    assert plan.database_url == f"sqlite+aiosqlite:///{plan.run_dir}/data/validator/validator.db"
    assert cfg.challenge.interval_s <= 5
    assert cfg.miners.poll_interval_s <= 2
    assert cfg.challenge.cpu.m <= 256 and cfg.challenge.cpu.stages >= 2  # stage 1+ can be faked
    assert cfg.challenge.sampling.stages >= cfg.challenge.cpu.stages  # every stage is opened
    interval = cfg.scoring.weights_interval_blocks
    assert interval is not None and interval * plan.chain_params.block_seconds <= 5
    assert plan.chain_params.weights_rate_limit <= interval
    assert cfg.chain.network == f"devchain:{plan.chain_path}"


#: the validator's challenge keys after the epochs change (what the devnet may tune)
CHALLENGE_KEYS = {
    "interval_s", "jitter", "plan_interval_s", "target_seconds", "cpu_expected_flops",
    "deadline_factor", "deadline_grace_s", "epoch_spread_s", "calibration_percentile",
    "calibration_min_miners", "calibration_floor", "cpu_workers", "reveal_timeout_s",
    "max_concurrency", "verifier_processes", "excused_warning_rate",
    "impossible_throughput_factor", "gpu", "cpu", "sampling",
}  # fmt: skip


def test_every_device_is_paced_like_one_simulated_gpu_the_validator_expects(
    tmp_path: Path,
) -> None:
    plan = plan_for(tmp_path, cheats=(CheatMode.SYBIL, CheatMode.CPU_AS_GPU))
    cfg = validate_config(ValidatorConfig, plan.validator.process.config)
    challenge = cfg.challenge
    assert set(VALIDATOR_TUNING["challenge"]) <= CHALLENGE_KEYS
    # the devnet's CPU challenge takes about a second on every paced device...
    assert challenge.cpu.flops / PACE_FLOPS == pytest.approx(DEVICE_SECONDS)
    assert 0.5 <= DEVICE_SECONDS <= 2.0
    # ... and the validator expects exactly that speed of a CPU device, and leases CPU devices
    assert challenge.cpu_workers is True
    assert challenge.cpu_expected_flops == PACE_FLOPS
    assert challenge.calibration_floor == 1.0  # its calibration cannot lower the expectation
    assert challenge.deadline_factor == 1.5 and challenge.deadline_grace_s == 0.5
    assert 3.0 <= challenge.interval_s <= 5.0 and challenge.jitter == 0.25
    # a claim queued behind another on one device commits 2 x DEVICE_SECONDS + its round trip
    # after the first claim's dispatch (it was dispatched at most epoch_spread_s later); its
    # deadline is 1.5 x DEVICE_SECONDS + the (same) round trip: it is late by a clear margin
    margin = (2 - challenge.deadline_factor) * DEVICE_SECONDS - challenge.epoch_spread_s
    assert margin >= 0.25
    for worker in plan.workers:
        compute = validate_config(WorkerConfig, worker.process.config).compute
        assert (compute.backend, compute.pace_flops) == ("numpy", PACE_FLOPS), worker.name


def test_each_cheat_option_adds_its_miners_after_the_cheaters(tmp_path: Path) -> None:
    cheats = (CheatMode.SYBIL, CheatMode.CPU_AS_GPU, CheatMode.AMBIGUOUS_MODEL, CheatMode.SYBIL)
    plan = plan_for(tmp_path, miners=2, workers=2, cheaters=1, cheats=cheats)
    cheaters = [m for m in plan.miners if m.cheat is not None]
    assert [(m.name, m.cheat) for m in cheaters] == [
        ("cheater-1", CheatMode.FAKE_ROWS),
        ("cheater-2", CheatMode.SYBIL),
        ("cheater-3", CheatMode.SYBIL),
        ("cheater-4", CheatMode.CPU_AS_GPU),
        ("cheater-5", CheatMode.AMBIGUOUS_MODEL),
        ("cheater-6", CheatMode.SYBIL),
        ("cheater-7", CheatMode.SYBIL),
    ]
    # a sybil: two workers on one miner and one on another, four claims, one shared device
    first, second = cheaters[1], cheaters[2]
    assert [len(first.workers), len(second.workers)] == [2, 1]
    assert [w.devices for w in (*first.workers, *second.workers)] == [2, 1, 1]
    assert (first.devices, second.devices) == (3, 1)
    assert tuple(tuple(w.devices for w in m.workers) for m in (first, second)) == SYBIL_CLAIMS
    locks = {w.cheat.device_lock for m in (first, second) for w in m.workers if w.cheat}
    assert locks == {plan.run_dir / "devices" / "sybil-1.lock"}
    for worker in (*first.workers, *second.workers):
        argv = worker.process.argv
        assert worker.cheat is not None
        assert argv[argv.index("--mode") + 1] == "sybil"
        assert argv[argv.index("--claims") + 1] == str(worker.devices)
        assert argv[argv.index("--device-lock") + 1] == str(plan.run_dir / "devices/sybil-1.lock")
        jobs = validate_config(WorkerConfig, worker.process.config).jobs
        assert jobs.runner == "none"
    # the second sybil has a device of its own
    later = {w.cheat.device_lock for m in cheaters[5:] for w in m.workers if w.cheat}
    assert later == {plan.run_dir / "devices" / "sybil-2.lock"}
    assert plan.shared_devices == (
        plan.run_dir / "devices" / "sybil-1.lock",
        plan.run_dir / "devices" / "sybil-2.lock",
    )
    # the model cheats have --workers workers of one device each, and no sybil options
    for miner in cheaters[3:5]:
        assert len(miner.workers) == 2 and miner.devices == 2
        for worker in miner.workers:
            assert "--claims" not in worker.process.argv
            assert "--device-lock" not in worker.process.argv
    # renters still need honest workers only; cheaters are never counted
    assert {w.pubkey for w in plan.honest_workers} == {
        w.pubkey for m in plan.miners[:2] for w in m.workers
    }


def test_only_known_cheat_modes_are_accepted() -> None:
    with pytest.raises(ValueError, match="unknown cheat mode"):
        DevnetOptions(cheats=("cheat_harder",))  # type: ignore[arg-type]
    assert DevnetOptions(cheats=(CheatMode.SYBIL,)).cheats == (CheatMode.SYBIL,)


def test_the_cpu_challenge_flops_are_what_the_pace_is_computed_from() -> None:
    cpu = ChallengeParams(**VALIDATOR_TUNING["challenge"]["cpu"])
    assert cpu.flops == cpu.stages * 2 * cpu.m * cpu.n * cpu.k
    assert cpu.flops / DEVICE_SECONDS == PACE_FLOPS


def test_a_database_url_reaches_the_validator_only_through_its_environment(
    tmp_path: Path,
) -> None:
    url = "postgresql+asyncpg://devnet:s3cret@127.0.0.1:5432/devnet"
    plan = plan_for(tmp_path, database_url=url)
    process = plan.validator.process
    assert plan.database_url == url
    assert "s3cret" not in yaml.safe_dump(dict(process.config))
    assert process.env == {DATABASE_URL_ENV: url}
    cfg = validate_config(ValidatorConfig, process.config, env=dict(process.env))
    assert cfg.database.resolve_url(dict(process.env)) == url


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DevnetOptions(miners=0)
    with pytest.raises(ValueError, match="cannot be negative"):
        DevnetOptions(renters=-1)
    # each lease takes a whole honest worker; cheaters' workers are never leased
    with pytest.raises(ValueError, match="5 renters need as many honest workers"):
        DevnetOptions(miners=2, workers=2, cheaters=3, renters=5)
    assert DevnetOptions(miners=2, workers=2, renters=4).renters == 4


def test_renters_get_the_renter_api_job_runners_and_keys_from_the_validators_cli(
    tmp_path: Path,
) -> None:
    plan = plan_for(tmp_path, miners=2, workers=1, cheaters=2, renters=2)
    cfg = validate_config(ValidatorConfig, plan.validator.process.config)
    assert cfg.api.enabled and cfg.api.host == "127.0.0.1"
    assert plan.renter_api_url == f"http://127.0.0.1:{cfg.api.port}"
    miner_ports = {p for m in plan.miners for p in (m.api_port, m.workers_port)}
    assert cfg.api.port not in miner_ports
    assert cfg.api.rate_limit_per_minute >= 600  # a renter polls its job twice a second
    # receipts and their collection at the devnet's pace, one price for every devnet GPU
    assert cfg.leases.receipt_interval_s <= 10
    assert cfg.leases.receipt_poll_interval_s <= 5
    assert plan.receipt_poll_s == cfg.leases.receipt_poll_interval_s
    assert cfg.leases.prices == {"default": DEVNET_PRICE, "cpu": DEVNET_PRICE}
    assert cfg.leases.price_for("cpu") == DEVNET_PRICE
    for miner in plan.miners:
        for worker in miner.workers:
            jobs = validate_config(WorkerConfig, worker.process.config).jobs
            if miner.cheat is None:
                assert (jobs.runner, jobs.allow_subprocess_runner) == ("subprocess", True)
            else:
                assert jobs.runner == "none"
    assert [r.name for r in plan.renters] == ["renter-1", "renter-2"]
    for renter in plan.renters:
        argv = renter.add_argv
        at = argv.index("renters")
        assert argv[at:] == (
            *("renters", "add", renter.name, "-c", str(plan.validator.process.config_path)),
            *("--limit", f"{RENTER_SPEND_LIMIT:g}"),
        )
        assert argv[:at] == plan.validator.process.argv[: plan.validator.process.argv.index("run")]
        assert renter.env == plan.validator.process.env


def test_without_renters_nothing_is_leased_or_served(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, renters=0)
    cfg = validate_config(ValidatorConfig, plan.validator.process.config)
    assert not cfg.api.enabled and plan.renter_api_url is None and plan.renters == ()
    for worker in plan.workers:
        assert validate_config(WorkerConfig, worker.process.config).jobs.runner == "none"


def test_a_renters_command_carries_the_database_url_only_in_its_environment(
    tmp_path: Path,
) -> None:
    url = "postgresql+asyncpg://devnet:s3cret@127.0.0.1:5432/devnet"
    (renter,) = plan_for(tmp_path, database_url=url).renters
    assert renter.env == {DATABASE_URL_ENV: url}
    assert not any("s3cret" in arg for arg in renter.add_argv)


def test_prepare_writes_every_file_and_registers_every_hotkey(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, miners=2, workers=1, cheaters=1)
    network = prepare(plan)
    try:
        for process in plan.processes():
            text = process.config_path.read_text()
            assert yaml.safe_load(text) == dict(process.config)
            load_config(MODELS[process.role], process.config_path, env=dict(process.env))
        for worker in plan.workers:
            assert read_key(worker.key_file).public_key.hex() == worker.pubkey
            assert stat.S_IMODE(worker.key_file.stat().st_mode) == 0o600
        meta = DevChain(plan.chain_path).metagraph()
        by_hotkey = {n.hotkey: n for n in meta.neurons}
        validator = by_hotkey[network.validator.hotkey]
        assert validator.validator_permit and validator.stake == VALIDATOR_STAKE
        assert validator.uid == network.validator.uid
        miners = [by_hotkey[identity.hotkey] for identity in network.miners.values()]
        assert len(miners) == 3 and not any(n.validator_permit for n in miners)
        coldkeys = {n.coldkey for n in [validator, *miners]}
        assert len(coldkeys) == 4  # every neuron has its own coldkey
    finally:
        network.chain.close()


# --------------------------------------------------------------------------- several validators


def test_several_validators_each_have_their_own_wallet_database_and_stake(
    tmp_path: Path,
) -> None:
    plan = plan_for(tmp_path, miners=2, workers=1, cheaters=1, validators=3)
    names = [v.name for v in plan.validators]
    assert names == ["validator", "validator-2", "validator-3"]
    assert plan.validator is plan.validators[0]
    assert [p.role for p in plan.processes()[:3]] == ["validator"] * 3
    # stakes differ, all with a permit (prepare) and above what the miners ask of a validator
    stakes = [v.stake for v in plan.validators]
    assert stakes == [validator_stake(i) for i in range(3)] == [10_000.0, 5_000.0, 2_500.0]
    assert min(stakes) > MIN_VALIDATOR_STAKE
    for miner in plan.miners:
        assert validate_config(MinerConfig, miner.process.config).api.min_validator_stake == (
            MIN_VALIDATOR_STAKE
        )
    # each its own files: config, log, data directory and SQLite database
    configs = [validate_config(ValidatorConfig, v.process.config) for v in plan.validators]
    for key in ("config_path", "log_path", "data_dir"):
        assert len({getattr(v.process, key) for v in plan.validators}) == 3, key
    urls = [v.database_url for v in plan.validators]
    assert urls == [f"sqlite+aiosqlite:///{plan.run_dir}/data/{n}/validator.db" for n in names]
    assert plan.database_url == urls[0]
    assert [c.wallet.name for c in configs] == names
    assert len({v.wallet_seed for v in plan.validators}) == 3
    # the same tuning for all; only the first serves the renters
    for section in ("challenge", "scoring", "miners", "leases", "chain"):
        dumped = [getattr(c, section).model_dump() for c in configs]
        assert dumped[1:] == dumped[:-1], section
    assert [c.api.enabled for c in configs] == [True, False, False]
    ports = [configs[0].api.port, *(p for m in plan.miners for p in (m.api_port, m.workers_port))]
    assert len(ports) == len(set(ports))
    # each device spends about as much of its time on challenges as with one validator
    assert configs[0].challenge.interval_s == 3 * VALIDATOR_TUNING["challenge"]["interval_s"]


def test_one_validator_keeps_the_default_tuning_and_more_than_four_are_refused(
    tmp_path: Path,
) -> None:
    plan = plan_for(tmp_path)
    assert len(plan.validators) == 1 and plan.colluders == ()
    cfg = validate_config(ValidatorConfig, plan.validator.process.config)
    assert cfg.challenge.interval_s == VALIDATOR_TUNING["challenge"]["interval_s"]
    with pytest.raises(ValueError, match="between 1 and 4"):
        DevnetOptions(validators=0)
    with pytest.raises(ValueError, match="between 1 and 4"):
        DevnetOptions(validators=MAX_VALIDATORS + 1)
    assert validator_stake(MAX_VALIDATORS - 1) > COLLUDER_STAKE > MIN_VALIDATOR_STAKE


def test_a_database_url_is_the_first_validators_only(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://devnet:s3cret@127.0.0.1:5432/devnet"
    plan = plan_for(tmp_path, database_url=url, validators=2)
    first, second = plan.validators
    assert first.database_url == url and first.process.env == {DATABASE_URL_ENV: url}
    assert second.process.env == {}
    assert second.database_url.startswith("sqlite+aiosqlite:///")


def test_several_validators_are_registered_with_permits_and_their_stakes(tmp_path: Path) -> None:
    plan = plan_for(
        tmp_path, miners=1, workers=1, cheaters=0, validators=2, cheats=(CheatMode.RECEIPT_MINT,)
    )
    network = prepare(plan)
    try:
        by_hotkey = {n.hotkey: n for n in DevChain(plan.chain_path).metagraph().neurons}
        validators = [by_hotkey[v.hotkey] for v in network.validators]
        assert [v.stake for v in validators] == [10_000.0, 5_000.0]
        assert all(v.validator_permit for v in validators)
        (colluder,) = network.colluders.values()
        assert by_hotkey[colluder.hotkey].validator_permit
        assert by_hotkey[colluder.hotkey].stake == COLLUDER_STAKE == colluder.stake
        assert network.total_stake == 10_000.0 + 5_000.0 + COLLUDER_STAKE
        assert not any(by_hotkey[m.hotkey].validator_permit for m in network.miners.values())
        # what the report says of the colluder: its stake share, and its ledger summed up
        (spec,) = plan.colluders
        ledger = Ledger(spec.ledger)
        ledger.write("lease", lease_id="collusion-1", worker_pubkey="ab" * 32, gpus=1)
        ledger.write("receipt", lease_id="collusion-1", seq=0, kind="start", seconds=0, gpus=1)
        ledger.write("receipt", lease_id="collusion-1", seq=1, kind="hourly", seconds=5, gpus=1)
        assert colluder_report(spec, network) == {
            "name": "colluder-1",
            "hotkey": colluder.hotkey,
            "uid": colluder.uid,
            "stake": COLLUDER_STAKE,
            "stake_share": round(COLLUDER_STAKE / 16_000.0, 6),
            "miner_uid": network.miners["cheater-1"].uid,
            "leases": 1,
            "receipts": 2,
            "billed_gpu_s": 5,
            "errors": {},
        }
    finally:
        network.chain.close()


# --------------------------------------------------------------------------- excuse modes


def test_the_excuse_and_collusion_cheats_get_their_workers_and_a_colluder(
    tmp_path: Path,
) -> None:
    cheats = (CheatMode.LATE_EXCUSE, CheatMode.PHANTOM_BUSY, CheatMode.RECEIPT_MINT)
    plan = plan_for(tmp_path, miners=2, workers=2, cheaters=0, validators=2, cheats=cheats)
    late, busy, mint = [m for m in plan.miners if m.cheat is not None]
    assert (late.cheat, busy.cheat, mint.cheat) == cheats
    # late_excuse: --workers cheating workers of one device each
    assert len(late.workers) == 2
    for worker in late.workers:
        argv = worker.process.argv
        assert argv[argv.index("--mode") + 1] == "late_excuse" and worker.devices == 1
    # phantom_busy: the honest companion and one worker listing the most devices one may list
    companion, phantom = busy.workers
    assert companion.cheat is not None and companion.cheat.companion
    assert "--companion" in companion.process.argv and companion.devices == 1
    assert phantom.cheat is not None and phantom.cheat.always_busy
    argv = phantom.process.argv
    assert argv[argv.index("--claims") + 1] == str(PHANTOM_BUSY_CLAIMS) == str(MAX_GPUS)
    assert busy.devices == 1 + MAX_GPUS
    # receipt_mint: production workers that run no jobs, never counted as honest
    for worker in mint.workers:
        assert worker.cheat is None and "cheat_worker" not in " ".join(worker.process.argv)
        assert validate_config(WorkerConfig, worker.process.config).jobs.runner == "none"
    honest = {w.pubkey for m in plan.miners if m.cheat is None for w in m.workers}
    assert {w.pubkey for w in plan.honest_workers} == honest
    # ... and a colluding validator of its own, on the devnet's own entry point
    (colluder,) = plan.colluders
    assert colluder.name == "colluder-1" and colluder.miner == mint.name
    assert colluder.stake == COLLUDER_STAKE < min(v.stake for v in plan.validators)
    assert colluder.process in plan.processes()
    argv = colluder.process.argv
    assert argv[argv.index("-m") + 1] == "devnet.colluder"
    assert argv[argv.index("--miner-endpoint") + 1] == f"127.0.0.1:{mint.api_port}"
    assert argv[argv.index("--ledger") + 1] == str(colluder.ledger)
    assert argv[argv.index("--start-file") + 1] == str(colluder.start_file)
    assert colluder.ledger.parent == colluder.process.data_dir
    cfg = validate_config(ValidatorConfig, colluder.process.config)
    assert cfg.wallet.name == "colluder-1" and not cfg.api.enabled
    assert cfg.challenge.interval_s == COLLUDER_EPOCH_S  # it does not bother to test
    assert colluder.database_url not in {v.database_url for v in plan.validators}
