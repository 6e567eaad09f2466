"""The validator's database in a process of its own, for the work too heavy for the daemon's
event loop (SPEC 5.5): :class:`BackgroundStore`.

On PostgreSQL the daemon (``neurons.validator.daemon``) runs here what is CPU-heavy: decoding and
recording each inventory, the ``workers()`` read after a poll round (it resolves GPU ownership),
and the whole scoring pass. SQLite keeps one connection per database, so it has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.context
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from byteleap.errors import ByteLeapError, StorageError
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store import SqlStore, create_engine
from neurons.validator.store.records import ValidatorStore
from neurons.validator.verification import pool_context

T = TypeVar("T")

#: the background process's store and event loop (set in that process by ``_start_child``)
_child: tuple[asyncio.AbstractEventLoop, ValidatorStore] | None = None


class OffLoop(Protocol):
    """Somewhere away from this process's event loop to run store work (the daemon's
    ``BackgroundStore``: a process with an event loop and connections of its own)."""

    async def run(self, job: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """``await job(store, *args)`` there, on its own store: ``job`` is a module-level
        coroutine function and ``args`` are picklable."""
        ...


@dataclass(frozen=True, slots=True)
class _Failed:
    """A job's ``ByteLeapError``, as it travels back from the background process (an error
    class with its own constructor arguments would not unpickle)."""

    code: str
    message: str


class BackgroundError(ByteLeapError):
    """A ``ByteLeapError`` raised in the background process: its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _start_child(url: str, pool_size: int) -> None:
    """The background process's initializer: its event loop and its own store."""
    global _child
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _child = (loop, SqlStore(create_engine(url, pool_size=pool_size)))


def _run_in_child(job: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T | _Failed:
    """Run ``await job(store, *args)`` to completion on the background process's loop."""
    assert _child is not None, "the background store's initializer did not run"
    loop, store = _child
    try:
        return loop.run_until_complete(job(store, *args))
    except ByteLeapError as exc:
        return _Failed(exc.code, exc.message)


async def _close_child_store(store: ValidatorStore) -> None:
    await store.close()


async def worker_counts(store: ValidatorStore, now: datetime) -> tuple[int, int]:
    """Workers known and online (for the gauges after a poll round): ``store.workers(now)``,
    which resolves GPU ownership over every listed GPU, reduced to two numbers."""
    workers = await store.workers(now)
    return len(workers), sum(1 for w in workers if w.online)


class BackgroundStore:
    """The validator's database, in a process of its own, for the work too heavy for the
    daemon's event loop (SPEC 5.5).

    Decoding and recording an inventory at the limits, the ``workers()`` read after a poll round
    and a whole scoring pass each keep a Python thread busy for hundreds of milliseconds to
    seconds. In the daemon's process even a worker thread would stall the loop: it holds the GIL
    (the loop waits up to a switch interval at every wake-up, and longer when the OS deschedules
    the holder), and its hundreds of thousands of short-lived objects make the cyclic collector
    stop every thread for 50 to 400 ms. Here a job (a module-level coroutine function taking the
    store first, with picklable arguments) runs in the child, on its own event loop and its own
    pool of ``pool_size`` connections to the same database, and only its result comes back.

    A job's ``ByteLeapError`` comes back as a :class:`BackgroundError` with its code and message
    (``StorageError`` as itself); a process that dies is replaced at the next job, and the job it
    was running fails with ``StorageError``. The process starts with the first job.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int,
        metrics: ValidatorMetrics,
        context: multiprocessing.context.BaseContext | None = None,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.metrics = metrics
        self.context = context or pool_context()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    @classmethod
    def for_store(
        cls, store: ValidatorStore, *, pool_size: int, metrics: ValidatorMetrics
    ) -> BackgroundStore | None:
        """One for ``store`` when it is a PostgreSQL :class:`SqlStore`, else None (SQLite keeps
        one connection per database, and a test's store has no second door)."""
        if not isinstance(store, SqlStore) or store.dialect != "postgresql":
            return None
        url = store.engine.url.render_as_string(hide_password=False)
        return cls(url, pool_size=pool_size, metrics=metrics)

    def _executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise StorageError("the background store is closed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=self.context,
                initializer=_start_child,
                initargs=(self.url, self.pool_size),
            )
        return self._pool

    async def run(self, job: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """``await job(store, *args)`` in the background process; its result."""
        pool = self._executor()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            outcome = await loop.run_in_executor(pool, _run_in_child, job, args)
        except BrokenProcessPool:
            if self._pool is pool:  # the first job to notice replaces the process
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise StorageError("the background store's process died") from None
        finally:
            self.metrics.db_seconds.labels(operation=f"background.{job.__name__}").observe(
                time.perf_counter() - started
            )
        if isinstance(outcome, _Failed):
            if outcome.code == StorageError.code:
                raise StorageError(outcome.message)
            raise BackgroundError(outcome.code, outcome.message)
        return outcome

    async def aclose(self) -> None:
        """Close the process's connections and stop it."""
        pool, self._pool = self._pool, None
        self._closed = True
        if pool is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            await loop.run_in_executor(pool, _run_in_child, _close_child_store, ())
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


__all__ = ["BackgroundError", "BackgroundStore", "OffLoop", "worker_counts"]
