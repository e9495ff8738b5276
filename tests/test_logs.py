"""Structured logs: JSON lines, the run summary line's fields, and no secret in any line."""

from __future__ import annotations

import json
import logging

import pytest

from runtime.logs import configure_logging, get_logger, redact_text


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]):
    configure_logging("INFO", process="test")

    def read() -> list[dict[str, object]]:
        return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]

    yield read
    configure_logging("WARNING", process="tests")


def test_structlog_and_stdlib_loggers_write_one_json_format(lines) -> None:
    get_logger("x").info("run.finished", entry_id=3, counters={"inserted": 2})
    logging.getLogger("dramatiq.worker").warning("plain %s message", "stdlib")
    first, second = lines()
    assert first["event"] == "run.finished" and first["counters"] == {"inserted": 2}
    assert first["process"] == "test" and first["level"] == "info" and "timestamp" in first
    assert second["event"] == "plain stdlib message" and second["logger"] == "dramatiq.worker"


def test_secrets_never_reach_a_log_line(lines) -> None:
    get_logger("x").info(
        "connecting",
        client_secret="s3cr3t-value",
        settings={"password": "hunter2", "user": "alice"},
        url="postgresql://app:pa55word@db:5432/bc",
    )
    logging.getLogger("stdlib").info("redis at redis://:topsecret@cache:6379/0")
    raw = json.dumps(lines())
    for secret in ("s3cr3t-value", "hunter2", "pa55word", "topsecret"):
        assert secret not in raw
    assert "alice" in raw and "***" in raw


def test_redact_text_keeps_urls_without_passwords() -> None:
    assert redact_text("redis://cache:6379/0") == "redis://cache:6379/0"
    assert redact_text("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
