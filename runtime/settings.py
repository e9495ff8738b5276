"""Settings come from environment variables only, so one image serves every role."""

from __future__ import annotations

import base64
import binascii
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from runtime.logs import redact_text

DEFAULT_DATABASE_URL = "sqlite:///jobqueue.db"


class SettingsError(ValueError):
    """A setting has a value the system cannot use."""


# The drivers the system ships with; a URL naming the backend alone gets its driver.
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg2"}
MAX_TIMEZONE_NAME = 64


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def _float(
    env: Mapping[str, str], name: str, default: float, lowest: float, highest: float
) -> float:
    """A finite number in [lowest, highest] (lowest excluded when it is 0)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {_shown(raw)}") from None
    if not math.isfinite(value) or value > highest or value < lowest or value == lowest == 0:
        span = f"greater than {lowest:g}" if lowest == 0 else f"at least {lowest:g}"
        raise SettingsError(f"{name} must be {span} and at most {highest:g}, got {_shown(raw)}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lowest: int, highest: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {_shown(raw)}") from None
    if not lowest <= value <= highest:
        raise SettingsError(f"{name} must be {lowest} to {highest}, got {_shown(raw)}")
    return value


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise SettingsError(f"{name} must be true or false, got {_shown(raw)}")
    return value in _TRUE


def _webhook_urls(raw: str | None) -> tuple[str, ...]:
    """Comma-separated http(s) URLs the job queue's notifications are POSTed to."""
    urls = tuple(u.strip() for u in (raw or "").split(",") if u.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            bare = parts._replace(query="", fragment="").geturl()  # a query may be a secret
            raise SettingsError(f"JOBQUEUE_WEBHOOK_URLS: {_shown(bare)} is not an http(s) URL")
    return urls


def _webhook_secret(raw: str | None, urls: tuple[str, ...]) -> str | None:
    """The Standard Webhooks signing secret: base64 of at least 16 bytes, `whsec_` prefix
    allowed. Never shown, not even in part."""
    if not (raw or "").strip():
        if urls:
            raise SettingsError(
                "JOBQUEUE_WEBHOOK_SECRET is needed with JOBQUEUE_WEBHOOK_URLS (the "
                "notifications are signed); see the README"
            )
        return None
    text = (raw or "").strip()
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError("JOBQUEUE_WEBHOOK_SECRET is not base64 (whsec_... )") from None
    if len(key) < 16:
        raise SettingsError("JOBQUEUE_WEBHOOK_SECRET must decode to at least 16 bytes")
    return text


def database_url(raw: str) -> str:
    """A database URL the system can use: SQLite or PostgreSQL, with its shipped driver
    (`postgresql://` and `postgres://` work as they are)."""
    text = raw.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://") :]
    try:
        url = make_url(text)
    except ArgumentError:
        raise SettingsError(
            f"DATABASE_URL {redact_text(_shown(text))} is not a database URL; use "
            "sqlite:///path/to/file.db or postgresql://user@host:5432/database"
        ) from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend not in DRIVERS:
        raise SettingsError(
            f"DATABASE_URL: the {backend!r} database is not supported; use SQLite or PostgreSQL"
        )
    if "+" not in url.drivername and backend == "postgresql":
        url = url.set(drivername=f"{backend}+{DRIVERS[backend]}")
    elif driver != DRIVERS[backend]:
        raise SettingsError(
            f"DATABASE_URL: the driver {driver!r} is not installed; use {backend}:// "
            f"or {backend}+{DRIVERS[backend]}://"
        )
    return url.render_as_string(hide_password=False)


def timezone_name(raw: str | None) -> str:
    name = (raw or "UTC").strip()
    try:
        if len(name) > MAX_TIMEZONE_NAME:
            raise ValueError
        ZoneInfo(name)
    except (ValueError, OSError, LookupError):
        raise SettingsError(
            f"JOBQUEUE_TIMEZONE {_shown(name)} is not a known time zone (e.g. Europe/Amsterdam)"
        ) from None
    return name


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know; see the README's configuration table."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    timezone: str = "UTC"
    queue_name: str = "jobqueue"
    tick_seconds: float = 1.0
    lease_seconds: float = 30.0
    dispatch_timeout_seconds: float = 60.0
    leader_ttl_seconds: float = 10.0
    dispatch_batch: int = 1000
    shutdown_grace_seconds: float = 20.0
    worker_processes: int = 2
    worker_threads: int = 8
    log_level: str = "INFO"
    # An extra CA the clients of outside services trust (a TLS-inspecting proxy, the sandbox).
    ca_file: str | None = None
    # Port of the health and metrics endpoint (/healthz, /readyz, /metrics); 0 = none.
    health_port: int = 0
    # Business Central deletes a one-off entry once it has run successfully; True keeps it
    # (status Finished). Its log entries stay either way.
    keep_one_off_entries: bool = False
    # Where notifications are POSTed, and the secret that signs them (never in a repr).
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)  # queries carry secrets
    webhook_secret: str | None = field(default=None, repr=False)
    # Every JOBQUEUE_* variable as given; secrets among them, so never in a repr either.
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def verify(self) -> str | bool:
        """What HTTPS clients verify servers against: the extra CA, else the system's."""
        return self.ca_file or True

    @property
    def embedded(self) -> bool:
        """True when no broker server is configured: the in-process broker is used."""
        return not self.redis_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        hour, day = 3600.0, 86400.0
        return cls(
            database_url=database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            redis_url=env.get("REDIS_URL") or None,
            timezone=timezone_name(env.get("JOBQUEUE_TIMEZONE")),
            queue_name=env.get("JOBQUEUE_QUEUE") or "jobqueue",
            tick_seconds=_float(env, "JOBQUEUE_TICK_SECONDS", 1.0, 0, hour),
            lease_seconds=_float(env, "JOBQUEUE_LEASE_SECONDS", 30.0, 0, hour),
            dispatch_timeout_seconds=_float(env, "JOBQUEUE_DISPATCH_TIMEOUT_SECONDS", 60.0, 0, day),
            leader_ttl_seconds=_float(env, "JOBQUEUE_LEADER_TTL_SECONDS", 10.0, 0, hour),
            dispatch_batch=_int(env, "JOBQUEUE_DISPATCH_BATCH", 1000, 1, 100_000),
            shutdown_grace_seconds=_float(env, "JOBQUEUE_SHUTDOWN_GRACE_SECONDS", 20.0, 0, day),
            worker_processes=_int(env, "JOBQUEUE_WORKER_PROCESSES", 2, 1, 256),
            worker_threads=_int(env, "JOBQUEUE_WORKER_THREADS", 8, 1, 1024),
            log_level=_log_level(env.get("LOG_LEVEL")),
            ca_file=env.get("JOBQUEUE_CA_FILE") or None,
            health_port=_int(env, "JOBQUEUE_HEALTH_PORT", 0, 0, 65535),
            keep_one_off_entries=_bool(env, "JOBQUEUE_KEEP_ONE_OFF_ENTRIES", False),
            webhook_urls=(urls := _webhook_urls(env.get("JOBQUEUE_WEBHOOK_URLS"))),
            webhook_secret=_webhook_secret(env.get("JOBQUEUE_WEBHOOK_SECRET"), urls),
            extra={k: v for k, v in env.items() if k.startswith("JOBQUEUE_")},
        )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str | None) -> str:
    level = (raw or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {_shown(level)}"
        )
    return level
