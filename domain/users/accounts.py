"""Users, passwords and API tokens: the one place that writes them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.mail.rules import MailRuleError, parse_addresses
from domain.users.models import ApiToken, Role, User

_HASHER = PasswordHasher()
MIN_PASSWORD = 10


@lru_cache(maxsize=1)
def _dummy() -> str:
    """A hash to verify against when the name is unknown, so a wrong name takes as long
    as a wrong password (no user enumeration by timing). Made on first use: argon2
    hashing takes 64 MiB, which no process that never signs anyone in should pay."""
    return _HASHER.hash("not a password of anyone")


class AccountError(ValueError):
    pass


def check_name(name: str) -> str:
    name = name.strip()
    if (
        not name
        or len(name) > 50
        or not name.replace(".", "").replace("-", "").replace("_", "").isalnum()
    ):
        raise AccountError("name: 1 to 50 letters, digits, '.', '-' or '_'")
    return name


def check_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise AccountError(
            f"role: one of {', '.join(r.value for r in Role)}, not {text!r}"
        ) from None


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    return password


def check_email(text: str | None) -> str | None:
    """One email address (where notifications reach the user); "" or "none" clears it."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    try:
        addresses = parse_addresses(text.strip())
    except MailRuleError as exc:
        raise AccountError(f"email: {exc}") from None
    if len(addresses) != 1 or len(addresses[0]) > 250:
        raise AccountError(f"email: one address of at most 250 characters, not {text!r}")
    return addresses[0]


def add_user(
    session: Session,
    name: str,
    role: Role,
    password: str,
    now: datetime,
    email: str | None = None,
) -> User:
    name, password, email = check_name(name), check_password(password), check_email(email)
    if session.execute(select(User.id).where(User.name == name)).first():
        raise AccountError(f"a user named {name!r} exists already")
    user = User(
        name=name, role=role, password_hash=_HASHER.hash(password), created_at=now, email=email
    )
    session.add(user)
    session.flush()
    return user


def _user(session: Session, name: str) -> User:
    user = session.execute(select(User).where(User.name == name.strip())).scalar_one_or_none()
    if user is None:
        raise AccountError(f"no user named {name!r}")
    return user


def _admins(session: Session) -> int:
    from sqlalchemy import func

    return int(session.execute(select(func.count()).where(User.role == Role.ADMIN)).scalar_one())


def set_role(session: Session, name: str, role: Role) -> User:
    """A new role; the last admin keeps theirs (someone must manage users)."""
    user = _user(session, name)
    if user.role == Role.ADMIN and role != Role.ADMIN and _admins(session) == 1:
        raise AccountError(f"{name} is the last admin; make another admin first")
    user.role = role
    return user


def set_email(session: Session, name: str, email: str | None) -> User:
    user = _user(session, name)
    user.email = check_email(email)
    return user


def delete_user(session: Session, name: str) -> None:
    user = _user(session, name)
    if user.role == Role.ADMIN and _admins(session) == 1:
        raise AccountError(f"{name} is the last admin; make another admin first")
    session.delete(user)


def authenticate(session: Session, name: str, password: str) -> User | None:
    user = session.execute(select(User).where(User.name == name.strip())).scalar_one_or_none()
    try:
        _HASHER.verify(user.password_hash if user else _dummy(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is not None and _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    return user


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, name: str, now: datetime) -> str:
    """A new API token for the user; only its hash is stored, so this is the one time
    it can be read."""
    user = session.execute(select(User).where(User.name == name.strip())).scalar_one_or_none()
    if user is None:
        raise AccountError(f"no user named {name!r}")
    token = f"jq_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(user_id=user.id, token_hash=_digest(token), created_at=now))
    return token


def user_for_token(session: Session, token: str, now: datetime) -> User | None:
    found = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == _digest(token))
    ).first()
    if found is None:
        return None
    found.ApiToken.last_used_at = now
    user: User = found.User
    return user


def change_web_service_key(session: Session, name: str) -> str:
    """Business Central's "Change Web Service Key": a new key for the user, replacing
    the old one at once; only its hash is stored, so this is the one time it can be read."""
    user = _user(session, name)
    key = secrets.token_urlsafe(32)
    user.web_service_key_hash = _digest(key)
    return key


def user_for_web_service_key(session: Session, name: str, key: str) -> User | None:
    """The user whose web service key this is (HTTP Basic: user name and key)."""
    user = session.execute(select(User).where(User.name == name.strip())).scalar_one_or_none()
    stored = (user.web_service_key_hash if user else None) or _digest("no key set")
    if not hmac.compare_digest(stored, _digest(key)) or user is None:
        return None
    return user if user.web_service_key_hash else None
