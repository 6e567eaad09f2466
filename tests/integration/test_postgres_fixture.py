"""The Postgres the suite runs against is real, reachable, and a server we can write to."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]

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


async def test_the_embedded_server_starts_once_is_shared_by_processes_and_stops() -> None:
    """Without BYTELEAP_TEST_DATABASE_URL the run's server lives in one home directory: the first
    process that needs it starts it, every other process (an xdist worker) connects to the same
    one, and stopping it at the end removes it with its directory."""
    home = postgres.new_home()
    try:
        first = await asyncio.to_thread(postgres.dsn, home)
        assert await asyncio.to_thread(postgres.dsn, home) == first
        other = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", f"from pathlib import Path\nfrom tests.support import postgres\n"
             f"print(postgres.dsn(Path({str(home)!r})))"],
            capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
        )  # fmt: skip
        assert other.stdout.strip() == first
        conn = await asyncpg.connect(first)
        try:
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(postgres.stop, home)
    assert not home.exists()
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(first, timeout=5)
