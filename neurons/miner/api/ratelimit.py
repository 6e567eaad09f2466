"""Token buckets for the miner's validator API: one per caller hotkey (or client IP)."""

from __future__ import annotations

from collections.abc import Callable


class TokenBuckets:
    """One token bucket per key (caller hotkey or client IP): ``rate`` tokens/s, ``burst`` max."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], *, max_keys: int = 10_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False when it is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            self._evict(now)
        self._buckets[key] = (tokens - 1.0, now)
        return True

    def _evict(self, now: float) -> None:
        # buckets that have refilled completely carry no information
        full_after = self.burst / self.rate
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


__all__ = ["TokenBuckets"]
