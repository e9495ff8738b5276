"""Settings come from environment variables only, so one image serves every role."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_DATABASE_URL = "sqlite:///jobqueue.db"


class SettingsError(ValueError):
    """A setting has a value the system cannot use."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _float(env, name, default)
    if value != int(value):
        raise SettingsError(f"{name} must be a whole number")
    return int(value)


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
    extra: Mapping[str, str] = field(default_factory=dict)

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
        timezone = env.get("JOBQUEUE_TIMEZONE") or "UTC"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"JOBQUEUE_TIMEZONE {timezone!r} is not a known time zone"
            ) from None
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=env.get("REDIS_URL") or None,
            timezone=timezone,
            queue_name=env.get("JOBQUEUE_QUEUE") or "jobqueue",
            tick_seconds=_float(env, "JOBQUEUE_TICK_SECONDS", 1.0),
            lease_seconds=_float(env, "JOBQUEUE_LEASE_SECONDS", 30.0),
            dispatch_timeout_seconds=_float(env, "JOBQUEUE_DISPATCH_TIMEOUT_SECONDS", 60.0),
            leader_ttl_seconds=_float(env, "JOBQUEUE_LEADER_TTL_SECONDS", 10.0),
            dispatch_batch=_int(env, "JOBQUEUE_DISPATCH_BATCH", 1000),
            shutdown_grace_seconds=_float(env, "JOBQUEUE_SHUTDOWN_GRACE_SECONDS", 20.0),
            worker_processes=_int(env, "JOBQUEUE_WORKER_PROCESSES", 2),
            worker_threads=_int(env, "JOBQUEUE_WORKER_THREADS", 8),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            ca_file=env.get("JOBQUEUE_CA_FILE") or None,
            health_port=_int(env, "JOBQUEUE_HEALTH_PORT", 0),
            extra={k: v for k, v in env.items() if k.startswith("JOBQUEUE_")},
        )
