"""The documented limits of every job-queue entry field, checked in one place.

Business Central's own limits where it has them (Maximum No. of Attempts to Run
1-10, Rerun Delay 0-3,600 s, Inactivity Timeout 0 or at least 5 minutes); sane
bounds for the rest, so that no value an admin can type makes the recurrence
rules overflow. The command line, the console and the API call `check_field`
and `check_entry`, and show the sentence they raise; migration 0005 backs the
numeric bounds with CHECK constraints so that not even raw SQL gets past them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from domain.queue import date_formula

MINUTES_PER_YEAR = 366 * 24 * 60
# Moments a time zone can convert and the rules can add a year or two to.
EARLIEST_MOMENT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_MOMENT = datetime(9990, 12, 31, 23, 59, 59, tzinfo=UTC)


class EntryError(ValueError):
    """An admin request that cannot be carried out; nothing was changed."""


class EntryFieldError(EntryError):
    """A field's value is outside its documented limits. The message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{LABELS.get(field, field)}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class Bound:
    lowest: int
    highest: int
    unit: str
    # A value that is allowed below `lowest` (0 = "off" for the inactivity timeout).
    off: int | None = None

    def describe(self) -> str:
        span = f"{self.lowest} to {self.highest} {self.unit}".rstrip()
        return f"0 (off) or {span}" if self.off is not None else span


NUMBER_BOUNDS: Mapping[str, Bound] = {
    "minutes_between_runs": Bound(0, MINUTES_PER_YEAR, "minutes"),
    "maximum_attempts": Bound(1, 10, "attempts"),
    "rerun_delay_seconds": Bound(0, 3600, "seconds"),
    "job_timeout_seconds": Bound(1, 7 * 24 * 3600, "seconds"),
    "inactivity_timeout_minutes": Bound(5, MINUTES_PER_YEAR, "minutes", off=0),
    "priority": Bound(-1000, 1000, ""),
    # Maximum attempts is at most 10, so a longer streak could never be reached.
    "notify_after_failures": Bound(1, 10, "failed attempts", off=0),
}
RECIPIENTS = ("user", "admins", "user+admins")
FLAGS = ("recurring", "notify_on_failure", "notify_on_success")
TEXT_LENGTHS: Mapping[str, tuple[int, int]] = {
    "code": (1, 40),
    "description": (0, 250),
    "job_name": (1, 100),
    "parameter_string": (0, 2048),
    "user_id": (0, 50),
    "category_code": (1, 20),
}
LABELS: Mapping[str, str] = {
    "code": "code",
    "description": "description",
    "job_name": "job",
    "parameter_string": "parameter",
    "minutes_between_runs": "minutes between runs",
    "maximum_attempts": "maximum attempts",
    "rerun_delay_seconds": "rerun delay",
    "job_timeout_seconds": "job timeout",
    "inactivity_timeout_minutes": "inactivity timeout",
    "priority": "priority",
    "user_id": "user",
    "category_code": "category",
    "earliest_start": "earliest start",
    "expiration": "expiration",
    "starting_time": "starting time",
    "ending_time": "ending time",
    "recurring": "recurring",
    "weekdays": "weekdays",
    "next_run_date_formula": "next run date formula",
    "reference_starting_time": "reference starting time",
    "notify_on_failure": "notify on failure",
    "notify_after_failures": "notify after failures",
    "notify_on_success": "notify on success",
    "notify_recipients": "notify",
}


def check_number(field: str, value: Any) -> int:
    """A whole number inside the field's bounds; the message says which bound and its unit."""
    bound = NUMBER_BOUNDS[field]
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntryFieldError(field, f"{value!r} is not a whole number")
    if bound.off is not None and value == bound.off:
        return value
    unit = f" {bound.unit}" if bound.unit else ""
    if value > bound.highest:
        raise EntryFieldError(field, f"{value} is over the maximum of {bound.highest}{unit}")
    if value < bound.lowest:
        if bound.off is not None:
            raise EntryFieldError(
                field, f"{value} is not 0 (off) and under the minimum of {bound.lowest}{unit}"
            )
        raise EntryFieldError(field, f"{value} is under the minimum of {bound.lowest}{unit}")
    return value


def check_text(field: str, value: Any) -> str:
    lowest, highest = TEXT_LENGTHS[field]
    if not isinstance(value, str):
        raise EntryFieldError(field, f"{value!r} is not text")
    if "\x00" in value:
        raise EntryFieldError(field, "contains a NUL character")
    if len(value) > highest:
        raise EntryFieldError(field, f"{len(value)} characters is over the maximum of {highest}")
    if len(value) < lowest:
        raise EntryFieldError(field, f"must be {lowest} to {highest} characters")
    return value


def check_moment(field: str, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise EntryFieldError(field, f"{value!r} is not a date-time with a time zone")
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise EntryFieldError(
            field, f"{value.isoformat()} cannot be converted to UTC (out of range)"
        ) from None
    if not EARLIEST_MOMENT <= utc <= LATEST_MOMENT:
        raise EntryFieldError(
            field,
            f"{value.isoformat()} is outside {EARLIEST_MOMENT:%Y-%m-%d} to "
            f"{LATEST_MOMENT:%Y-%m-%d} (UTC)",
        )
    return utc


def check_time_of_day(field: str, value: Any) -> time | None:
    if value is None:
        return None
    if not isinstance(value, time) or value.tzinfo is not None:
        raise EntryFieldError(field, f"{value!r} is not a time of day without a time zone")
    return value


def check_field(field: str, value: Any) -> Any:
    """Check one field's value (None clears the nullable ones); returns the value to store."""
    if field in NUMBER_BOUNDS:
        return check_number(field, value)
    if field in TEXT_LENGTHS:
        if field == "category_code" and value is None:
            return None
        return check_text(field, value)
    if field == "earliest_start":
        return check_moment(field, value)
    if field in ("expiration", "reference_starting_time"):
        return None if value is None else check_moment(field, value)
    if field in ("starting_time", "ending_time"):
        return check_time_of_day(field, value)
    if field == "notify_recipients":
        if value not in RECIPIENTS:
            raise EntryFieldError(field, f"{value!r} is not one of {', '.join(RECIPIENTS)}")
        return value
    if field in FLAGS:
        if not isinstance(value, bool):
            raise EntryFieldError(field, f"{value!r} is not yes or no")
        return value
    if field == "next_run_date_formula":
        return check_formula(value)
    if field == "weekdays":
        days = frozenset(value)
        if not days <= frozenset(range(7)):
            raise EntryFieldError(field, f"{sorted(days)} are not weekday numbers 0-6")
        return days
    raise EntryError(f"unknown field {field!r}")


def check_formula(value: Any) -> str | None:
    """A date formula that moves forward (a recurring entry's next run never goes back),
    stored in its normal form (`<1D+CM>`); None or "" clears it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise EntryFieldError("next_run_date_formula", f"{value!r} is not text")
    try:
        formula = date_formula.parse(value)
    except date_formula.DateFormulaError as exc:
        raise EntryFieldError("next_run_date_formula", str(exc)) from None
    if not formula.forward:
        raise EntryFieldError(
            "next_run_date_formula", f"{formula} goes back; a next run must come later"
        )
    if len(str(formula)) > 30:
        raise EntryFieldError("next_run_date_formula", "at most 30 characters")
    return str(formula)


def check_entry(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of a change, checked; the first bad one raises naming itself."""
    return {field: check_field(field, value) for field, value in values.items()}


def help_for(field: str) -> str:
    """The help text of a number option: its bounds and unit."""
    return NUMBER_BOUNDS[field].describe()
