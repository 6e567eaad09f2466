"""``byteleap-worker`` commands, run as real processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from byteleap.errors import ConfigError
from workers.keys import read_key, write_key


def worker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


def test_keygen_writes_a_private_key_and_prints_the_public_one(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "worker.key"
    done = worker("keygen", "--key-file", str(key_file))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert bytes.fromhex(done.stdout.strip()) == read_key(key_file).public_key
    again = worker("keygen", "--key-file", str(key_file))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert worker("keygen", "--key-file", str(key_file), "--force").returncode == 0


def test_keys_readable_by_others_or_malformed_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    write_key(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key(path)
    path.chmod(0o600)
    path.write_text("not hex\n")
    with pytest.raises(ConfigError, match="32-byte hex seed"):
        read_key(path)
    with pytest.raises(ConfigError, match="keygen"):
        read_key(tmp_path / "missing.key")


def test_check_config_validates_and_names_the_bad_key(tmp_path: Path) -> None:
    good = worker("check-config", "-c", "configs/worker.example.yaml")
    assert good.returncode == 0, good.stderr
    assert "miner_url" in good.stdout
    bad = tmp_path / "worker.yaml"
    bad.write_text("link:\n  heartbeat_interval_s: soon\n")
    done = worker("check-config", "-c", str(bad))
    assert done.returncode == 2
    assert "link.heartbeat_interval_s" in done.stderr


def test_run_without_a_key_explains_how_to_make_one(tmp_path: Path) -> None:
    done = worker("run", env={"BYTELEAP_PATHS__DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert "byteleap-worker keygen" in done.stderr


def test_selftest_verifies_a_local_challenge_and_reports_its_speed(tmp_path: Path) -> None:
    done = worker(
        "selftest", "--size", "128", "--stages", "2", "--json",
        env={"BYTELEAP_PATHS__DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (numpy,) = [r for r in report["results"] if r["backend"] == "numpy"]
    assert numpy["verified"] is True
    assert numpy["tflops"] > 0 and numpy["bare_gemm_s"] > 0
    assert numpy["uuid"].startswith("CPU-")
