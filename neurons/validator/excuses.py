"""Watching how often each miner is excused.

An excuse (busy, leased, link failure) is never scored against a miner, but the reason behind it
is partly the miner's own claim: a miner could answer ``unavailable`` whenever its worker cannot
do the work. The validator therefore keeps, per miner, the outcomes of its last challenges and
says so when the excused share crosses ``challenge.excused_warning_rate``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from byteleap.errors import Outcome

#: outcomes remembered per miner
WINDOW = 50
#: no rate is judged on fewer outcomes than this
MIN_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class ExcuseAlert:
    """The excused share of a miner just crossed the threshold (upwards)."""

    miner_hotkey: str
    rate: float
    excused: int
    outcomes: int


class ExcuseWatch:
    def __init__(
        self, threshold: float, *, window: int = WINDOW, min_samples: int = MIN_SAMPLES
    ) -> None:
        self.threshold = threshold
        self.window = window
        self.min_samples = min_samples
        self._recent: dict[str, deque[bool]] = {}
        self._alerting: set[str] = set()

    def rate(self, miner_hotkey: str) -> float:
        """Excused share of the miner's remembered outcomes (0 when there are none)."""
        recent = self._recent.get(miner_hotkey)
        return sum(recent) / len(recent) if recent else 0.0

    def record(self, miner_hotkey: str, outcome: Outcome) -> ExcuseAlert | None:
        """Remember one outcome; an alert when the miner's rate has just become too high."""
        recent = self._recent.setdefault(miner_hotkey, deque(maxlen=self.window))
        recent.append(outcome is Outcome.EXCUSED)
        if len(recent) < self.min_samples:
            return None
        rate = self.rate(miner_hotkey)
        if rate <= self.threshold:
            self._alerting.discard(miner_hotkey)
            return None
        if miner_hotkey in self._alerting:
            return None
        self._alerting.add(miner_hotkey)
        return ExcuseAlert(miner_hotkey, rate, sum(recent), len(recent))


__all__ = ["ExcuseAlert", "ExcuseWatch"]
