"""What every section of docs/benchmarks.md is built with: the prose templates, Markdown tables,
number formats and a target's verdict."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any

from bench.results import TargetVerdict

TEMPLATES = Path(__file__).parent / "templates"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


Figures = dict[str, Any]


def template(name: str, **values: str) -> str:
    return Template((TEMPLATES / f"{name}.md").read_text()).substitute(values).strip() + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def sci(value: float) -> str:
    """``1.03 × 10⁷``: the asymmetry ratios span orders of magnitude."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa} × 10{str(int(exponent)).translate(_SUPERSCRIPT)}"


def judge(ok: bool) -> TargetVerdict:
    return TargetVerdict.PASS if ok else TargetVerdict.FAIL
