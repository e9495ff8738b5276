"""When a recurring entry may run: minutes between runs, weekdays, a daily window
(which may cross midnight) and an expiration. Pure functions over aware datetimes.

The window belongs to the day it opens on: with 22:00-06:00 and only Monday
enabled, Tuesday 02:00 is inside Monday's window. The ending time is inclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from domain.queue.date_formula import DateFormula

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_WEEKDAYS = frozenset(range(7))
_MIDNIGHT = time(0, 0)


def is_expired(expiration: datetime | None, moment: datetime) -> bool:
    """The one rule of expiry: an entry with an expiration does not run after it."""
    return expiration is not None and moment > expiration


@dataclass(frozen=True)
class Recurrence:
    minutes_between_runs: int = 0
    weekdays: frozenset[int] = ALL_WEEKDAYS  # 0 = Monday
    starting_time: time | None = None
    ending_time: time | None = None
    expiration: datetime | None = None
    tz: tzinfo = UTC
    # A date formula (`<1D>`, `<CM>`): the next run's date comes from it instead of the
    # minutes between runs; the time of day from the starting time.
    formula: DateFormula | None = None
    # The minutes between runs count from here (Business Central's Reference Starting Time).
    reference: datetime | None = None

    @property
    def crosses_midnight(self) -> bool:
        return (
            self.starting_time is not None
            and self.ending_time is not None
            and self.ending_time < self.starting_time
        )

    def window_day(self, moment: datetime) -> date | None:
        """The day whose window holds `moment`, or None when it is outside every window."""
        local = moment.astimezone(self.tz)
        t = local.time().replace(tzinfo=None)
        start = self.starting_time or _MIDNIGHT
        end = self.ending_time
        if self.crosses_midnight:
            assert end is not None
            if t >= start:
                return local.date()
            if t <= end:
                return local.date() - timedelta(days=1)
            return None
        if t < start or (end is not None and t > end):
            return None
        return local.date()

    def allows(self, moment: datetime) -> bool:
        """True when `moment` is inside a window on an enabled weekday and not expired."""
        if is_expired(self.expiration, moment):
            return False
        day = self.window_day(moment)
        return day is not None and day.weekday() in self.weekdays

    def fit(self, candidate: datetime) -> datetime | None:
        """The earliest allowed moment at or after `candidate`; None if there is none."""
        if self.allows(candidate):
            return candidate
        if not self.weekdays:
            return None
        if is_expired(self.expiration, candidate):
            return None
        first = candidate.astimezone(self.tz).date() - timedelta(days=1)
        start = self.starting_time or _MIDNIGHT
        for offset in range(9):
            day = first + timedelta(days=offset)
            if day.weekday() not in self.weekdays:
                continue
            opening = _localize(day, start, self.tz)
            if opening >= candidate and self.allows(opening):
                return opening
        return None

    def _by_formula(self, formula: DateFormula, scheduled: datetime, now: datetime) -> datetime:
        """The first date the formula gives after the run's date (again, past `now`), at
        the starting time or the time of day the run was due."""
        local = scheduled.astimezone(self.tz)
        at = self.starting_time or local.time().replace(tzinfo=None)
        day = _next_day(formula, local.date())
        candidate = _localize(day, at, self.tz)
        while candidate <= now:
            day = _next_day(formula, day)
            candidate = _localize(day, at, self.tz)
        return candidate

    def _on_grid(self, reference: datetime, scheduled: datetime, now: datetime) -> datetime:
        """The first moment reference + k * minutes after both the run and now."""
        step = timedelta(minutes=self.minutes_between_runs)
        after = max(scheduled, now)
        slots = math.floor((after - reference) / step) + 1
        return reference + max(slots, 1) * step if after >= reference else reference

    def next_after_run(self, scheduled: datetime, now: datetime) -> datetime | None:
        """The next run of a recurring entry whose run was due at `scheduled`, seen at `now`.

        With minutes between runs the cadence stays aligned to `scheduled`, skipping
        the slots missed while it ran late; without, it runs once a day at its
        starting time (or at the time of day it last ran).
        """
        if self.formula is not None:
            return self.fit(self._by_formula(self.formula, scheduled, now))
        if self.minutes_between_runs > 0 and self.reference is not None:
            return self.fit(self._on_grid(self.reference, scheduled, now))
        if self.minutes_between_runs > 0:
            step = timedelta(minutes=self.minutes_between_runs)
            candidate = scheduled + step
            if candidate <= now:
                missed = math.ceil((now - scheduled) / step)
                candidate = scheduled + missed * step
                if candidate <= now:
                    candidate += step
        else:
            base = max(scheduled, now)
            local = base.astimezone(self.tz)
            at = self.starting_time or scheduled.astimezone(self.tz).time().replace(tzinfo=None)
            candidate = _localize(local.date(), at, self.tz)
            if candidate <= base:
                candidate = _localize(local.date() + timedelta(days=1), at, self.tz)
        return self.fit(candidate)


def _next_day(formula: DateFormula, day: date) -> date:
    """The formula's date after `day`, at least a day later (`<CM>` on a month's last day
    is that same day: the next one is taken)."""
    following = formula.apply(day)
    return following if following > day else formula.apply(day + timedelta(days=1))


def _localize(day: date, at: time, tz: tzinfo) -> datetime:
    """A local wall-clock time as aware UTC; a time in a DST gap moves forward by the gap."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def parse_weekdays(text: str) -> frozenset[int]:
    """'mon-fri', 'sat,sun', 'all', 'none' -> weekday numbers (0 = Monday)."""
    text = text.strip().lower()
    if text in ("all", "*"):
        return ALL_WEEKDAYS
    if text == "none":
        return frozenset()
    days: set[int] = set()
    for part in text.split(","):
        first, sep, last = (p.strip() for p in part.strip().partition("-"))
        lo, hi = _weekday(first, part), _weekday(last, part) if sep else None
        if hi is None:
            days.add(lo)
        else:
            days.update(range(lo, hi + 1) if lo <= hi else [*range(lo, 7), *range(0, hi + 1)])
    return frozenset(days)


