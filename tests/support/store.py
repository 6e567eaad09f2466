"""Databases for the validator-store tests: the same test on SQLite and on PostgreSQL.

A PostgreSQL test gets a database of its own: :func:`create_scratch_database` makes one with a
random name on the suite's server (``postgres_dsn``), and :func:`drop_scratch_database` drops
it, with its connections, afterwards; so tests never share one, serially or under pytest-xdist.
The ``database_url`` and ``store`` fixtures (``tests/integration/conftest.py``) are built on
these: an empty database once per engine in :data:`ENGINES`, and a store migrated to head on it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

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
