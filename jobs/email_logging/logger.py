"""Reads the shared mailbox's Inbox page by page, logs interactions, then moves the
logged messages to the archive.

Order matters for crash safety: the interactions of a page are committed before any
message moves, so a crash in between leaves them in the Inbox, and the next run finds
them already logged (one entry per internet message id, contact and salesperson) and
only moves them. A message that cannot be logged stays in the Inbox and is tried
again next run; the rest of its page goes on. Moves wait for the last page because a
move changes the listing the service is paging through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from domain.clock import utcnow
from domain.interactions.matching import (
    Directory,
    Interaction,
    MailMessage,
    interactions,
    message_key,
    new_pairs,
)
from domain.interactions.models import EMAIL_TEMPLATE, Contact, InteractionLogEntry
from domain.sales.models import Salesperson, table
from jobs.email_logging.mailbox import Fetched, SharedMailbox
from runtime.db_errors import describe, is_transient
from runtime.logs import get_logger

log = get_logger("email_logging")
ILE = table(InteractionLogEntry)


@dataclass
class LoggingCounters:
    read: int = 0
    logged: int = 0  # interaction log entries written
    unmatched: int = 0  # messages between no salesperson and contact
    already_logged: int = 0  # messages read again whose interactions were in the log
    failed: int = 0  # messages that cannot be logged; they stay in the Inbox
    moved: int = 0
    move_failed: int = 0

    @property
    def activity(self) -> bool:
        return self.logged > 0 or self.moved > 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class EmailLogger:
    def __init__(
        self,
        db: Engine,
        mailbox: SharedMailbox,
        *,
        batch_size: int = 100,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("the batch size must be at least 1")
        self.db, self.mailbox, self.batch_size, self.cancelled = db, mailbox, batch_size, cancelled

    def run(self) -> LoggingCounters:
        """Logs page after page, then moves what was logged: a move changes the listing
        the service pages through, so no item moves before the last page is read."""
        counters = LoggingCounters()
        directory = self._directory()
        logged: list[MailMessage] = []
        for page in self.mailbox.pages(self.batch_size):
            counters.read += len(page)
            logged += self._log(page, directory, counters)
            if self.cancelled():
                break
        if logged:
            moved = self.mailbox.move([m.item_id for m in logged])
            self._link(logged, moved.links)
            counters.moved += len(moved.links)
            counters.move_failed += len(moved.failed)
            for item_id, reason in moved.failed.items():
                log.warning("email_logging.move_failed", item_id=item_id, reason=reason)
        return counters

    def _directory(self) -> Directory:
        with self.db.connect() as conn:
            people = {
                r.code: r.email for r in conn.execute(select(Salesperson.code, Salesperson.email))
            }
            contacts = {r.no: r.email for r in conn.execute(select(Contact.no, Contact.email))}
        return Directory.build(people, contacts)

    def _log(
        self, batch: Sequence[Fetched], directory: Directory, counters: LoggingCounters
    ) -> list[MailMessage]:
        """Logs a page in one transaction; if the database refuses it (a value it cannot
        store), message by message, so only the message it refuses is left out: reported
        as bad, it stays in the Inbox. The messages that may move are returned."""
        found: dict[str, list[Interaction]] = {}  # per message id, computed once
        readable: list[MailMessage] = []
        for item in batch:
            if item.message is None:
                self._bad(item.item_id, item.error, counters)
                continue
            readable.append(item.message)
            found[item.message.message_id] = interactions(item.message, directory)
            if not found[item.message.message_id]:
                counters.unmatched += 1
        try:
            self._write(readable, found, counters)
            return readable
        except (SQLAlchemyError, ValueError) as exc:  # psycopg2 refuses NUL as ValueError
            if is_transient(exc):
                raise
        stored: list[MailMessage] = []
        for one in readable:
            try:
                self._write([one], found, counters)
            except (SQLAlchemyError, ValueError) as exc:
                if is_transient(exc):
                    raise
                self._bad(one.item_id, f"it cannot be stored: {describe(exc)}", counters)
                continue
            stored.append(one)
        return stored

    def _write(
        self,
        messages: Sequence[MailMessage],
        found: dict[str, list[Interaction]],
        counters: LoggingCounters,
    ) -> None:
        """The interactions (`found` per message id) of these messages not logged yet, in
        one transaction; the counters change only once it committed."""
        by_key = {message_key(m.message_id): m for m in messages}
        candidates = [(key, i) for key, m in by_key.items() for i in found[m.message_id]]
        if not candidates:
            return
        with self.db.begin() as conn:
            logged = conn.execute(
                select(ILE.c.message_key, ILE.c.contact_no, ILE.c.salesperson_code).where(
                    ILE.c.message_key.in_(list(by_key))
                )
            )
            logged_at = utcnow()
            fresh = new_pairs(candidates, [(r[0], r[1], r[2]) for r in logged])
            rows = [
                {
                    "contact_no": i.contact_no,
                    "salesperson_code": i.salesperson_code,
                    "information_flow": i.flow,
                    "template_code": EMAIL_TEMPLATE,
                    "subject": by_key[key].subject,
                    "occurred_at": by_key[key].received_at,
                    "logged_at": logged_at,
                    "message_id": by_key[key].message_id,
                    "message_key": key,
                    "link": by_key[key].link,
                    "attachments": by_key[key].has_attachments,
                }
                for key, i in fresh
            ]
            if rows:
                conn.execute(insert(ILE), rows)
        counters.logged += len(rows)
        counters.already_logged += len({key for key, _ in candidates} - {k for k, _ in fresh})

    @staticmethod
    def _bad(item_id: str, reason: str | None, counters: LoggingCounters) -> None:
        counters.failed += 1
        log.warning("email_logging.bad_message", item_id=item_id, reason=reason)

    def _link(self, readable: Sequence[MailMessage], links: dict[str, str]) -> None:
        """Points the entries at where their messages now are (the archive)."""
        rows = [
            {"key": message_key(m.message_id), "new_link": links[m.item_id]}
            for m in readable
            if links.get(m.item_id) and links[m.item_id] != m.link
        ]
        if rows:
            with self.db.begin() as conn:
                conn.execute(
                    update(ILE)
                    .where(ILE.c.message_key == bindparam("key"))
                    .values(link=bindparam("new_link")),
                    rows,
                )
