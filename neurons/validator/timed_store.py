"""A :class:`ValidatorStore` wrapper that times every call for the DB-latency metrics."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from byteleap.errors import StorageError
from neurons.validator.metrics import ValidatorMetrics
from neurons.validator.store.records import ValidatorStore


class TimedStore:
    """Forwards every coroutine method to ``store``, observing its duration per operation and
    counting :class:`StorageError`\\ s. Behaves as a ``ValidatorStore``."""

    def __init__(self, store: ValidatorStore, metrics: ValidatorMetrics) -> None:
        self._store = store
        self._metrics = metrics

    @property
    def inner(self) -> ValidatorStore:
        return self._store

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name.startswith("_") or not callable(target):
            return target
        return self._timed(name, target)

    def _timed(
        self, name: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        histogram = self._metrics.db_seconds.labels(operation=name)
        errors = self._metrics.db_errors.labels(operation=name)

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except StorageError:
                errors.inc()
                raise
            finally:
                histogram.observe(time.perf_counter() - started)

        return call


__all__ = ["TimedStore"]
