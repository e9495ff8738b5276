"""Sending a run's notice: by email and to every configured webhook. Whatever goes
wrong here is logged and stays here: a notification never fails, undoes or delays the
run it is about (the run is recorded before this is called)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from dramatiq import Message
from sqlalchemy.orm import Session, sessionmaker

from domain.clock import utcnow
from domain.notifications.rules import Notice, notice_for, payload
from jobs.notifications.email import queue_email
from jobs.notifications.webhooks import shown, webhook_message
from runtime.db_errors import describe
from runtime.logs import get_logger
from runtime.settings import Settings

log = get_logger("notifications")


class Notifier:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        enqueue: Callable[[Message[None]], Any],
        settings: Settings,
    ) -> None:
        self.sessions, self.enqueue, self.settings = sessions, enqueue, settings

    def after_run(
        self, entry: Any, succeeded: bool, status_after: str, error: str | None
    ) -> Notice | None:
        """Send the notice this run owes, if any (`entry` as the run claimed it)."""
        try:
            notice = notice_for(entry, succeeded, status_after, error, utcnow())
        except Exception as exc:  # a corrupt row: say so, never fail the run
            log.warning("notification.failed", entry_id=entry.id, error=describe(exc))
            return None
        if notice is None:
            return None
        self._email(notice)
        self._webhooks(notice)
        return notice

    def _email(self, notice: Notice) -> None:
        try:
            with self.sessions.begin() as session:
                queued = queue_email(session, notice, notice.at, self.settings.tz)
        except Exception as exc:
            log.warning(
                "notification.email_failed",
                entry_code=notice.code,
                run_id=notice.run_id,
                error=describe(exc),
            )
            return
        if queued is not None:
            log.info("notification.email_queued", entry_code=notice.code, outbox_id=queued.id)

    def _webhooks(self, notice: Notice) -> None:
        if not self.settings.webhook_urls:
            return
        body = json.dumps(payload(notice), separators=(",", ":"))
        for url in self.settings.webhook_urls:
            msg_id = f"msg_{uuid.uuid4().hex}"  # the same on every retry: receivers dedupe
            try:
                self.enqueue(webhook_message(self.settings, url, msg_id, body))
            except Exception as exc:
                log.warning(
                    "notification.webhook_failed",
                    entry_code=notice.code,
                    url=shown(url),
                    error=describe(exc),
                )
