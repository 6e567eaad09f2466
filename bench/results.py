"""What one benchmark run left behind, and how a target judged it: the runner's records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class BenchStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUN = "not run"


@dataclass(frozen=True)
class BenchResult:
    """One script's run: its JSON figures when it succeeded, else why there are none."""

    name: str
    status: BenchStatus
    seconds: float
    figures: dict[str, Any] | None = None
    detail: str = ""

    def summary(self) -> str:
        """The one line that stands in for a benchmark's tables when it has no figures."""
        if self.status is BenchStatus.NOT_RUN:
            return f"**Not run: {self.detail}.**"
        if self.status is BenchStatus.FAILED:
            return f"**Failed** after {self.seconds:.0f} s: {self.detail}"
        return f"Ran in {self.seconds:.0f} s."


class TargetVerdict(StrEnum):
    PASS = "pass"
    FAIL = "**FAIL**"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Target:
    bench: str
    goal: str
    measured: str
    verdict: TargetVerdict
    note: str = ""
