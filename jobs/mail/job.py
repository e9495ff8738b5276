"""The `email-dispatch` job: sends what is queued in the outbox, within each account's
per-minute limit. An empty outbox reports no activity, so the entry may
sleep with its inactivity timeout; composing a message wakes it (data kind
`email-outbox`)."""

from __future__ import annotations

from jobs.mail.compose import OUTBOX_KIND
from jobs.mail.connectors import connector_factory
from jobs.mail.dispatch import MailDispatcher
from jobs.registry import JobContext, JobOutcome, JobParameterError, parse_parameters, registry
from runtime.secrets import SecretBox


def _validate(text: str) -> None:
    params = parse_parameters(text)
    unknown = sorted(set(params) - {"max_seconds"})
    if unknown:
        raise JobParameterError(f"unknown parameter {unknown[0]!r} (allowed: max_seconds)")
    try:
        if float(params.get("max_seconds", "50")) <= 0:
            raise ValueError
    except ValueError:
        raise JobParameterError("max_seconds must be a number > 0") from None


@registry.register("email-dispatch", watches=frozenset({OUTBOX_KIND}), validate=_validate)
def email_dispatch(parameters: str, ctx: JobContext) -> JobOutcome:
    """Sends queued outbox messages within each account's per-minute limit."""
    max_seconds = float(parse_parameters(parameters).get("max_seconds", "50"))
    connectors = connector_factory(ctx.engine, SecretBox.from_env(), ca_file=ctx.settings.ca_file)
    dispatcher = MailDispatcher(ctx.engine, connectors)
    counters = dispatcher.run(max_seconds=max_seconds, cancelled=ctx.cancelled.is_set)
    # Messages waiting for a retry or a later send time keep the entry on its cadence;
    # only an empty outbox lets it sleep.
    activity = bool(counters.sent or counters.failed or counters.waiting)
    return JobOutcome(activity=activity, counters=counters.as_dict())
