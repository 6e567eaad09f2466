"""``byteleap devnet``: ``--cheat MODE`` (repeatable), ``--cheaters`` and ``--validators`` reach
the plan."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import devnet.command as command
from devnet.cheat_modes import CheatMode
from devnet.cli import app
from devnet.specs import DevnetOptions


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[DevnetOptions]:
    """The options ``byteleap devnet`` would run with (nothing is started)."""
    seen: list[DevnetOptions] = []

    def run_command(options: DevnetOptions, **_: Any) -> int:
        seen.append(options)
        return 0

    monkeypatch.setattr(command, "run_command", run_command)
    return seen


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["devnet", *args])


def test_without_cheat_options_two_fraud_cheaters_run(asked: list[DevnetOptions]) -> None:
    assert invoke().exit_code == 0
    (options,) = asked
    assert options.cheaters == 2 and options.cheats == ()


def test_each_cheat_option_adds_a_cheater_in_that_mode(asked: list[DevnetOptions]) -> None:
    result = invoke("--cheat", "sybil", "--cheat", "cpu_as_gpu", "--cheat", "ambiguous_model")
    assert result.exit_code == 0, result.output
    (options,) = asked
    assert options.cheats == (CheatMode.SYBIL, CheatMode.CPU_AS_GPU, CheatMode.AMBIGUOUS_MODEL)
    assert options.cheaters == 0  # --cheat alone: only the miners it asks for


def test_cheaters_and_cheat_combine(asked: list[DevnetOptions]) -> None:
    assert invoke("--cheaters", "4", "--cheat", "sybil", "--cheat", "sybil").exit_code == 0
    (options,) = asked
    assert options.cheaters == 4 and options.cheats == (CheatMode.SYBIL, CheatMode.SYBIL)
    assert invoke("--cheaters", "0").exit_code == 0
    assert asked[-1].cheaters == 0 and asked[-1].cheats == ()


def test_an_unknown_mode_is_refused_with_the_choices(asked: list[DevnetOptions]) -> None:
    result = invoke("--cheat", "bribe_the_validator")
    assert result.exit_code == 2
    assert "sybil" in result.output and "cpu_as_gpu" in result.output
    assert asked == []


def test_validators_reach_the_options_and_default_to_one(asked: list[DevnetOptions]) -> None:
    assert invoke().exit_code == 0
    assert asked[-1].validators == 1
    result = invoke("--validators", "2", "--cheat", "late_excuse", "--cheat", "phantom_busy")
    assert result.exit_code == 0, result.output
    assert asked[-1].validators == 2
    assert asked[-1].cheats == (CheatMode.LATE_EXCUSE, CheatMode.PHANTOM_BUSY)
    assert invoke("--cheat", "receipt_mint").exit_code == 0
    last = asked[-1]  # a new name: mypy keeps the narrowing of asked[-1].cheats from above
    assert last.cheats == (CheatMode.RECEIPT_MINT,) and last.validators == 1


def test_too_many_or_no_validators_are_refused(asked: list[DevnetOptions]) -> None:
    count = len(asked)
    result = invoke("--validators", "5")
    assert result.exit_code == 2 and "between 1 and 4" in result.output
    assert invoke("--validators", "0").exit_code == 2
    assert len(asked) == count
