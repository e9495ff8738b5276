"""An entry's fields as people type them (the console's form, the API's strings) turned
into the changes `entries.add_entry` / `edit_entry` take, with the same parsers and
limits as the command line; a bad value raises EntryFieldError naming its field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from domain.queue.entries import parse_moment
from domain.queue.limits import FLAGS, EntryFieldError, check_number
from domain.queue.recurrence import parse_weekdays, parse_window

NUMBERS = (
    "minutes_between_runs",
    "maximum_attempts",
    "rerun_delay_seconds",
    "job_timeout_seconds",
    "inactivity_timeout_minutes",
    "priority",
    "notify_after_failures",
)
TEXTS = ("description", "parameter_string", "job_name", "user_id", "next_run_date_formula",
         "notify_recipients")  # fmt: skip
FIELDS = (*TEXTS, *NUMBERS, *FLAGS, "weekdays", "window", "earliest_start",
          "expiration", "category", "reference_starting_time")  # fmt: skip
_TRUE, _FALSE = {"true", "on", "yes", "1"}, {"false", "off", "no", "0", ""}


def changes_from_text(values: Mapping[str, str], tz: tzinfo) -> dict[str, Any]:
    """Only the fields present are changed; unknown names are refused."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise EntryFieldError(unknown[0], f"no such field (fields: {', '.join(FIELDS)})")
    changes: dict[str, Any] = {}
    for name in TEXTS:
        if name in values:
            changes[name] = str(values[name])
    for name in NUMBERS:
        if name in values:
            text = str(values[name]).strip()
            try:
                number = int(text)
            except ValueError:
                raise EntryFieldError(name, f"{text!r} is not a whole number") from None
            changes[name] = check_number(name, number)
    for name in FLAGS:
        if name in values:
            flag = str(values[name]).strip().lower()
            if flag not in _TRUE | _FALSE:
                raise EntryFieldError(name, f"{flag!r} is not yes or no")
            changes[name] = flag in _TRUE
    if "weekdays" in values:
        try:
            changes["weekdays"] = parse_weekdays(str(values["weekdays"]))
        except ValueError as exc:
            raise EntryFieldError("weekdays", str(exc).removeprefix("weekdays ")) from None
    if "window" in values:
        try:
            changes["starting_time"], changes["ending_time"] = parse_window(str(values["window"]))
        except ValueError as exc:
            raise EntryFieldError("window", str(exc).removeprefix("window ")) from None
    if values.get("earliest_start", "").strip():
        changes["earliest_start"] = parse_moment(values["earliest_start"], tz)
    if "expiration" in values:
        text = str(values["expiration"]).strip()
        none = text.lower() in ("", "none")
        changes["expiration"] = None if none else parse_moment(text, tz, "expiration")
    if "reference_starting_time" in values:
        text = str(values["reference_starting_time"]).strip()
        none = text.lower() in ("", "none")
        changes["reference_starting_time"] = (
            None if none else parse_moment(text, tz, "reference_starting_time")
        )
    if "category" in values:
        text = str(values["category"]).strip()
        changes["category_code"] = None if text.lower() in ("", "none") else text
    return changes
