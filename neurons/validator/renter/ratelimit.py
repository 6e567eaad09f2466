"""Per-key request rate limits: token buckets in memory.

Each API key has a bucket of ``burst`` tokens that refills at ``per_minute / 60`` tokens a
second; a request takes one token, and a request that finds the bucket empty is answered 429
with ``Retry-After`` (whole seconds until a token is back). Buckets live in this process only:
limits reset when the validator restarts, which is harmless for limits meant to stop a runaway
client. The table is bounded: when it is full, the buckets that have refilled completely (they
carry no information) are dropped, then the oldest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RenterTokenBuckets:
    """``take(key)`` -> seconds to wait (0.0: allowed, and a token was taken)."""

    def __init__(
        self,
        per_minute: int,
        burst: int,
        clock: Callable[[], float],
        *,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute < 1 or burst < 1:
            raise ValueError("per_minute and burst must be at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room()
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> int:
        """``Retry-After`` header value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))

    def _make_room(self) -> None:
        if len(self._buckets) < self._max_keys:
            return
        now = self._clock()
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]


__all__ = ["RenterTokenBuckets"]
