"""The Alembic migrations, on a real SQLite file and a real PostgreSQL database.

They are the only way the schema comes into being (SPEC 7), so they must build it from nothing,
take it back down, build it again, and agree with the models the store queries through.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from byteleap.errors import StorageError
from neurons.validator.store import (
    create_engine,
    current,
    current_revision,
    downgrade_engine,
    head_revision,
    migrations_dir,
    open_store,
    upgrade,
    upgrade_engine,
)
from neurons.validator.store.migrate import alembic_config
from neurons.validator.store.schema import metadata

SCHEMA_TABLES = {
    "miners",
    "workers",
    "gpus",
    "availability",
    "challenges",
    "weight_submissions",
    "renters",
    "leases",
    "lease_receipts",
    "receipt_cursors",
}


def _tables(connection: Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def test_the_models_declare_the_tables_the_spec_asks_for() -> None:
    assert set(metadata.tables) == SCHEMA_TABLES


async def test_empty_to_head_to_base_to_head(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert await current_revision(engine) is None
        assert await upgrade_engine(engine) == head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == SCHEMA_TABLES | {"alembic_version"}

        assert await downgrade_engine(engine, "base") is None
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}

        assert await upgrade_engine(engine) == head_revision()
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == SCHEMA_TABLES | {"alembic_version"}
    finally:
        await engine.dispose()


async def test_models_and_migrations_agree(database_url: str) -> None:
    """``alembic check``: autogenerate finds nothing to add, drop or alter after upgrading."""
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_an_empty_database_is_a_difference_the_check_would_see(database_url: str) -> None:
    """The comparison above is not vacuous: before the upgrade it reports every table."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
        added = {d[1].name for d in diff if isinstance(d, tuple) and d[0] == "add_table"}
        assert added == SCHEMA_TABLES
    finally:
        await engine.dispose()


async def test_upgrading_twice_changes_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine)
        assert await upgrade_engine(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_open_store_refuses_a_database_behind_the_code(database_url: str) -> None:
    with pytest.raises(StorageError, match="db upgrade"):
        await open_store(database_url)
    store = await open_store(database_url, auto_upgrade=True)
    try:
        assert await store.ping() >= 0.0
    finally:
        await store.close()
    reopened = await open_store(database_url)  # at head now: no upgrade needed
    await reopened.close()


def test_command_line_helpers_upgrade_and_report(database_url: str) -> None:
    """What ``byteleap-validator db upgrade`` calls: synchronous, outside any event loop."""
    assert current(database_url) is None
    assert upgrade(database_url) == head_revision()
    assert current(database_url) == head_revision()


def test_env_reads_the_url_from_the_validator_config(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain ``alembic`` with no URL given: env.py takes it from the validator's configuration
    (here ``BYTELEAP_DATABASE__URL``), exactly as the daemon would."""
    monkeypatch.delenv("BYTELEAP_CONFIG", raising=False)
    monkeypatch.setenv("BYTELEAP_DATABASE__URL", database_url)
    command.upgrade(alembic_config(), "head")
    assert current(database_url) == head_revision()


def test_offline_mode_renders_the_sql_for_review() -> None:
    config = alembic_config(url="postgresql+asyncpg://byteleap@db.invalid/byteleap")
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    assert "CREATE TABLE miners" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql
    assert "CREATE INDEX ix_availability_bucket_seconds_period" in sql


def test_migrations_are_found_without_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    directory = migrations_dir()
    assert (directory / "env.py").is_file()
    assert (directory / "versions" / "0001_initial.py").is_file()
    assert head_revision() == "0003"
