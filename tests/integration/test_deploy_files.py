"""The deploy files (docker/, scripts/systemd/) are linted and checked against the code.

No docker engine runs here, so the Dockerfiles go through hadolint and the compose file through
the compose-spec JSON schema (check-jsonschema's vendored copy); the configs the containers
mount are validated by the daemons' own config models, and the ports and commands the files
name are the ones the code uses.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from byteleap.config import MinerConfig, ValidatorConfig, WorkerConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
ROLES: dict[str, type[ValidatorConfig | MinerConfig | WorkerConfig]] = {
    "validator": ValidatorConfig,
    "miner": MinerConfig,
    "worker": WorkerConfig,
}


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    assert path, f"{name} is a dev dependency; reinstall with pip install -e '.[dev]'"
    return path


def test_there_is_one_dockerfile_per_role() -> None:
    assert {p.name for p in DOCKERFILES} == {f"{role}.Dockerfile" for role in ROLES}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install foo\n")
    result = subprocess.run(
        [_tool("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_the_roles_console_script_as_a_non_root_user(dockerfile: Path) -> None:
    role = dockerfile.name.removesuffix(".Dockerfile")
    text = dockerfile.read_text()
    assert f'ENTRYPOINT ["byteleap-{role}"]' in text
    assert "USER 10001:10001" in text
    assert "HEALTHCHECK" in text
    extra = "worker,gpu" if role == "worker" else role
    assert f'pip install ".[{extra}]"' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'byteleap-{role} = "' in pyproject


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return compose


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(DOCKER / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["validator"]["restart_policy"] = "sometimes"  # not a compose key
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "restart_policy" in result.stdout


def test_the_validator_starts_only_after_postgres_is_healthy_and_migrations_succeeded() -> None:
    services = _compose()["services"]
    assert services["postgres"]["healthcheck"]["test"]
    migrate = services["validator-migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    validator = services["validator"]
    assert validator["depends_on"]["validator-migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert validator["environment"]["BYTELEAP_DATABASE__AUTO_UPGRADE"] == "false"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_container_configs_are_valid_and_expose_metrics(role: str, tmp_path: Path) -> None:
    text = (DOCKER / "config" / f"{role}.yaml").read_text()
    secret = tmp_path / "database_url"
    secret.write_text("postgresql+asyncpg://byteleap:pw@postgres:5432/byteleap\n")
    path = tmp_path / f"{role}.yaml"
    path.write_text(text.replace("/run/secrets/database_url", str(secret)))
    cfg = load_config(ROLES[role], path, env={})
    assert cfg.metrics.host == "0.0.0.0"  # Prometheus scrapes across containers
    targets = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"]
    scraped = {t for job in targets for t in job["static_configs"][0]["targets"]}
    assert f"{role}:{cfg.metrics.port}" in scraped


def test_the_compose_secret_holds_the_whole_database_url() -> None:
    raw = yaml.safe_load((DOCKER / "config" / "validator.yaml").read_text())
    assert raw["database"]["url"] == {"file": "/run/secrets/database_url"}
    assert "database_url" in _compose()["services"]["validator"]["secrets"]


@pytest.mark.parametrize("role", sorted(ROLES))
def test_systemd_units_run_the_daemon_and_stop_restarting_on_config_errors(role: str) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "scripts" / "systemd" / f"byteleap-{role}.service")
    service = unit["Service"]
    assert service["ExecStart"].endswith(f"bin/byteleap-{role} run")
    assert service["Environment"] == f"BYTELEAP_CONFIG=/etc/byteleap/{role}.yaml"
    assert "2" in service["RestartPreventExitStatus"].split()
    assert service["User"] == "byteleap"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
