"""Which sent emails a user may see, under the view policies."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from domain.mail.models import EmailRelatedRecord, EmailViewPolicy, SentEmail
from domain.mail.rules import RelatedRecord, can_view, effective_view_policy

AccessCheck = Callable[[str, RelatedRecord], bool]  # (user, record) -> may the user read it


def visible_sent_emails(
    session: Session, viewer: str, has_access: AccessCheck, limit: int = 100
) -> list[SentEmail]:
    policies = dict(session.execute(select(EmailViewPolicy.user_id, EmailViewPolicy.policy)).all())
    policy = effective_view_policy(viewer, policies)
    emails = list(session.execute(select(SentEmail).order_by(SentEmail.sent_at.desc())).scalars())
    related: dict[str, list[RelatedRecord]] = defaultdict(list)
    for row in session.execute(
        select(EmailRelatedRecord).where(EmailRelatedRecord.email_id.in_([e.id for e in emails]))
    ).scalars():
        related[row.email_id].append(RelatedRecord(row.table_name, row.record_id))
    visible = [
        e
        for e in emails
        if can_view(policy, viewer, e.created_by, related[e.id], lambda r: has_access(viewer, r))
    ]
    return visible[:limit]
