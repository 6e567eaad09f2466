"""The umbrella command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.unit.test_challenge_vectors import BINDING, SEED, SMALL_ROOTS


def byteleap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neurons.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250"},  # keep rich from wrapping error messages
    )


def test_challenge_reference_prints_the_frozen_roots() -> None:
    done = byteleap(
        "challenge", "reference",
        "--seed", SEED.hex(),
        "--miner-hotkey", BINDING.miner_hotkey,
        "--worker-pubkey", BINDING.worker_pubkey.hex(),
        "--gpu-uuid", BINDING.gpu_uuid,
        "--m", "8", "--n", "8", "--k", "16", "--v", "15", "--stages", "3",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"roots": SMALL_ROOTS}


def test_challenge_reference_rejects_bad_parameters_with_a_clear_message() -> None:
    common = ["challenge", "reference", "--miner-hotkey", "5G", "--gpu-uuid", "G"]
    short_seed = byteleap(*common, "--seed", "00", "--worker-pubkey", "00" * 32)
    assert short_seed.returncode == 2
    assert "--seed must be 32 bytes" in short_seed.stderr
    inexact = byteleap(
        *common, "--seed", "00" * 32, "--worker-pubkey", "00" * 32, "--k", "65536", "--v", "16"
    )
    assert inexact.returncode == 2
    assert "2**24" in inexact.stderr


def test_version_and_devnet_explain_themselves() -> None:
    version = byteleap("version")
    assert version.returncode == 0
    assert "version_key" in version.stdout
    devnet = byteleap("devnet", "--miners", "2")
    assert devnet.returncode == 0
    assert "devchain" in devnet.stdout and "2 honest miners" in devnet.stdout
