"""The epoch benchmark's cost meter: wall seconds, this process's CPU seconds and the PostgreSQL
backends' CPU seconds of a measured block."""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
import psutil


@dataclass
class Cost:
    """Wall seconds, this process's CPU seconds and the database backends' CPU seconds."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    db_cpu_s: float | None = None


class DbCpu:
    """CPU seconds of the PostgreSQL backends serving the scratch database (psutil), when the
    server runs on this machine; ``None`` otherwise."""

    def __init__(self, admin: asyncpg.Connection | None, database: str | None) -> None:
        self.admin, self.database = admin, database

    async def sample(self) -> dict[int, float] | None:
        if self.admin is None:
            return None
        pids = await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
        )
        out: dict[int, float] = {}
        for row in pids:
            try:
                times = psutil.Process(row["pid"]).cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
            out[row["pid"]] = times.user + times.system
        return out

    @staticmethod
    def spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
        if before is None or after is None:
            return None
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


class Meter:
    """``async with meter.measure() as cost:`` fills ``cost`` when the block ends."""

    def __init__(self, db: DbCpu) -> None:
        self.db = db

    def measure(self) -> _Measured:
        return _Measured(self.db)


class _Measured:
    def __init__(self, db: DbCpu) -> None:
        self.db, self.cost = db, Cost()

    async def __aenter__(self) -> Cost:
        self._db = await self.db.sample()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self.cost

    async def __aexit__(self, *exc: object) -> None:
        self.cost.wall_s = time.perf_counter() - self._wall
        self.cost.cpu_s = time.process_time() - self._cpu
        self.cost.db_cpu_s = DbCpu.spent(self._db, await self.db.sample())
