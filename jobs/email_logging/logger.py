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

from domain.clock import utcnow
from domain.interactions.matching import (
    Directory,
    Interaction,
    MailMessage,
    interactions,
    new_pairs,
)
from domain.interactions.models import EMAIL_TEMPLATE, Contact, InteractionLogEntry
from domain.sales.models import Salesperson, table
from jobs.email_logging.mailbox import Fetched, SharedMailbox
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
        readable: list[MailMessage] = []
        candidates: list[tuple[str, Interaction]] = []
        by_id: dict[str, MailMessage] = {}
        for item in batch:
            if item.message is None:
                counters.failed += 1
                log.warning("email_logging.bad_message", item_id=item.item_id, reason=item.error)
                continue
            readable.append(item.message)
            found = interactions(item.message, directory)
            if not found:
                counters.unmatched += 1
            by_id[item.message.message_id] = item.message
            candidates += [(item.message.message_id, i) for i in found]
        if not candidates:
            return readable
        with self.db.begin() as conn:
            logged = conn.execute(
                select(ILE.c.message_id, ILE.c.contact_no, ILE.c.salesperson_code).where(
                    ILE.c.message_id.in_(list(by_id))
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
                    "subject": by_id[mid].subject,
                    "occurred_at": by_id[mid].received_at,
                    "logged_at": logged_at,
                    "message_id": mid,
                    "link": by_id[mid].link,
                    "attachments": by_id[mid].has_attachments,
                }
                for mid, i in fresh
            ]
            if rows:
                conn.execute(insert(ILE), rows)
        written = {mid for mid, _ in fresh}
        counters.logged += len(rows)
        counters.already_logged += len({mid for mid, _ in candidates} - written)
        return readable

    def _link(self, readable: Sequence[MailMessage], links: dict[str, str]) -> None:
        """Points the entries at where their messages now are (the archive)."""
        rows = [
            {"mid": m.message_id, "new_link": links[m.item_id]}
            for m in readable
            if links.get(m.item_id) and links[m.item_id] != m.link
        ]
        if rows:
            with self.db.begin() as conn:
                conn.execute(
                    update(ILE)
                    .where(ILE.c.message_id == bindparam("mid"))
                    .values(link=bindparam("new_link")),
                    rows,
                )
