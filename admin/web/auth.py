"""Who is asking: a signed session cookie (the browser) or an API token (scripts); the
role each request needs; CSRF tokens for everything that changes state; sign-in
throttling."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.users.accounts import user_for_token
from domain.users.models import Role, User

SAFE = {"GET", "HEAD", "OPTIONS"}
CSRF_FIELD, CSRF_HEADER = "csrf_token", "x-csrf-token"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: str  # "console" (session cookie) or "api" (token)

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


def sign_in(request: Request, name: str, role: Role, until: float | None = None) -> None:
    """A fresh session (a new CSRF token too): nothing from before the sign-in carries over.
    A local user's role is read again on every request (a changed role or a deleted user
    takes effect at once); a Microsoft sign-in (`until`: its ID token's expiry) holds its
    role until then, and signs in again after."""
    request.session.clear()
    request.session.update({"user": name, "role": role.value, "csrf": secrets.token_urlsafe(32)})
    if until is not None:
        request.session["until"] = until


# App roles of the app registration (Entra ID) and what they allow here.
ENTRA_ROLES = {"JobQueue.Admin": Role.ADMIN, "JobQueue.Operator": Role.OPERATOR,
               "JobQueue.Viewer": Role.VIEWER}  # fmt: skip


def role_from_claims(claims: dict[str, Any]) -> Role | None:
    """The highest role the token's app roles give; None: no role for this app."""
    granted = [ENTRA_ROLES[r] for r in claims.get("roles", []) or [] if r in ENTRA_ROLES]
    order = (Role.ADMIN, Role.OPERATOR, Role.VIEWER)
    return next((r for r in order if r in granted), None)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def principal(request: Request, sessions: Callable[[], Session]) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        with sessions() as session, session.begin():
            user = user_for_token(session, header[7:].strip(), utcnow())
            return Principal(user.name, user.role, "api") if user else None
    name, role = request.session.get("user"), request.session.get("role")
    if not name or not role:
        return None
    until = request.session.get("until")
    if until is not None:
        if time.time() >= float(until):
            request.session.clear()
            return None
        return Principal(str(name), Role(role), "console")
    with sessions() as session:
        current = session.execute(select(User.role).where(User.name == str(name))).scalar()
    if current is None:  # deleted since
        request.session.clear()
        return None
    return Principal(str(name), Role(current), "console")


def check_csrf(request: Request, who: Principal, form_token: str | None = None) -> None:
    """A state-changing request made with the session cookie must carry the session's
    token (a form field or the X-CSRF-Token header); token-authenticated API calls
    carry no cookie and need none."""
    if request.method in SAFE or who.via == "api":
        return
    sent = form_token or request.headers.get(CSRF_HEADER, "")
    expected = str(request.session.get("csrf", ""))
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            403, "the form is missing its CSRF token or it is stale; reload the page"
        )


class SignInThrottle:
    """At most `attempts` failed sign-ins per name and per client address in `window`
    seconds; then the next attempts are refused until the window passes."""

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window]
        self._failures[key] = kept
        return kept

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.attempts for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)
