"""Business Central's job-queue telemetry on our run life-cycle log lines: the event ids,
messages and custom dimensions of the Job Queue Lifecycle traces, so queries written
for Business Central's telemetry (customDimensions.eventId == 'AL0000E26', ...) work on
these JSON lines too.

Sources: "Analyzing Job Queue Lifecycle Trace Telemetry" (the 2023 version, with the
cancelled and not-enqueued events) and "Telemetry event IDs" in Microsoft's Business
Central administration docs. An entry here has a number, not a
GUID, as its id; it runs a registered job (`alJobQueueObjectType` "Job"), not an object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from runtime.logs import get_logger

log = get_logger("domain.queue")

CATEGORY = "AL JobQueueEntries"
EVENTS = {
    "enqueued": ("AL0000E24", "Job queue entry enqueued: {id}"),
    "not_enqueued": ("AL0000FNY", "Job queue entry not enqueued: {id}"),
    "started": ("AL0000E25", "Job queue entry started: {id}"),
    "finished": ("AL0000E26", "Job queue entry finished: {id}"),
    "errored": ("AL0000HE7", "Job queue entry errored: {id}"),
    "failed": ("AL0000JRG", "Job queue entry {id} errored after {attempts} attempts"),
    "cancelled": ("AL0000KZV", "Job queue entry cancelled: {id}"),
    "foreground": ("AL0000FMG", "Running job queue once"),
}


def _text(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def dimensions(kind: str, entry: Any, status: str, **extra: Any) -> dict[str, Any]:
    """The custom dimensions of one trace (`kind`: a key of EVENTS) for `entry` (a row
    of job_queue_entries as the run saw it), with `status` the entry's status after it."""
    event_id, message = EVENTS[kind]
    attempts = int(getattr(entry, "attempts", 0) or 0)
    dims = {
        "eventId": event_id,
        "message": message.format(id=entry.id, attempts=attempts),
        "alCategory": CATEGORY,
        "alJobQueueId": str(entry.id),
        "alJobQueueObjectName": entry.job_name,
        "alJobQueueObjectType": "Job",
        "alJobQueueIsRecurring": "Yes" if entry.recurring else "No",
        "alJobQueueStatus": status,
        "alJobQueueNumberOfAttemptsToRun": attempts,
        "alJobQueueMaxNumberOfAttemptsToRun": int(entry.maximum_attempts),
        "alJobQueueEarliestStartDateTime": _text(entry.earliest_start),
        # BC's scheduled task is our run (entry:run_seq): it ties together the enqueued,
        # started and finished traces of one run, as the task id does in BC.
        "alJobQueueScheduledTaskId": f"{entry.id}:{entry.run_seq}",
    }
    return dims | extra


def after_commit(session: Session, event_name: str, kind: str, entry: Any, status: str) -> None:
    """Log the trace once the session's transaction commits (a change rolled back was
    never made), with the dimensions as they are now and the acting user as `user_Id`."""
    actor = session.info.get("actor")  # (who, surface), set by the surface that acts
    dims = dimensions(kind, entry, status, user_Id=str(actor[0]) if actor else "")

    def _emit(_: Session) -> None:
        event.remove(session, "after_rollback", _forget)
        log.info(event_name, **dims)

    def _forget(_: Session) -> None:
        event.remove(session, "after_commit", _emit)

    event.listen(session, "after_commit", _emit, once=True)
    event.listen(session, "after_rollback", _forget, once=True)
