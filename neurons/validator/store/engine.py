"""One async engine from one URL, tuned for the engine behind it.

- **PostgreSQL** (asyncpg): a pool of ``pool_size`` connections, checked before use so that a
  connection the server dropped is replaced instead of failing the next query.
- **SQLite** (aiosqlite): the parent directory is created; every connection runs in WAL mode
  (readers such as ``byteleap-validator scores`` do not block the daemon), with foreign keys on
  and a busy timeout. The daemon holds a single connection: SQLite serialises writers anyway,
  and one connection keeps the process from ever waiting on its own lock.

Plain ``postgresql://`` and ``sqlite://`` URLs are accepted and given the async driver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

#: seconds a SQLite connection waits for another process's write lock before failing
DEFAULT_SQLITE_BUSY_TIMEOUT_S = 5.0

_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def async_url(url: str | URL) -> URL:
    """``url`` as an SQLAlchemy URL with an async driver (asyncpg or aiosqlite)."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is not None:
        parsed = parsed.set(drivername=driver)
    if parsed.drivername not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ValueError(
            f"unsupported database driver {parsed.drivername!r}: use postgresql+asyncpg://... "
            "or sqlite+aiosqlite:///path"
        )
    return parsed


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    sqlite_busy_timeout_s: float = DEFAULT_SQLITE_BUSY_TIMEOUT_S,
    echo: bool = False,
    **kwargs: Any,
) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url``; extra keyword arguments go to SQLAlchemy."""
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, sqlite_busy_timeout_s, echo=echo, **kwargs)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if "poolclass" not in kwargs:
        options.update(pool_size=pool_size, max_overflow=0)
    options.update(kwargs)
    return create_async_engine(parsed, echo=echo, **options)


def _sqlite_engine(url: URL, busy_timeout_s: float, *, echo: bool, **kwargs: Any) -> AsyncEngine:
    options: dict[str, Any]
    if "poolclass" in kwargs:
        options = {}
    elif is_memory_sqlite(url):
        # every connection to :memory: is a new empty database: share exactly one
        options = {"poolclass": StaticPool}
    else:
        options = {"pool_size": 1, "max_overflow": 0}
    if not is_memory_sqlite(url):
        assert url.database is not None
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    options["connect_args"] = {"timeout": busy_timeout_s}
    options.update(kwargs)
    engine = create_async_engine(url, echo=echo, **options)
    busy_ms = max(0, round(busy_timeout_s * 1000))

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return engine


__all__ = ["DEFAULT_SQLITE_BUSY_TIMEOUT_S", "async_url", "create_engine", "is_memory_sqlite"]
