"""Running the Alembic migrations from code: ``byteleap-validator db upgrade`` and the automatic
upgrade at start-up (``database.auto_upgrade``) both come here.

The migration scripts live in the top-level ``migrations`` directory, which is installed with
the package; :func:`migrations_dir` finds it next to the ``neurons`` package (a source checkout,
an editable install and a wheel all put it there), never through the current directory.

Alembic's commands are synchronous. The async functions here hand Alembic a connection of the
store's own engine (``Config.attributes["connection"]``), so an in-memory SQLite database or a
running daemon's pool is migrated in place; the sync wrappers are for the command line and must
not be called from a running event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from byteleap.errors import StorageError
from neurons.validator.store.engine import create_engine

log = structlog.get_logger(__name__)
T = TypeVar("T")


def migrations_dir() -> Path:
    """The directory holding ``env.py`` and ``versions/``."""
    import neurons

    beside = Path(neurons.__file__).resolve().parent.parent / "migrations"
    if (beside / "env.py").is_file():
        return beside
    spec = importlib.util.find_spec("migrations")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / "env.py").is_file():
                return Path(location)
    raise StorageError(
        f"the Alembic migrations are missing (looked in {beside}); reinstall byteleap"
    )


def alembic_config(*, url: str | URL | None = None, connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for our migrations, bound to ``connection`` or ``url`` if given
    (otherwise ``env.py`` reads the URL from the validator's configuration)."""
    config = Config()  # no ini file: env.py leaves the application's logging alone
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    if url is not None:
        config.attributes["url"] = url if isinstance(url, str) else url.render_as_string(False)
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "migrations/versions holds no revision"
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def _run(engine: AsyncEngine, what: str, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` on one connection of ``engine`` in a transaction; SQLite's foreign keys are
    switched back on afterwards (``env.py`` switches them off so batch migrations, which copy
    tables, do not cascade)."""
    try:
        async with engine.connect() as conn:
            result = await conn.run_sync(fn)
            await conn.commit()
            if conn.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()
            return result
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None for an empty database."""
    return await _run(engine, "reading the schema revision", _current)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Upgrade the database behind ``engine`` to ``revision``; returns the revision it is at."""

    def run(connection: Connection) -> str | None:
        before = _current(connection)
        command.upgrade(alembic_config(connection=connection), revision)
        after = _current(connection)
        if after != before:
            log.info("db.upgraded", before=before, after=after)
        return after

    return await _run(engine, f"upgrading the database to {revision}", run)


async def downgrade_engine(engine: AsyncEngine, revision: str) -> str | None:
    """Downgrade to ``revision`` (``"base"`` empties the database); returns where it is."""

    def run(connection: Connection) -> str | None:
        before = _current(connection)
        command.downgrade(alembic_config(connection=connection), revision)
        after = _current(connection)
        log.info("db.downgraded", before=before, after=after)
        return after

    return await _run(engine, f"downgrading the database to {revision}", run)


async def require_head(engine: AsyncEngine) -> None:
    """Raise :class:`StorageError` unless the database is at the code's head revision."""
    at = await current_revision(engine)
    head = head_revision()
    if at != head:
        state = "empty" if at is None else f"at revision {at}"
        raise StorageError(
            f"the database is {state} but this version of byteleap needs revision {head}: run "
            "'byteleap-validator db upgrade' (or set database.auto_upgrade: true)"
        )


def _with_engine(url: str | URL, fn: Callable[[AsyncEngine], Awaitable[T]], **kw: Any) -> T:
    async def go() -> T:
        engine = create_engine(url, pool_size=1, **kw)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def upgrade(url: str | URL, revision: str = "head") -> str | None:
    """Upgrade the database at ``url`` (command line; not inside an event loop)."""
    return _with_engine(url, lambda engine: upgrade_engine(engine, revision))


def downgrade(url: str | URL, revision: str) -> str | None:
    """Downgrade the database at ``url`` (command line; not inside an event loop)."""
    return _with_engine(url, lambda engine: downgrade_engine(engine, revision))


def current(url: str | URL) -> str | None:
    """The revision of the database at ``url`` (command line; not inside an event loop)."""
    return _with_engine(url, current_revision)


__all__ = [
    "alembic_config",
    "current",
    "current_revision",
    "downgrade",
    "downgrade_engine",
    "head_revision",
    "migrations_dir",
    "require_head",
    "upgrade",
    "upgrade_engine",
]
