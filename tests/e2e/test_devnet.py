"""``byteleap devnet`` as a user runs it: real processes, real verdicts, real weights.

Nothing is faked but the chain (the devchain). The cheaters are the real worker runtime with a
cheating executor, and the validator must catch every one of them on its own. The renter is a real
API key (made by ``byteleap-validator renters add``) leasing through the real renter API, and its
job runs on a real worker with the subprocess runner.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from byteleap.protocol.common import MAX_GPUS
from devnet.cheat_modes import EXPECTED_FAILURES, CheatMode
from devnet.plan import build_plan
from devnet.processes import DevnetFailed, read_tail
from devnet.progress import NoProgress
from devnet.renters import ARTIFACT, expected_stdout
from devnet.runner import Devnet
from devnet.specs import DevnetOptions
from neurons.validator.renter.keys import KEY_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def devnet_env() -> dict[str, str]:
    """This environment without ByteLeap settings (a database URL meant for the test suite
    must not reach the devnet's validator)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BYTELEAP_")}


def test_the_devnet_catches_every_cheater_and_pays_the_honest_miners(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = [
        *(sys.executable, "-c", "from devnet.cli import main; main()"),
        *("devnet", "--json", "--miners", "2", "--workers", "1", "--cheaters", "2"),
        *("--rounds", "2", "--renters", "1", "--run-dir", str(run_dir), "--timeout", "240"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=devnet_env())
    logs = "\n".join(
        f"--- {log.name}\n{read_tail(log, 15)}" for log in sorted((run_dir / "logs").glob("*.log"))
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{logs}"
    report = json.loads(done.stdout)  # stdout holds the JSON and nothing else

    miners = report["miners"]
    honest = [m for m in miners if not m["cheater"]]
    cheaters = [m for m in miners if m["cheater"]]
    assert len(honest) == 2 and len(cheaters) == 2
    assert [m["cheat"] for m in cheaters] == ["fake_rows", "skipped_stages"]
    assert math.isclose(sum(m["weight"] for m in honest), 1.0, abs_tol=1e-6)
    for miner in honest:
        assert miner["verified"] >= 1, miner
        assert miner["weight"] > 0, miner
    for miner in cheaters:
        assert miner["weight"] == 0, miner
        expected = EXPECTED_FAILURES[CheatMode(miner["cheat"])]
        assert set(miner["failures"]) & expected, miner
        assert miner["failed"] >= 1, miner
    assert isinstance(report["weights_block"], int) and report["weights_block"] > 0
    assert report["duration_s"] > 0

    # the renter leased an honest worker, its job ran there, and the lease ended
    (renter,) = report["renters"]
    assert renter["lease_id"].startswith("lease-"), renter
    assert renter["job_state"] == "succeeded" and renter["exit_code"] == 0, renter
    assert renter["stdout"] == expected_stdout("renter-1"), renter
    assert renter["artifacts"] == [ARTIFACT], renter
    assert renter["lease_status"] == "ended" and renter["cost"] > 0, renter
    leased = next(m for m in miners if m["uid"] == renter["miner_uid"])
    assert not leased["cheater"]
    assert "renter-1: job" in done.stderr  # the renter's steps are progress lines
    assert KEY_PREFIX not in done.stdout + done.stderr  # the devnet never prints an API key

    # the receipts made lease revenue: 70 % of the score goes to the only miner that earned any
    assert leased["lease_revenue"] > 0 and leased["lease_share"] == 1.0, leased
    for miner in miners:
        assert miner["challenge_share"] is not None, miner
        if miner is not leased:
            assert miner["lease_revenue"] == 0 and miner["lease_share"] == 0, miner
    (unleased,) = [m for m in honest if m is not leased]
    assert leased["weight"] > unleased["weight"], (leased, unleased)
    for miner in cheaters:
        assert miner["lease_revenue"] == 0 and miner["challenge_share"] == 0, miner


def test_the_devnet_counts_one_shared_device_once_and_never_pays_a_cpu_posing_as_a_gpu(
    tmp_path: Path,
) -> None:
    """A sybil (two miners, three workers, four claims on one shared device), a CPU claiming an
    H200 and a CPU claiming an ambiguous model, next to two honest miners."""
    run_dir = tmp_path / "run"
    argv = [
        *(sys.executable, "-c", "from devnet.cli import main; main()"),
        *("devnet", "--json", "--miners", "2", "--workers", "1", "--rounds", "2"),
        *("--cheat", "sybil", "--cheat", "cpu_as_gpu", "--cheat", "ambiguous_model"),
        *("--renters", "1", "--run-dir", str(run_dir), "--timeout", "240"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=devnet_env())
    logs = "\n".join(
        f"--- {log.name}\n{read_tail(log, 15)}" for log in sorted((run_dir / "logs").glob("*.log"))
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{logs}"
    report = json.loads(done.stdout)

    miners = report["miners"]
    honest = [m for m in miners if not m["cheater"]]
    sybils = [m for m in miners if m["cheat"] == "sybil"]
    posers = [m for m in miners if m["cheat"] in ("cpu_as_gpu", "ambiguous_model")]
    assert [m["cheat"] for m in miners if m["cheater"]] == [
        "sybil",
        "sybil",
        "cpu_as_gpu",
        "ambiguous_model",
    ]
    assert all("devices" in m for m in miners)
    assert [m["devices"] for m in honest] == [1, 1]
    assert sorted(m["devices"] for m in sybils) == [1, 3]  # four claims in all
    assert [m["devices"] for m in posers] == [1, 1]
    for miner in honest:
        assert miner["verified"] >= 1 and miner["weight"] > 0, miner

    # a CPU posing as a GPU is never verified, never paid, never leased
    leased = {r["miner_uid"] for r in report["renters"]}
    for miner in posers:
        assert miner["weight"] == 0, miner
        assert miner["verified"] == 0, miner
        assert set(miner["failures"]) <= EXPECTED_FAILURES[CheatMode(miner["cheat"])], miner
        assert miner["uid"] not in leased, (miner, report["renters"])
        assert not miner["lease_revenue"], miner

    # the sybil does honest work, so nothing is fraud, but the claims that queue on its one
    # device are late: no sybil miner earns more than an honest miner per device
    per_device = min(m["weight"] / m["devices"] for m in honest)
    for miner in sybils:
        assert miner["weight"] <= per_device + 0.02, (miner, per_device)
        assert set(miner["failures"]) <= EXPECTED_FAILURES[CheatMode.SYBIL], miner
        assert miner["uid"] not in leased, (miner, report["renters"])
    assert sum(m["failures"].get("timeout", 0) for m in sybils) >= 1, sybils
    total = sum(m["weight"] for m in miners)
    assert math.isclose(total, 1.0, abs_tol=1e-6), miners

    # the renter got an honest device, and the sybil's device really served its claims
    (renter,) = report["renters"]
    assert renter["exit_code"] == 0, renter
    ledger = (run_dir / "devices" / "sybil-1.lock").read_text().splitlines()
    assert ledger, "the shared device served no claim"


def test_two_validators_agree_and_neither_excuses_nor_busy_claims_nor_minted_receipts_pay(
    tmp_path: Path,
) -> None:
    """SPEC 5.5 with two validators (stakes 10,000 and 5,000), each with its own database
    (two workers per miner and three rounds: enough challenges per miner that the validators'
    samples tell the same story):

    - late_excuse: a worker that says "busy" to every challenge, after its deadline. Every such
      answer is a timeout, and the miner ends with weight 0;
    - phantom_busy: a worker listing the most devices one worker may list, always busy, beside
      an honest companion. The busy devices earn nothing and do not lift the miner above one
      honest device;
    - receipt_mint: honest workers, but a colluding validator (stake 1,000) leases them to
      nobody and mints receipts the miner countersigns. They earn the miner at most the
      colluder's share of the validators' stake of the lease pool;

    and the two validators' weight vectors agree (cosine similarity >= 0.95)."""
    run_dir = tmp_path / "run"
    argv = [
        *(sys.executable, "-c", "from devnet.cli import main; main()"),
        *("devnet", "--json", "--validators", "2", "--miners", "2", "--workers", "2"),
        *("--cheat", "late_excuse", "--cheat", "phantom_busy", "--cheat", "receipt_mint"),
        *("--rounds", "3", "--renters", "1", "--run-dir", str(run_dir), "--timeout", "240"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=devnet_env())
    logs = "\n".join(
        f"--- {log.name}\n{read_tail(log, 15)}" for log in sorted((run_dir / "logs").glob("*.log"))
    )
    assert done.stdout.strip(), f"no report\n{done.stderr[-3000:]}\n{logs}"
    report = json.loads(done.stdout)
    context = f"{json.dumps(report, indent=1)}\n{done.stderr[-3000:]}"

    miners = report["miners"]
    honest = [m for m in miners if not m["cheater"]]
    by_cheat = {m["cheat"]: m for m in miners if m["cheater"]}
    assert len(honest) == 2 and set(by_cheat) == {"late_excuse", "phantom_busy", "receipt_mint"}
    late, busy, mint = (by_cheat[c] for c in ("late_excuse", "phantom_busy", "receipt_mint"))

    # two validators with different stakes, each with a vector of its own, and they agree
    validators = report["validators"]
    assert [v["name"] for v in validators] == ["validator", "validator-2"], context
    assert [v["stake"] for v in validators] == [10_000.0, 5_000.0]
    assert all(v["weights_block"] for v in validators), context
    assert len({v["hotkey"] for v in validators}) == 2
    assert report["agreement"] is not None and report["agreement"] >= 0.95, context

    def weight(validator: dict[str, Any], miner: dict[str, Any]) -> float:
        return float(validator["weights"].get(str(miner["uid"]), 0.0))

    for miner in honest:
        assert miner["verified"] >= 1, (miner, context)
        assert all(weight(v, miner) > 0 for v in validators), (miner, context)

    # a late excuse is a timeout: never verified, never paid. A challenge that reaches the worker
    # while it holds the other validator's (the two validators' epochs can collide) is refused as
    # busy at once, in time, which no lease explains: unexplained_busy, scored as a miss too. On a
    # loaded machine every one of its challenges can collide, so count both
    missed = late["failures"].get("timeout", 0) + late["failures"].get("unexplained_busy", 0)
    assert late["verified"] == 0 and missed >= 1, context
    assert set(late["failures"]) <= EXPECTED_FAILURES[CheatMode.LATE_EXCUSE], context
    assert all(weight(v, late) == 0 for v in validators), context

    # busy devices earn nothing and do not lift the miner above its one honest device
    assert busy["devices"] == 1 + MAX_GPUS
    assert busy["failures"].get("unexplained_busy", 0) >= 1, context
    for validator in validators:
        per_device = min(weight(validator, m) / m["devices"] for m in honest)
        assert weight(validator, busy) <= per_device + 0.02, (validator, context)

    # minted receipts: countersigned and counted, but worth at most the colluder's stake share
    (colluder,) = report["colluders"]
    assert colluder["miner_uid"] == mint["uid"], context
    assert colluder["stake"] == 1_000.0
    assert colluder["stake_share"] == pytest.approx(1_000 / 16_000)
    assert colluder["leases"] == mint["devices"] == 2, context  # one lease per worker
    assert colluder["billed_gpu_s"] > 0, context
    for validator in validators:
        shares = validator["lease_shares"]
        assert shares is not None, (validator, context)
        assert shares.get(str(mint["uid"]), 0.0) <= colluder["stake_share"] + 0.02, context

    # the renter leased through the first validator and got an honest worker
    (renter,) = report["renters"]
    assert renter["exit_code"] == 0, context
    assert renter["miner_uid"] in {m["uid"] for m in honest}, context
    assert renter["miner_uid"] != mint["uid"]

    assert done.returncode == 0, f"{context}\n{logs}"


def test_a_process_that_fails_to_start_stops_the_devnet_with_its_log(tmp_path: Path) -> None:
    """The validator is replaced by a command that dies at once: the devnet says which process
    failed, shows the end of its log, and leaves no process behind."""
    plan = build_plan(
        DevnetOptions(miners=1, workers=1, cheaters=0), tmp_path, rng=random.Random(4)
    )
    argv = (sys.executable, "-c", "import sys; print('no database here'); sys.exit(3)")
    broken = replace(plan.validator, process=replace(plan.validator.process, argv=argv))
    plan = replace(plan, validators=(broken,))
    devnet = Devnet(plan, NoProgress())
    with pytest.raises(DevnetFailed) as failed:
        asyncio.run(devnet.run())
    assert failed.value.process == "validator"
    assert "exited with code 3" in failed.value.message
    assert "no database here" in failed.value.log
    assert set(devnet.exit_codes) == {p.name for p in plan.processes()}
    assert devnet.exit_codes["validator"] == 3
