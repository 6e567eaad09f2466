"""``byteleap-validator`` commands on a real SQLite database seeded through the store, with a
devchain for the metagraph: ``db upgrade``/``db current``, ``scores`` and ``weights --dry-run``,
and ``run`` stopping with exit code 3 for an unregistered hotkey."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from byteleap.challenge.params import ChallengeParams
from byteleap.errors import Outcome
from neurons.chain import DevChain, DevChainParams
from neurons.validator.cli import app
from neurons.validator.store import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    WorkerSnapshot,
    head_revision,
    open_store,
)
from tests.support.store import run_async
from tests.wallets import coldkey_of, make_wallet

PARAMS = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)
LIAR_GPU = "GPU-liar-0000-0000-0000-000000000000"
GPU_A = "GPU-aaaaaaaa-0000-0000-0000-000000000001"
GPU_B = "GPU-bbbbbbbb-0000-0000-0000-000000000002"


@dataclass
class Setup:
    config: Path
    db: Path
    chain: DevChain
    validator: str
    strong: str  # the miner with the faster GPU
    weak: str
    idle: str  # registered, never seen


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    chain = DevChain.create(tmp_path / "chain.db", DevChainParams(block_seconds=0.25))
    wallets = tmp_path / "wallets"
    names = {}
    for name in ("validator", "strong", "weak", "idle"):
        wallet, hotkey = make_wallet(wallets, name)
        chain.register(
            hotkey, coldkey_of(wallet), stake=5000.0 if name == "validator" else 0.0,
            validator_permit=name == "validator",
        )  # fmt: skip
        names[name] = hotkey
    db = tmp_path / "validator.db"
    config = tmp_path / "validator.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "wallet": {"name": "validator", "path": str(wallets)},
                "chain": {"network": f"devchain:{tmp_path / 'chain.db'}"},
                "database": {"url": f"sqlite+aiosqlite:///{db}"},
                "paths": {"data_dir": str(tmp_path)},
                "metrics": {"enabled": False},
            }
        )
    )
    try:
        yield Setup(
            config, db, chain, names["validator"], names["strong"], names["weak"], names["idle"]
        )
    finally:
        chain.close()


def seed(setup: Setup) -> None:
    """A poll an hour ago (a completed bucket) and one verified challenge per miner; the strong
    miner's GPU is four times as fast."""

    async def go() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{setup.db}", auto_upgrade=False)
        try:
            now = datetime.now(UTC)
            await store.sync_miners(now - timedelta(hours=2), setup.chain.metagraph().neurons)
            for n, (hotkey, uuid, flops) in enumerate(
                [(setup.strong, GPU_A, 4e12), (setup.weak, GPU_B, 1e12)]
            ):
                pubkey = f"{n + 1:064x}"
                at = now - timedelta(hours=1)
                worker = WorkerSnapshot(
                    pubkey, "idle", (GpuSnapshot(uuid, "NVIDIA H100 80GB HBM3", 81559),)
                )
                await store.record_inventory(at, hotkey, [worker], bucket_seconds=300)
                cid = f"seed-{n}"
                await store.open_challenge(
                    ChallengeOpen(
                        challenge_id=cid,
                        miner_hotkey=hotkey,
                        worker_pubkey=pubkey,
                        gpu_uuids=(uuid,),
                        gpu_models={uuid: "NVIDIA H100 80GB HBM3"},
                        params=PARAMS,
                        seed=bytes(32),
                        dispatched_at=at,
                        deadline_at=at + timedelta(seconds=30),
                    )
                )
                await store.record_commit(cid, at, {uuid: [bytes(32)] * PARAMS.stages})
                if hotkey == setup.weak:  # the idle miner lists an "H100" of 24 GiB
                    liar = GpuSnapshot(LIAR_GPU, "NVIDIA H100 80GB HBM3", 24576)
                    listed = [WorkerSnapshot(f"{9:064x}", "idle", (liar,))]
                    await store.record_inventory(at, setup.idle, listed, bucket_seconds=300)
                await store.close_challenge(
                    ChallengeVerdict(
                        challenge_id=cid,
                        gpu_uuid=uuid,
                        closed_at=at,
                        outcome=Outcome.VERIFIED,
                        throughput_flops=flops,
                        elapsed_s=1.0,
                    )
                )
        finally:
            await store.close()

    run_async(go)


def uid_of(setup: Setup, hotkey: str) -> int:
    return setup.chain.metagraph().require(hotkey).uid


# --------------------------------------------------------------------------- db


