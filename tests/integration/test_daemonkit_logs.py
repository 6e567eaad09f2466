"""``daemonkit.logs``: structlog and standard-library loggers come out through one handler, in
one format, in a real process (logging is process-global, so each case runs in its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run(body: str, level: str = "INFO", fmt: str = "json") -> subprocess.CompletedProcess[str]:
    """``body`` after ``configure_logging(level, fmt)`` in a fresh interpreter."""
    script = (
        f"from daemonkit.logs import configure_logging\nconfigure_logging({level!r}, {fmt!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def records(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def test_the_daemons_stdlib_loggers_come_out_as_json_beside_structlog_events() -> None:
    done = run(
        """
        import logging, structlog
        # what the validator API and the bittensor adapter log through: logging.getLogger(__name__)
        api_log = logging.getLogger("neurons.miner.api")
        chain_log = logging.getLogger("neurons.chain.bittensor_adapter")

        structlog.get_logger("byteleap.miner").info("miner_started", api_port=8091)
        api_log.info("epoch challenge %s -> %s: %s", "c-1", "worker_busy", "busy")
        chain_log.warning("ignoring unusable axon %r: %s", "0.0.0.0:0", "no ip")
        """
    )
    started, api, chain = records(done)
    assert started["event"] == "miner_started" and started["api_port"] == 8091
    assert started["logger"] == "byteleap.miner" and started["level"] == "info"
    assert api == {
        "event": "epoch challenge c-1 -> worker_busy: busy",
        "level": "info",
        "logger": "neurons.miner.api",
        "timestamp": api["timestamp"],
    }
    assert chain["level"] == "warning" and chain["logger"] == "neurons.chain.bittensor_adapter"
    assert chain["event"] == "ignoring unusable axon '0.0.0.0:0': no ip"
    for record in (started, api, chain):
        assert record["timestamp"].endswith("Z")  # ISO 8601, UTC


def test_exceptions_from_either_side_are_one_json_field() -> None:
    done = run(
        """
        import logging, structlog
        try:
            1 / 0
        except ZeroDivisionError:
            structlog.get_logger("a").exception("structlog_crash")
            logging.getLogger("b").exception("stdlib crash")
        """
    )
    for record in records(done):
        assert record["level"] == "error"
        assert "ZeroDivisionError: division by zero" in record["exception"]


def test_secret_named_fields_are_redacted_on_both_sides() -> None:
    done = run(
        """
        import logging, structlog
        structlog.get_logger("x").info("joined", join_token="tok-123", worker="w1")
        logging.getLogger("y").info("login", extra={"password": "hunter2", "user": "u"})
        """
    )
    joined, login = records(done)
    assert joined["join_token"] == "***" and joined["worker"] == "w1"
    assert login["password"] == "***" and login["user"] == "u"
    assert "tok-123" not in done.stderr and "hunter2" not in done.stderr


def test_the_level_filters_both_and_chatty_libraries_stay_at_warning() -> None:
    done = run(
        """
        import logging, structlog
        structlog.get_logger("x").info("hidden_structlog")
        logging.getLogger("y").info("hidden stdlib")
        logging.getLogger("httpx").warning("shown httpx warning")
        structlog.get_logger("x").warning("shown_structlog")
        logging.getLogger("y").error("shown stdlib")
        """,
        level="warning",
    )
    assert [r["event"] for r in records(done)] == [
        "shown httpx warning",
        "shown_structlog",
        "shown stdlib",
    ]
    chatty = run('import logging\nlogging.getLogger("httpx").info("HTTP Request: GET /")')
    assert records(chatty) == []


def test_text_format_and_reconfiguring_keep_one_handler() -> None:
    done = run(
        """
        import logging, structlog
        from daemonkit.logs import configure_logging
        configure_logging("INFO", "text")
        configure_logging("INFO", "text")
        print(len(logging.getLogger().handlers))
        structlog.get_logger("byteleap.worker").info("connected", url="ws://m")
        logging.getLogger("uvicorn.error").info("Uvicorn running")
        """,
        fmt="text",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    connected, uvicorn_line = done.stderr.splitlines()
    assert "connected" in connected and "url=ws://m" in connected
    assert "[byteleap.worker]" in connected
    assert "Uvicorn running" in uvicorn_line and "[uvicorn.error]" in uvicorn_line
