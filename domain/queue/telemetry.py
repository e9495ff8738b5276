"""Business Central's job-queue telemetry on our run life-cycle log lines: the event ids,
messages and custom dimensions of the Job Queue Lifecycle traces, so queries written
for Business Central's telemetry (customDimensions.eventId == 'AL0000E26', ...) work on
these JSON lines too.

Sources: "Analyzing Job Queue Lifecycle Trace Telemetry" and "Telemetry event IDs" in
Microsoft's Business Central administration docs. An entry here has a number, not a
GUID, as its id; it runs a registered job (`alJobQueueObjectType` "Job"), not an object.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

CATEGORY = "AL JobQueueEntries"
EVENTS = {
    "enqueued": ("AL0000E24", "Job queue entry enqueued: {id}"),
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
    }
    return dims | extra
