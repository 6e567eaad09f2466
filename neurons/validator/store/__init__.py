"""The validator's storage: the records and interface (:mod:`.records`), their SQLAlchemy
implementation (:class:`SqlStore`, PostgreSQL or SQLite) and the Alembic migrations.

Typical use at start-up::

    store = await open_store_from_config(config)      # upgrades the schema if auto_upgrade
    try:
        ...
    finally:
        await store.close()

``byteleap-validator db upgrade`` calls :func:`upgrade` with the configured URL. See
``docs/storage.md`` for the schema, retention and what survives a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurons.validator.store.engine import DEFAULT_SQLITE_BUSY_TIMEOUT_S, create_engine
from neurons.validator.store.migrate import (
    current,
    current_revision,
    downgrade,
    downgrade_engine,
    head_revision,
    migrations_dir,
    require_head,
    upgrade,
    upgrade_engine,
)
from neurons.validator.store.records import (
    ChallengeOpen,
    ChallengeRow,
    ChallengeStatus,
    ChallengeVerdict,
    GpuSnapshot,
    MinerRow,
    MinerTally,
    ScoringInputs,
    ValidatorStore,
    VerifiedSample,
    WeightStatus,
    WeightSubmission,
    WorkerRow,
    WorkerSnapshot,
    WorkerState,
)
from neurons.validator.store.sql_store import SqlStore

if TYPE_CHECKING:
    from byteleap.config import ValidatorConfig


async def open_store(
    url: str,
    *,
    pool_size: int = 10,
    auto_upgrade: bool = False,
    sqlite_busy_timeout_s: float = DEFAULT_SQLITE_BUSY_TIMEOUT_S,
) -> SqlStore:
    """Connect to ``url`` and return the store.

    With ``auto_upgrade`` pending migrations are applied first; without it a database that is
    not at the code's head revision raises :class:`~byteleap.errors.StorageError` naming the
    command that fixes it. Either way nothing is created with ``create_all``.
    """
    engine = create_engine(url, pool_size=pool_size, sqlite_busy_timeout_s=sqlite_busy_timeout_s)
    try:
        if auto_upgrade:
            await upgrade_engine(engine)
        else:
            await require_head(engine)
    except BaseException:
        await engine.dispose()
        raise
    return SqlStore(engine)


async def open_store_from_config(config: ValidatorConfig) -> SqlStore:
    """:func:`open_store` with the ``database`` section of the validator's configuration."""
    database = config.database
    return await open_store(
        database.resolve_url(), pool_size=database.pool_size, auto_upgrade=database.auto_upgrade
    )


__all__ = [
    "ChallengeOpen",
    "ChallengeRow",
    "ChallengeStatus",
    "ChallengeVerdict",
    "GpuSnapshot",
    "MinerRow",
    "MinerTally",
    "ScoringInputs",
    "SqlStore",
    "ValidatorStore",
    "VerifiedSample",
    "WeightStatus",
    "WeightSubmission",
    "WorkerRow",
    "WorkerSnapshot",
    "WorkerState",
    "create_engine",
    "current",
    "current_revision",
    "downgrade",
    "downgrade_engine",
    "head_revision",
    "migrations_dir",
    "open_store",
    "open_store_from_config",
    "require_head",
    "upgrade",
    "upgrade_engine",
]
