"""structlog JSON to stdout for every process; stdlib loggers (Dramatiq, APScheduler,
SQLAlchemy) go through the same renderer so an operator reads one format."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_KEYS = re.compile(r"(secret|password|passwd|token|authorization|api_key|apikey)", re.I)
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.I)
REDACTED = "***"


def redact_text(text: str) -> str:
    """Hide the password in any URL embedded in text (database and broker URLs)."""
    return URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and SECRET_KEYS.search(k) else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_secrets(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: a secret never reaches a log line."""
    return {
        key: REDACTED if SECRET_KEYS.search(key) else _redact(value)
        for key, value in event_dict.items()
    }


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever sys.stdout is at emit time (Dramatiq swaps it in children)."""

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_process_name: dict[str, str] = {}


def _add_process(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Every line says which process wrote it (contextvars do not reach other threads)."""
    if "process" in _process_name:
        event_dict.setdefault("process", _process_name["process"])
    return event_dict


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    _add_process,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "INFO", process: str | None = None) -> None:
    """Idempotent: configure structlog and the root logger for JSON lines on stdout."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = _StdoutHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO; a webhook URL's query can be its secret
    # (Power Automate's `sig=`). Our clients log what they did, without queries.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # a line below the level costs nothing more
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    if process:
        _process_name["process"] = process


def get_logger(name: str) -> Any:
    return structlog.stdlib.get_logger(name)
