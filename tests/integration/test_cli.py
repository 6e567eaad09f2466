"""The umbrella command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.vectors import BINDING, SEED, SMALL_ROOTS


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``main()`` of ``module`` in a fresh interpreter, as its console script would run it."""
    return subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "250", **(env or {})},  # keep rich from wrapping errors
    )


def byteleap(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("devnet.cli", *args)


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
    devnet = byteleap("devnet", "--help")  # a real run is tests/e2e/test_devnet.py
    assert devnet.returncode == 0
    assert "devchain" in devnet.stdout and "--cheaters" in devnet.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "module,example",
    [("neurons.miner.cli", "miner"), ("neurons.validator.cli", "validator")],
)
def test_daemon_check_config_accepts_the_example_and_names_bad_keys(
    module: str, example: str, tmp_path: Path
) -> None:
    good = run_module(module, "check-config", "-c", f"configs/{example}.example.yaml")
    assert good.returncode == 0, good.stderr
    assert "wallet:" in good.stdout and "config OK" in good.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  port: 99999\n  colour: blue\n")
    refused = run_module(module, "check-config", "-c", str(bad))
    assert refused.returncode == 2
    assert "metrics." in refused.stderr and str(bad) in refused.stderr
    via_env = run_module(
        module, "check-config", "-c", f"configs/{example}.example.yaml",
        env={"BYTELEAP_METRICS__PORT": "not-a-port"},
    )  # fmt: skip
    assert via_env.returncode == 2
    assert "BYTELEAP_METRICS__PORT" in via_env.stderr