def _weekday(name: str, part: str) -> int:
    """'mon', 'monday', 'Mon' -> 0; anything else is refused with the accepted names."""
    key = name[:3]
    if len(name) < 3 or key not in WEEKDAY_NAMES or not _DAY_WORDS[key].startswith(name):
        raise ValueError(
            f"unknown weekday in {part.strip()!r}; use mon, tue, wed, thu, fri, sat, sun"
        )
    return WEEKDAY_NAMES.index(key)


_DAY_WORDS = dict(
    zip(
        WEEKDAY_NAMES,
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
        strict=True,
    )
)


def format_weekdays(days: frozenset[int]) -> str:
    if days == ALL_WEEKDAYS:
        return "all"
    return ",".join(WEEKDAY_NAMES[d] for d in sorted(days)) or "none"


def parse_window(text: str) -> tuple[time | None, time | None]:
    """'08:00-18:00'; a window that crosses midnight must say so: '22:00-06:00+1'."""
    text = text.strip()
    if text.lower() in ("", "none", "all-day"):
        return None, None
    overnight = text.endswith("+1")
    body = text[:-2] if overnight else text
    first, sep, last = body.partition("-")
    if not sep:
        raise ValueError(f"window {text!r} must look like 08:00-18:00")
    try:
        start = time.fromisoformat(first.strip())
        end = time.fromisoformat(last.strip())
    except ValueError:
        raise ValueError(f"window {text!r} must look like 08:00-18:00") from None
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError(
            f"window {text!r} must not name a time zone: its times are read in "
            "JOBQUEUE_TIMEZONE; write 08:00-18:00"
        )
    if end == start:
        raise ValueError(f"window {text!r} starts and ends at the same time")
    if end < start and not overnight:
        raise ValueError(
            f"window {text!r} ends before it starts; "
            f"write {first.strip()}-{last.strip()}+1 for a window that crosses midnight"
        )
    if end > start and overnight:
        raise ValueError(f"window {text!r} does not cross midnight; drop the +1")
    return start, end


def next_runs(
    recurrence: Recurrence, start: datetime, count: int, recurring: bool
) -> list[datetime]:
    """The next `count` run times from `start` under the rules (fewer when the schedule
    ends): what the console previews as an admin edits a schedule."""
    first = recurrence.fit(start)
    runs = [] if first is None else [first]
    while recurring and runs and len(runs) < count:
        following = recurrence.next_after_run(runs[-1], runs[-1])
        if following is None:
            break
        runs.append(following)
    return runs
