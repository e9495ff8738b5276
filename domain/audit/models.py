"""Who changed what, when, through which surface, with the old and the new value."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from domain.base import Base, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_object", "object_type", "object_key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(60))  # user name
    surface: Mapped[str] = mapped_column(String(20))  # console, api, cli
    object_type: Mapped[str] = mapped_column(String(40))  # job_queue_entry
    object_key: Mapped[str] = mapped_column(String(60))  # the entry's code
    action: Mapped[str] = mapped_column(String(20))  # created, changed, deleted
    field: Mapped[str] = mapped_column(String(60), default="")
    old_value: Mapped[str] = mapped_column(Text, default="")
    new_value: Mapped[str] = mapped_column(Text, default="")
