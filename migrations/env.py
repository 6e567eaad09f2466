"""Alembic environment of the validator's database.

Where the database comes from, first match wins:

1. ``config.attributes["connection"]``: a live connection handed over by
   :mod:`neurons.validator.store.migrate` (the daemon's auto-upgrade, ``db upgrade``, the tests);
2. ``config.attributes["url"]`` or ``alembic -x url=...``;
3. the validator's configuration (``BYTELEAP_CONFIG`` and the ``BYTELEAP_*`` variables), exactly
   as the daemon would read it.

SQLite cannot alter most things in place, so its migrations run in batch mode (copy the table,
swap it in) with foreign keys switched off for the duration.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from neurons.validator.store.schema import metadata

config = context.config
if config.config_file_name is not None:  # the alembic command line; code keeps its own logging
    fileConfig(config.config_file_name)


def database_url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if url:
        return str(url)
    from byteleap.config import ValidatorConfig, load_config

    validator = load_config(ValidatorConfig, os.environ.get("BYTELEAP_CONFIG") or None)
    return validator.database.resolve_url()


def configure(connection: Connection | None = None, url: str | None = None) -> None:
    dialect = connection.dialect.name if connection is not None else (url or "").split(":")[0]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        render_as_batch=dialect.startswith("sqlite"),
        compare_type=True,
        literal_binds=connection is None,
        dialect_opts={"paramstyle": "named"} if connection is None else {},
    )


def run_on(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:  # a no-op inside a transaction, so it goes first; the caller turns it back on
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    from sqlalchemy.pool import NullPool

    from neurons.validator.store.engine import create_engine

    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    configure(url=database_url())
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run_on(connection)
else:
    asyncio.run(run_on_url(database_url()))
