"""The devnet's renters: their keys from the real CLI, the job they send, and how they fail.

The keys are made by the real ``byteleap-validator renters add`` against a real SQLite database;
the failures are real answers of the real renter API (uvicorn on 127.0.0.1, port 0) over a
store without leasable workers. The whole happy path (lease, job, receipts, revenue) is the
devnet's e2e test.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from byteleap.config import ValidatorConfig, validate_config
from byteleap.config.leasing import LeasesSection
from devnet.plan import build_plan
from devnet.prepare import write_configs
from devnet.renters import (
    ARTIFACT,
    RenterApi,
    RenterApiError,
    RenterFailed,
    RenterOutcome,
    SimulatedRenter,
    create_key,
    error_of,
    expected_stdout,
    job_spec,
)
from devnet.specs import RENTER_SPEND_LIMIT, DevnetOptions, Plan
from neurons.validator.leasing.manager import LeaseManager
from neurons.validator.renter import create_renter_app, hash_key, new_key
from neurons.validator.renter.keys import KEY_PREFIX
from neurons.validator.renter.models import JobCreate
from neurons.validator.renter.server import RenterApiServer
from neurons.validator.store import SqlStore, open_store


def renter_plan(tmp_path: Path) -> Plan:
    ports = iter(range(31_000, 31_100))
    return build_plan(
        DevnetOptions(miners=1, workers=1, cheaters=0, renters=1),
        tmp_path / "run",
        ports=lambda: next(ports),
        rng=random.Random(3),
    )


# --------------------------------------------------------------------------- the job


def test_the_job_is_a_valid_api_request_that_prints_and_writes_its_artifact(
    tmp_path: Path,
) -> None:
    spec = job_spec("renter-7")
    JobCreate.model_validate(spec)  # what the renter API accepts
    assert spec["command"][0] == sys.executable  # the subprocess runner passes no PATH
    # run it as the subprocess runner does: in the job's directory, next to an empty output/,
    # with only the job's own variables
    (tmp_path / "output").mkdir()
    done = subprocess.run(
        spec["command"], cwd=tmp_path, env=dict(spec["env"]), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected_stdout("renter-7")
    assert (tmp_path / "output" / ARTIFACT).read_text() == expected_stdout("renter-7")


def test_an_outcome_names_the_miner_by_uid() -> None:
    outcome = RenterOutcome(
        renter="renter-1",
        lease_id="lease-1",
        miner_hotkey="5Miner",
        worker_pubkey="ab" * 32,
        gpus=1,
        price_per_gpu_hour=1.0,
        job_id="job-1",
        job_state="succeeded",
        exit_code=0,
        stdout="hi\n",
        artifacts=(ARTIFACT,),
        lease_status="ended",
        cost=0.00123456789,
    )
    data = outcome.to_dict({"5Miner": 3})
    assert data["miner_uid"] == 3 and data["cost"] == 0.001235
    assert data["artifacts"] == [ARTIFACT] and data["exit_code"] == 0
    assert outcome.to_dict({})["miner_uid"] is None


def test_api_errors_are_read_from_the_documented_body_or_shown_as_they_are() -> None:
    error = error_of(409, b'{"error": {"code": "no_capacity", "message": "none left"}}')
    assert (error.status, error.api_code) == (409, "no_capacity")
    assert error.message == "HTTP 409 no_capacity: none left"
    odd = error_of(502, b"<html>bad gateway</html>")
    assert odd.api_code == "http_error" and "bad gateway" in odd.message
    assert error_of(500, b"").message == "HTTP 500 http_error: no body"


# --------------------------------------------------------------------------- keys


async def test_a_renter_key_comes_from_the_validators_own_command(tmp_path: Path) -> None:
    plan = renter_plan(tmp_path)
    write_configs(plan)
    (renter,) = plan.renters
    cfg = validate_config(ValidatorConfig, plan.validator.process.config)
    # the devnet adds renters once the validator has created its schema, as here
    store = await open_store(cfg.database.resolve_url(), auto_upgrade=True)
    try:
        key = await create_key(renter)
        row = await store.leases.renter_by_key_hash(hash_key(key))
    finally:
        await store.close()
    assert key.startswith(KEY_PREFIX)
    assert row is not None and row.name == "renter-1"
    assert row.spend_limit == RENTER_SPEND_LIMIT


async def test_a_failing_renters_command_is_reported_with_its_output(tmp_path: Path) -> None:
    (renter,) = renter_plan(tmp_path).renters
    script = "import sys; print('no database', file=sys.stderr); sys.exit(4)"
    broken = replace(renter, add_argv=(sys.executable, "-c", script))
    with pytest.raises(RenterFailed) as failed:
        await create_key(broken)
    assert "renter-1" in failed.value.message
    assert "exited with code 4" in failed.value.message
    assert "no database" in failed.value.message


# --------------------------------------------------------------------------- the API


@pytest.fixture
async def empty_api(tmp_path: Path) -> AsyncIterator[tuple[str, SqlStore]]:
    """The real renter API over a fresh SQLite store that has no worker to lease."""
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", auto_upgrade=True)

    def no_miner(*_: object) -> object:
        raise AssertionError("nothing to lease: no miner is ever called")

    manager = LeaseManager(
        leases=store.leases,
        store=store,
        section=LeasesSection(),
        netuid=128,
        validator_hotkey="5Validator",
        connect=no_miner,  # type: ignore[arg-type]
        request_timeout_s=5.0,
        wall_clock=lambda: datetime.now(UTC),
    )
    server = RenterApiServer(create_renter_app(store=store.leases, manager=manager), "127.0.0.1", 0)
    await server.start()
    try:
        yield server.url, store
    finally:
        await server.stop()
        await store.close()


async def run_renter(url: str, key: str) -> RenterOutcome:
    api = RenterApi(url, key)
    notes: list[str] = []
    try:
        renter = SimulatedRenter("renter-1", api, note=notes.append, miner_names={}, deadline_s=1.0)
        return await renter.run()
    finally:
        await api.aclose()


async def test_a_renter_without_capacity_fails_naming_the_cause(
    empty_api: tuple[str, SqlStore],
) -> None:
    url, store = empty_api
    key = new_key()
    await store.leases.add_renter(
        "renter-1", hash_key(key), spend_limit=None, now=datetime.now(UTC)
    )
    with pytest.raises(RenterFailed) as failed:
        await run_renter(url, key)
    message = failed.value.message
    assert message.startswith("renter-1: listing capacity: no capacity")
    assert "verified by a challenge" in message


async def test_a_refused_key_fails_with_the_apis_own_error(
    empty_api: tuple[str, SqlStore],
) -> None:
    url, _ = empty_api
    with pytest.raises(RenterFailed) as failed:
        await run_renter(url, new_key())  # never added
    assert failed.value.message == (
        "renter-1: listing capacity: HTTP 401 unauthenticated: unknown API key"
    )


async def test_an_api_that_is_not_there_is_an_error_not_a_hang() -> None:
    api = RenterApi("http://127.0.0.1:9", new_key(), timeout_s=2.0)  # the discard port
    try:
        with pytest.raises(RenterApiError) as failed:
            await api.json("GET", "/capacity")
    finally:
        await api.aclose()
    assert failed.value.api_code == "unreachable"
