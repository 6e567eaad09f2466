"""The devnet's children: logs, a clean environment, and no orphans after stop."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from devnet.processes import ProcessGroup, child_environment, read_tail
from devnet.specs import ProcessSpec


def spec(tmp_path: Path, name: str, code: str) -> ProcessSpec:
    return ProcessSpec(
        name=name,
        role="worker",
        argv=(sys.executable, "-c", code),
        config={},
        config_path=tmp_path / f"{name}.yaml",
        log_path=tmp_path / "logs" / f"{name}.log",
        data_dir=tmp_path,
        env={"DEVNET_TEST": name},
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(path: Path, text: str) -> str:
    for _ in range(200):
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_children_log_to_their_file_with_a_clean_environment(tmp_path: Path) -> None:
    code = "import os; print(os.environ.get('BYTELEAP_DATABASE__URL'), os.environ['DEVNET_TEST'])"
    group = ProcessGroup({"BYTELEAP_DATABASE__URL": "sqlite+aiosqlite:///elsewhere", "PATH": ""})
    with group:
        child = group.start(spec(tmp_path, "echo", code))
        assert wait_for(child.spec.log_path, "echo").strip() == "None echo"
        child.popen.wait(timeout=30)
        assert group.exited() == [child] and group.running() == 0
    assert child.tail() == "None echo"


def test_stop_ends_stubborn_children_and_their_own_children(tmp_path: Path) -> None:
    stubborn = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    polite = "import time\nprint('up', flush=True)\ntime.sleep(120)\n"
    group = ProcessGroup()
    with group:
        first = group.start(spec(tmp_path, "stubborn", stubborn))
        second = group.start(spec(tmp_path, "polite", polite))
        grandchild = int(wait_for(first.spec.log_path, "\n").split()[0])
        wait_for(second.spec.log_path, "up")
        assert group.running() == 2 and alive(grandchild)
        codes = group.stop(grace_s=0.5)
    # leaving the block stopped the group a second time, harmlessly
    assert codes == {"stubborn": -9, "polite": -15}
    for pid in (first.pid, second.pid, grandchild):
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.05)
        assert not alive(pid), f"process {pid} survived"


def test_child_environment_drops_byteleap_settings_only() -> None:
    env = child_environment(
        {"BYTELEAP_CHAIN__NETWORK": "finney", "BYTELEAP_CONFIG": "x.yaml", "HOME": "/root"},
        {"OMP_NUM_THREADS": "1"},
    )
    assert env == {"HOME": "/root", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def test_read_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert read_tail(log, lines=2) == "line 98\nline 99"
    assert read_tail(tmp_path / "missing.log") == ""
