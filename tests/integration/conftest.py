"""Fixtures shared by the integration tests.

``database_url`` and ``store``: an empty validator database once per engine (SQLite in the
test's temp directory, and a PostgreSQL database of the test's own on the suite's server), and a
``SqlStore`` migrated to head on it. ``ids``: the fixed-seed wallets of the miner-API tests, once
per module. ``net``: the devchain of the validator-rounds tests in the test's temp directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from neurons.validator.store import SqlStore, open_store
from tests.support.miner_api import Identities, identities
from tests.support.rounds import Net, new_net
from tests.support.store import (
    ENGINES,
    create_scratch_database,
    drop_scratch_database,
    postgres_url,
)


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
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


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A store on a fresh database migrated to head."""
    opened = await open_store(database_url, auto_upgrade=True)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="module")
def ids(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    """The miner, two validators and an outsider, with hotkeys seeded by their names."""
    return identities(tmp_path_factory.mktemp("wallets"))


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A devchain with a registered validator in the test's temp directory."""
    net = new_net(tmp_path)
    try:
        yield net
    finally:
        net.chain.close()
