"""What a database error means: worth retrying (the connection or a lock), and in words.

Every process asks the same two questions of a failed statement: retry it (the
server went away, a lock or a serialization conflict) or not (a bug, bad data),
and what one line tells an operator its real cause. Answered here once, for
PostgreSQL (psycopg2 SQLSTATEs) and SQLite (its messages; it has no codes).
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from runtime.logs import redact_text

# SQLSTATE classes and codes (PostgreSQL appendix A) that a retry can outlive.
_TRANSIENT_CLASSES = ("08",)  # connection exception
_TRANSIENT_CODES = {"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "53300"}
_LOCK_CODES = {"55P03"}
_MISSING_TABLE_CODES = {"42P01"}
_READ_ONLY_CODES = {"25006"}


def _code(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "pgcode", None)


def _text(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(orig).strip().splitlines()
    return redact_text(lines[0].strip()) if lines else type(orig).__name__


def is_lock_timeout(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError):
        return False
    if _code(exc) in _LOCK_CODES or "lock timeout" in _text(exc):
        return True
    text = _text(exc).lower()
    return "database is locked" in text or "database is busy" in text


def is_transient(exc: BaseException) -> bool:
    """True for errors a retry can outlive: the server or connection gone, a lock, a conflict."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    code = _code(exc)
    if code is not None:
        return code[:2] in _TRANSIENT_CLASSES or code in _TRANSIENT_CODES
    if isinstance(exc, OperationalError):
        text = _text(exc).lower()
        # psycopg2 without a SQLSTATE: refused, reset or closed connections; SQLite: locks.
        return not any(word in text for word in ("no such table", "readonly", "read-only"))
    return False


def describe(exc: BaseException, url: str | None = None) -> str:
    """One line naming the real cause, for the command line and the logs."""
    text = _text(exc)
    lowered = text.lower()
    code = _code(exc) if isinstance(exc, DBAPIError) else None
    where = _where(url)
    if code in _MISSING_TABLE_CODES or "no such table" in lowered:
        return f"the database at {where} is not set up ({text}); run `jobqueue migrate`"
    if is_lock_timeout(exc):
        return f"the database at {where} is busy: {text}; try again"
    if code in _READ_ONLY_CODES or "readonly" in lowered or "read-only" in lowered:
        return f"the database at {where} is read-only: {text}"
    if isinstance(exc, DBAPIError) and is_transient(exc):
        return f"cannot reach the database at {where}: {text}"
    return f"database error at {where}: {text}"


def _where(url: str | None) -> str:
    if not url:
        return "the configured address"
    try:
        parsed = make_url(url)
    except Exception:
        return "the configured address"
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host or 'localhost'}{port}/{parsed.database or ''}"