def test_db_upgrade_then_current(setup: Setup) -> None:
    code, out, err = invoke("db", "current", "-c", str(setup.config))
    assert code == 4 and out.strip() == "empty"
    assert "db upgrade" in err
    code, _, err = invoke("db", "upgrade", "-c", str(setup.config))
    assert code == 0, err
    assert f"upgraded from empty to {head_revision()}" in err
    assert setup.db.is_file()
    code, out, err = invoke("db", "current", "-c", str(setup.config))
    assert code == 0 and out.strip() == head_revision()
    assert "up to date" in err
    code, _, err = invoke("db", "upgrade", "-c", str(setup.config))
    assert code == 0 and "already at" in err


def test_commands_refuse_a_database_that_was_never_upgraded(setup: Setup) -> None:
    code, _, err = invoke("scores", "-c", str(setup.config))
    assert code == 4
    assert "byteleap-validator db upgrade" in err


# --------------------------------------------------------------------------- scores


def test_scores_table_json_and_explain(setup: Setup) -> None:
    assert invoke("db", "upgrade", "-c", str(setup.config))[0] == 0
    seed(setup)
    code, out, err = invoke("scores", "--json", "-c", str(setup.config))
    assert code == 0, err
    payload = json.loads(out)
    rows = {row["hotkey"]: row for row in payload["miners"]}
    assert set(rows) == {setup.validator, setup.strong, setup.weak, setup.idle}
    strong, weak = rows[setup.strong], rows[setup.weak]
    assert strong["uid"] == uid_of(setup, setup.strong)
    assert strong["challenge_raw_flops"] == pytest.approx(4e12)
    assert strong["challenge_share"] == pytest.approx(0.8)
    assert strong["weight"] == pytest.approx(0.8) and weak["weight"] == pytest.approx(0.2)
    assert rows[setup.idle]["weight"] == 0.0 and rows[setup.idle]["availability"] == 0.0
    assert payload["reason"] is None
    assert [row["uid"] for row in payload["miners"]] == sorted(r["uid"] for r in rows.values())

    code, out, _ = invoke("scores", "-c", str(setup.config))
    assert code == 0
    assert "challenge TFLOP/s" in out and setup.strong[:8] in out and "0.800000" in out

    strong_uid = uid_of(setup, setup.strong)
    code, out, _ = invoke("scores", "--explain", str(strong_uid), "-c", str(setup.config))
    assert code == 0
    assert f"uid {strong_uid}" in out and f"miner {setup.strong}" in out
    assert "weight 0.800000" in out and GPU_A in out
    code, out, _ = invoke("scores", "--explain", str(strong_uid), "--json", "-c", str(setup.config))
    explained = json.loads(out)
    assert explained["uid"] == strong_uid and explained["gpus"][0]["gpu_uuid"] == GPU_A

    idle_uid = uid_of(setup, setup.idle)
    code, out, _ = invoke("scores", "--explain", str(idle_uid), "-c", str(setup.config))
    assert code == 0
    assert f"{LIAR_GPU}: left out, unverifiable: reported memory 24576 MiB" in out
    code, out, _ = invoke("scores", "--explain", str(idle_uid), "--json", "-c", str(setup.config))
    (notes,) = json.loads(out)["devices"].values()
    assert "unverifiable" in notes[LIAR_GPU]

    code, _, err = invoke("scores", "--explain", "250", "-c", str(setup.config))
    assert code == 2 and "no registered miner has uid 250" in err


def test_scores_say_why_there_are_no_weights(setup: Setup) -> None:
    assert invoke("db", "upgrade", "-c", str(setup.config))[0] == 0
    code, out, _ = invoke("scores", "--json", "-c", str(setup.config))
    assert code == 0
    assert json.loads(out)["miners"] == []
    assert json.loads(out)["reason"].startswith("no weights")


# --------------------------------------------------------------------------- weights


def test_weights_dry_run_prints_the_vector_and_leaves_the_chain_alone(setup: Setup) -> None:
    assert invoke("db", "upgrade", "-c", str(setup.config))[0] == 0
    seed(setup)
    code, out, err = invoke("weights", "--dry-run", "--json", "-c", str(setup.config))
    assert code == 0, err
    payload = json.loads(out)
    strong, weak = uid_of(setup, setup.strong), uid_of(setup, setup.weak)
    vector = dict(zip(payload["uids"], payload["weights"], strict=True))
    assert vector == {strong: pytest.approx(0.8), weak: pytest.approx(0.2)}
    assert payload["reason"] is None and payload["version_key"] >= 0
    assert setup.chain.latest_weights() == {}  # nothing was set

    code, out, _ = invoke("weights", "--dry-run", "-c", str(setup.config))
    assert code == 0 and "dry run" in out and setup.strong in out

    code, _, err = invoke("weights", "-c", str(setup.config))
    assert code == 2 and "--dry-run" in err


