"""The Postgres the suite runs against is real, reachable, and a server we can write to."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.postgres


async def test_postgres_is_a_real_writable_server(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        version = await conn.fetchval("SHOW server_version_num")
        assert int(version) >= 120000
        table = f"probe_{uuid.uuid4().hex[:12]}"
        await conn.execute(f"CREATE TEMP TABLE {table} (v bigint)")
        await conn.execute(f"INSERT INTO {table} VALUES (1), (41)")
        assert await conn.fetchval(f"SELECT sum(v) FROM {table}") == 42
    finally:
        await conn.close()
