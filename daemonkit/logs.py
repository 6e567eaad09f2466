"""Structured logging for every process: key=value lines for people, JSON lines for log shippers.

structlog and the standard library are configured together. structlog events are handed to a
standard ``logging`` logger, and one handler on the root logger renders both them and the
records of plain ``logging.getLogger(__name__)`` loggers (the miner's validator API, the
bittensor adapter, uvicorn, alembic) with the same processors. So a JSON log is JSON on every
line, whoever wrote it, and ``logging.level`` filters both.

Secrets: the config never holds a secret's value (:mod:`byteleap.config.secrets`), and a field
whose name says it carries one (``token``, ``secret``, ``password``, ...) is replaced by ``***``
before any renderer sees it, in structlog events and in ``extra=`` of standard records alike.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor

#: what a redacted value is replaced with (the same mark as ``check-config``'s)
REDACTED = "***"

#: a field whose lower-cased name contains one of these is never rendered
SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "passphrase",
    "authorization",
    "private_key",
    "api_key",
    "mnemonic",
    "cookie",
    "credential",
)

#: libraries that log every request at INFO; below DEBUG they are held to WARNING
CHATTY = ("httpx", "httpcore")

#: attributes every ``logging.LogRecord`` has; anything else on a record came from ``extra=``
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _Handler(logging.StreamHandler[TextIO]):
    """The root handler :func:`configure_logging` installs (and replaces when called again)."""


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Replace the value of every secret-named field with :data:`REDACTED`."""
    for key in list(event_dict):
        if isinstance(key, str) and is_secret_key(key) and event_dict[key] is not None:
            event_dict[key] = REDACTED
    return event_dict


def add_record_extras(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Fields a standard-library caller passed with ``extra=`` become event fields."""
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


def _level_number(level: str) -> int:
    return logging.getLevelNamesMapping().get(level.upper(), logging.INFO)


def configure_logging(
    level: str = "INFO", fmt: str = "text", *, stream: TextIO | None = None
) -> None:
    """Route structlog and standard-library logging through one handler on ``stream``
    (stderr by default) at ``level``; ``fmt`` is ``"text"`` or ``"json"``.

    Calling it again replaces the previous set-up (its handler included); handlers other code
    put on the root logger (pytest's capture, for one) are left alone."""
    numeric = _level_number(level)
    out = stream if stream is not None else sys.stderr
    json_lines = fmt == "json"
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    # ConsoleRenderer prints exceptions itself; JSON needs them as a string field
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_lines:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)

    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
                add_record_extras,
                redact_secrets,
            ],
            processors=final,
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()  # a StreamHandler leaves its stream open
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            stamp,
            redact_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


__all__ = ["REDACTED", "SECRET_WORDS", "configure_logging", "is_secret_key", "redact_secrets"]