def test_weights_dry_run_follows_the_current_metagraph(setup: Setup) -> None:
    """A miner that left the metagraph since the last sync is no longer weighted."""
    assert invoke("db", "upgrade", "-c", str(setup.config))[0] == 0
    seed(setup)
    fresh = DevChain.create(setup.chain.path.parent / "other-chain.db")
    try:
        for hotkey in (setup.validator, setup.strong):
            fresh.register(hotkey, f"cold-{hotkey[:6]}")
    finally:
        fresh.close()
    text = setup.config.read_text().replace("chain.db", "other-chain.db")
    setup.config.write_text(text)
    code, out, err = invoke("weights", "--dry-run", "--json", "-c", str(setup.config))
    assert code == 0, err
    payload = json.loads(out)
    assert payload["uids"] == [1] and payload["weights"] == [pytest.approx(1.0)]


# --------------------------------------------------------------------------- run


def test_run_stops_with_exit_code_3_when_the_hotkey_is_not_registered(
    setup: Setup, tmp_path: Path
) -> None:
    make_wallet(tmp_path / "wallets", "stranger")
    config = yaml.safe_load(setup.config.read_text())
    config["wallet"]["name"] = "stranger"
    path = tmp_path / "stranger.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-c", "from neurons.validator.cli import main; main()", "run", "-c",
         str(path)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "not registered" in done.stderr
    assert setup.db.is_file()  # the store was opened (and migrated) before the check


# --------------------------------------------------------------------------- renters


def test_renters_add_list_revoke(setup: Setup) -> None:
    from neurons.validator.renter import hash_key

    cfg = str(setup.config)
    code, _, err = invoke("renters", "add", "alice", "-c", cfg)
    assert code == 4 and "db upgrade" in err  # the schema is not created behind one's back
    assert invoke("db", "upgrade", "-c", cfg)[0] == 0
    code, out, err = invoke("renters", "add", "alice", "--limit", "25", "-c", cfg)
    assert code == 0, err
    key = out.strip()
    assert key.startswith("blr_") and len(key) > 40
    assert "not shown again" in err and key not in err
    code, out, err = invoke("renters", "add", "alice", "-c", cfg)
    assert code == 2 and "exists already" in err
    assert invoke("renters", "add", "bob", "-c", cfg)[0] == 0

    async def stored() -> tuple[object, object]:
        store = await open_store(f"sqlite+aiosqlite:///{setup.db}", auto_upgrade=False)
        try:
            return (
                await store.leases.renter_by_key_hash(hash_key(key)),
                await store.leases.renter_by_name("bob"),
            )
        finally:
            await store.close()

    alice, bob = run_async(stored)
    assert alice is not None and alice.name == "alice" and alice.spend_limit == 25.0  # type: ignore[attr-defined]
    assert bob is not None and bob.spend_limit is None  # type: ignore[attr-defined]
    assert key.encode() not in setup.db.read_bytes()  # only the hash is stored

    code, out, _ = invoke("renters", "list", "-c", cfg)
    assert code == 0 and "alice" in out and "25" in out and "active" in out
    assert invoke("renters", "revoke", "alice", "-c", cfg)[0] == 0
    code, _, err = invoke("renters", "revoke", "nobody", "-c", cfg)
    assert code == 2 and "no renter named 'nobody'" in err
    code, out, _ = invoke("renters", "list", "--json", "-c", cfg)
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["alice"]["revoked_at"] is not None and rows["bob"]["revoked_at"] is None
    assert rows["alice"]["spend_limit"] == 25.0 and rows["alice"]["active_leases"] == 0


def test_offline_commands_count_receipts_by_the_daemons_stake_rule(tmp_path: Path) -> None:
    # `scores` and `weights --dry-run` must show the vector the daemon would set, so the store
    # they open applies leases.min_receipt_validator_stake exactly like the running validator
    from byteleap.config import ValidatorConfig
    from neurons.validator.cli import _open_store

    cfg = ValidatorConfig.model_validate(
        {
            "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"},
            "leases": {"min_receipt_validator_stake": 42.0},
        }
    )

    async def threshold() -> float:
        store = await _open_store(cfg, auto_upgrade=True)
        try:
            return store.receipts.min_validator_stake
        finally:
            await store.close()

    assert run_async(threshold) == 42.0
