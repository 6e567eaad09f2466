"""A scratch PostgreSQL database for a benchmark: created under a random name, dropped (forced)
when done."""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.engine import make_url


async def scratch_database(dsn: str) -> str:
    name = f"byteleap_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(dsn: str, name: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def is_local(url: str) -> bool:
    return make_url(url).host in (None, "", "localhost", "127.0.0.1", "::1")
