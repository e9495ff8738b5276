"""The `email-logging` job: one pass over the shared mailbox's Inbox.

An Inbox with nothing to log or move reports no activity, so the entry sleeps with its
inactivity timeout; a new message wakes it at its next recurrence (Exchange does not
tell us), a sign-in or access failure fails the run so the entry's attempts apply.
"""

from __future__ import annotations

from domain.interactions.models import EmailLoggingSetup
from jobs.email_logging.logger import EmailLogger
from jobs.email_logging.setup import EmailLoggingSetupError, load_setup, open_mailbox
from jobs.registry import JobContext, JobOutcome, JobParameterError, parse_parameters, registry
from runtime.secrets import SecretBox


def _validate(text: str) -> None:
    if parse_parameters(text):
        raise JobParameterError("email-logging takes no parameters (see email-logging setup)")


@registry.register("email-logging", validate=_validate)
def email_logging(parameters: str, ctx: JobContext) -> JobOutcome:
    """Logs the shared mailbox's messages between salespeople and contacts."""
    with ctx.session_factory() as session:
        row: EmailLoggingSetup = load_setup(session)
        session.expunge(row)
    if not row.enabled:
        raise EmailLoggingSetupError("email logging is disabled (jobqueue email-logging enable)")
    mailbox = open_mailbox(row, SecretBox.from_env(), ctx.settings.verify)
    try:
        counters = EmailLogger(
            ctx.engine,
            mailbox,
            batch_size=row.batch_size,
            cancelled=ctx.cancelled.is_set,
        ).run()
    finally:
        mailbox.close()
    return JobOutcome(activity=counters.activity, counters=counters.as_dict())
