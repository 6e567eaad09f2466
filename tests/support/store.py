"""Fixtures for the validator-store tests: the same test on SQLite and on PostgreSQL.

``database_url`` is an empty database of each engine: a file in the test's temp directory, or a
PostgreSQL database created with a random name for the one test and dropped (with its
connections) afterwards. ``store`` is a :class:`SqlStore` migrated to head on it. To use them,
import ``database_url_fixture`` (and ``store_fixture``) into the test module.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from neurons.validator.store import SqlStore, open_store

T = TypeVar("T")

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in another thread, so that a sync fixture
    or test never touches the event loop pytest-asyncio gives async tests."""

    async def main() -> T:
        return await fn()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def postgres_url(dsn: str, database: str) -> str:
    """The SQLAlchemy asyncpg URL of ``database`` on the server of the libpq ``dsn``."""
    url = make_url(dsn).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


def create_scratch_database(dsn: str) -> str:
    """Create an empty database with a random name; returns its name."""
    name = f"byteleap_test_{uuid.uuid4().hex[:16]}"

    async def create() -> None:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    run_async(create)
    return name


def drop_scratch_database(dsn: str, name: str) -> None:
    async def drop() -> None:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_async(drop)


@pytest.fixture(name="database_url", params=ENGINES)
def database_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once per engine."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'validator.db'}"
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    name = create_scratch_database(dsn)
    try:
        yield postgres_url(dsn, name)
    finally:
        drop_scratch_database(dsn, name)


@pytest.fixture(name="store")
async def store_fixture(database_url: str) -> AsyncIterator[SqlStore]:
    """A store on a fresh database migrated to head."""
    opened = await open_store(database_url, auto_upgrade=True)
    try:
        yield opened
    finally:
        await opened.close()
