"""``daemonkit.signals``: a real process gets SIGTERM (or SIGINT) once, or twice.

The first signal starts a graceful stop, bounded by the drain time; the second exits at once with
``128 + signum``, even while the event loop is blocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemonkit.signals import STOP_SIGNALS, Shutdown

DAEMON = textwrap.dedent(
    """
    import asyncio, sys, time

    from daemonkit.logs import configure_logging
    from daemonkit.signals import run_daemon

    drain, after_stop = float(sys.argv[1]), sys.argv[2]
    configure_logging("INFO", "json")


    def say(word: str) -> None:
        print(word, flush=True)


    async def main(stop: asyncio.Event) -> None:
        say("ready")
        try:
            await stop.wait()
            say("stopping")
            if after_stop == "hang":  # a drain that never ends by itself
                await asyncio.sleep(3600)
            elif after_stop == "block":  # a drain that blocks the event loop
                time.sleep(3600)
            say("drained")
        finally:
            say("cleaned_up")


    run_daemon(main, drain_s=drain, on_stop=lambda: say("on_stop"))
    say("exited")
    """
)


class Daemon:
    def __init__(self, tmp_path: Path, drain_s: float, after_stop: str) -> None:
        script = tmp_path / "daemon.py"
        script.write_text(DAEMON)
        self.stderr_path = tmp_path / "stderr.log"
        self.stderr_file = self.stderr_path.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, str(script), str(drain_s), after_stop],
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.lines: list[str] = []

    def expect(self, word: str, timeout: float = 30.0) -> None:
        """Read stdout until ``word`` is printed."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.popen.stdout.readline()
            if not line:
                break
            self.lines.append(line.strip())
            if line.strip() == word:
                return
        raise AssertionError(f"{word!r} never came; got {self.lines}, stderr: {self.stderr()}")

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    def finish(self, timeout: float = 30.0) -> tuple[int, list[str]]:
        """Wait for the exit; the exit status and every stdout line."""
        out, _ = self.popen.communicate(timeout=timeout)
        return self.popen.returncode, self.lines + out.split()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def events(self) -> list[str]:
        return [
            json.loads(line)["event"] for line in self.stderr().splitlines() if line.startswith("{")
        ]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.popen.poll() is None:
            daemon.popen.kill()
            daemon.popen.wait(10)
        if daemon.popen.stdout is not None:
            daemon.popen.stdout.close()
        daemon.stderr_file.close()


def start(daemons: list[Daemon], tmp_path: Path, drain_s: float, after_stop: str) -> Daemon:
    daemon = Daemon(tmp_path, drain_s, after_stop)
    daemons.append(daemon)
    daemon.expect("ready")
    return daemon


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_one_signal_stops_gracefully_with_status_0(
    daemons: list[Daemon], tmp_path: Path, sig: int
) -> None:
    daemon = start(daemons, tmp_path, drain_s=30, after_stop="return")
    daemon.signal(sig)
    code, lines = daemon.finish()
    assert code == 0, daemon.stderr()
    assert lines[lines.index("ready") :] == [
        "ready",
        "on_stop",
        "stopping",
        "drained",
        "cleaned_up",
        "exited",
    ]
    assert "stop_requested" in daemon.events()


def test_a_drain_that_runs_over_is_cancelled_after_drain_s(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    daemon = start(daemons, tmp_path, drain_s=0.5, after_stop="hang")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code, lines = daemon.finish()
    assert code == 0, daemon.stderr()
    assert time.monotonic() - started < 15
    assert "drained" not in lines
    assert "cleaned_up" in lines and "exited" in lines  # cancelled, its finally still ran
    assert "drain_timed_out" in daemon.events()


def test_a_second_sigterm_exits_at_once_with_128_plus_signum(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    daemon = start(daemons, tmp_path, drain_s=600, after_stop="hang")
    daemon.signal(signal.SIGTERM)
    daemon.expect("stopping")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code, lines = daemon.finish()
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 15
    assert "cleaned_up" not in lines and "exited" not in lines
    assert daemon.events()[-1] == "forced_exit"


def test_the_second_signal_works_while_the_event_loop_is_blocked(
    daemons: list[Daemon], tmp_path: Path
) -> None:
    daemon = start(daemons, tmp_path, drain_s=600, after_stop="block")
    daemon.signal(signal.SIGINT)
    daemon.expect("stopping")
    daemon.signal(signal.SIGTERM)
    code, lines = daemon.finish()
    assert code == 128 + signal.SIGTERM
    assert "drained" not in lines


def test_shutdown_calls_force_only_on_the_second_signal_and_restores_handlers() -> None:
    forced: list[int] = []
    stopped: list[str] = []
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    shutdown = Shutdown(on_stop=lambda: stopped.append("stop"), force=forced.append)
    with shutdown.capture():
        assert all(signal.getsignal(sig) == shutdown.handle_signal for sig in STOP_SIGNALS)
        shutdown.handle_signal(signal.SIGINT)
        assert shutdown.should_exit and not shutdown.force_exit and forced == []
        shutdown.handle_signal(signal.SIGTERM)
        assert shutdown.force_exit and forced == [128 + signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before
    assert stopped == []  # no loop ran: nothing to stop yet
