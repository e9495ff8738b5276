"""People and scripts that use the console and the API: users with a role, their
passwords (argon2 hashes) and their API tokens (SHA-256 hashes; the token itself is
shown once)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, UTCDateTime, enum_type


class Role(StrEnum):
    VIEWER = "viewer"  # reads everything
    OPERATOR = "operator"  # and sets entries Ready / On Hold, runs them now, retries
    ADMIN = "admin"  # and edits, deletes, and manages users

    def allows(self, needed: Role) -> bool:
        order = (Role.VIEWER, Role.OPERATOR, Role.ADMIN)
        return order.index(self) >= order.index(needed)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, "user_role", 20))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Where the job queue's notifications reach them (entries they run, or as an admin).
    email: Mapped[str | None] = mapped_column(String(250), nullable=True)
    # Business Central's Web Service Access Key (SHA-256 of it): the password with which
    # Dynamics 365 Sales reads item availability over OData as this user.
    web_service_key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
