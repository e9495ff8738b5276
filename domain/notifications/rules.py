"""When a run notifies, and what it says (pure rules).

Business Central notifies the entry's user when a run fails and, with "Notify On
Success", when it succeeds; its "job queue task failed" business event is what Power
Automate flows subscribe to. Here a notice goes by email (the "Job Queue" scenario) to
the entry's user and/or the admins, and as a signed JSON POST to the configured
webhooks. A failure streak notifies once: after N failed attempts in a row when the
entry asks for that, else when the last attempt failed (the entry is in Error).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

SCENARIO = "Job Queue"  # the email scenario an admin assigns an account to
FAILED, SUCCEEDED = "jobqueue.entry.failed", "jobqueue.entry.succeeded"


@dataclass(frozen=True)
class Notice:
    """One notification of one run."""

    type: str  # FAILED or SUCCEEDED
    entry_id: int
    code: str
    description: str
    job_name: str
    run_id: str
    status: str  # the entry's status after the run
    attempts: int
    maximum_attempts: int
    user: str
    recipients: str  # "user", "admins" or "user+admins"
    error: str | None
    at: datetime

    @property
    def to_user(self) -> bool:
        return self.recipients in ("user", "user+admins")

    @property
    def to_admins(self) -> bool:
        return self.recipients in ("admins", "user+admins")


def failure_due(attempts: int, after_failures: int, final: bool) -> bool:
    """Once per streak: at the Nth failed attempt in a row (N > 0), or when the last
    attempt failed, unless the streak already reached N before."""
    if after_failures > 0 and attempts == after_failures:
        return True
    return final and (after_failures == 0 or attempts < after_failures)


def notice_for(
    entry: Any, succeeded: bool, status_after: str, error: str | None, now: datetime
) -> Notice | None:
    """The notice this run owes, if any (`entry`: the entry as the run claimed it, its
    attempts counting this one)."""
    if succeeded:
        if not entry.notify_on_success:
            return None
        kind = SUCCEEDED
    else:
        final = status_after == "Error"
        if not (entry.notify_on_failure and failure_due(
            entry.attempts, entry.notify_after_failures, final
        )):  # fmt: skip
            return None
        kind = FAILED
    return Notice(
        type=kind,
        entry_id=entry.id,
        code=entry.code,
        description=entry.description or "",
        job_name=entry.job_name,
        run_id=f"{entry.id}:{entry.run_seq}",
        status=status_after,
        attempts=int(entry.attempts),
        maximum_attempts=int(entry.maximum_attempts),
        user=entry.user_id or "",
        recipients=entry.notify_recipients,
        error=None if succeeded else (error or ""),
        at=now,
    )


def subject(notice: Notice) -> str:
    if notice.type == SUCCEEDED:
        return f"Job queue entry {notice.code} ran successfully"
    tried = f"{notice.attempts} of {notice.maximum_attempts} attempts"
    return f"Job queue entry {notice.code} failed ({tried})"


def body(notice: Notice) -> str:
    lines = [
        f"Job queue entry: {notice.code}"
        + (f" ({notice.description})" if notice.description else ""),
        f"Job: {notice.job_name}",
        f"Run: {notice.run_id} at {notice.at:%Y-%m-%d %H:%M:%S} UTC",
        f"Attempts: {notice.attempts} of {notice.maximum_attempts}",
        f"Status now: {notice.status}",
    ]
    if notice.error is not None:
        lines.append(f"Error: {notice.error}")
    if notice.type == FAILED and notice.status == "Error":
        lines.append("The entry stopped; set it Ready again once the cause is fixed.")
    return "\n".join(lines) + "\n"


def payload(notice: Notice) -> dict[str, Any]:
    """The webhook body in the Standard Webhooks shape (type, timestamp, data)."""
    return {
        "type": notice.type,
        "timestamp": notice.at.isoformat(),
        "data": {
            "entryId": notice.entry_id,
            "code": notice.code,
            "description": notice.description,
            "job": notice.job_name,
            "runId": notice.run_id,
            "status": notice.status,
            "attempts": notice.attempts,
            "maximumAttempts": notice.maximum_attempts,
            "user": notice.user,
            "error": notice.error,
        },
    }


def describe(entry: Any) -> str:
    """An entry's notification settings in a few words, as listings show them."""
    when = []
    if entry.notify_on_failure:
        n = entry.notify_after_failures
        when.append(f"on failure after {n} in a row" if n else "on failure after the last attempt")
    if entry.notify_on_success:
        when.append("on success")
    if not when:
        return "never"
    return f"{', '.join(when)}; to {entry.notify_recipients.replace('+', ' and ')}"
