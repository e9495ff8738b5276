"""Issue 17, point 1: Business Central's date formulas, evaluated as CalcDate does, and
the Next Run Date Formula of a recurring entry."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.queue.date_formula import DateFormulaError, parse
from domain.queue.limits import EntryFieldError
from domain.queue.recurrence import Recurrence
from domain.queue.transitions import recurrence_of

SATURDAY = date(2026, 1, 31)  # a month's last day, and a Saturday


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("<1D>", date(2026, 2, 1)),
        ("<1W>", date(2026, 2, 7)),
        ("<1M>", date(2026, 2, 28)),  # January 31st + a month: February's last day
        ("<CM>", date(2026, 1, 31)),
        ("<CM+1D>", date(2026, 2, 1)),
        ("<WD1>", date(2026, 2, 2)),  # the next Monday
        ("<-WD1>", date(2026, 1, 26)),  # the Monday before
        ("<D15>", date(2026, 2, 15)),  # the next 15th
        ("<1Y>", date(2027, 1, 31)),
        ("<-1D>", date(2026, 1, 30)),
        ("<CW+1W+WD1>", date(2026, 2, 9)),  # end of this week, a week on, the next Monday
        ("<-CM>", date(2026, 1, 1)),  # the start of the month
        ("<1Q>", date(2026, 4, 30)),
        ("<CQ>", date(2026, 3, 31)),
        ("<-CY>", date(2026, 1, 1)),
        ("1m+cm", date(2026, 2, 28)),  # brackets and case are optional
    ],
)
def test_formulas_evaluate_as_calcdate_does(formula: str, expected: date) -> None:
    assert parse(formula).apply(SATURDAY) == expected


def test_leap_years_and_month_ends() -> None:
    leap_day = date(2024, 2, 29)
    assert parse("<1Y>").apply(leap_day) == date(2025, 2, 28)
    assert parse("<4Y>").apply(leap_day) == date(2028, 2, 29)
    assert parse("<1M>").apply(leap_day) == date(2024, 3, 29)  # the day is kept, not the end
    assert parse("<CM>").apply(date(2024, 2, 3)) == leap_day
    assert parse("<D31>").apply(date(2026, 2, 1)) == date(2026, 3, 31)  # skips February


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<1X>", "cannot read '1X'"),
        ("<WD8>", "WD takes 1 to 7"),
        ("<D32>", "D takes 1 to 31"),
        ("<1WD>", "WD<n>"),
        ("<>", "at least one term"),
        ("<10000D>", "at most 9999"),
    ],
)
def test_a_bad_formula_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(DateFormulaError, match=reason.replace("(", r"\(")):
        parse(text)


UNITS = st.sampled_from(["D", "W", "M", "Q", "Y"])
TERMS = st.one_of(
    st.builds(lambda n, u: f"{n}{u}", st.integers(0, 120), UNITS),
    st.builds(lambda n: f"WD{n}", st.integers(1, 7)),
    st.builds(lambda n: f"D{n}", st.integers(1, 31)),
    st.builds(lambda u: f"C{u}", st.sampled_from(["D", "W", "M", "Q", "Y"])),
)
FORMULAS = st.lists(TERMS, min_size=1, max_size=3).map(lambda ts: "<" + "+".join(ts) + ">")
DATES = st.dates(date(1900, 1, 1), date(2200, 12, 31))


@settings(max_examples=10_000, deadline=None)
@given(FORMULAS, DATES)
def test_a_forward_formula_never_lands_before_its_reference(text: str, reference: date) -> None:
    formula = parse(text)
    assert formula.forward
    assert formula.apply(reference) >= reference
    assert parse(str(formula)) == formula  # its normal form reads back the same


@settings(max_examples=2_000, deadline=None)
@given(st.integers(1, 60), DATES)
def test_months_keep_the_day_or_take_the_last_one(months: int, reference: date) -> None:
    moved = parse(f"<{months}M>").apply(reference)
    year, month = divmod(reference.year * 12 + reference.month - 1 + months, 12)
    assert (moved.year, moved.month) == (year, month + 1)
    assert moved.day == min(reference.day, calendar.monthrange(moved.year, moved.month)[1])


def test_a_recurring_entry_runs_on_the_dates_of_its_formula_at_its_starting_time() -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Amsterdam")
    rules = Recurrence(formula=parse("<CM>"), starting_time=time(6, 0), tz=tz)
    due = datetime(2026, 1, 31, 6, 0, tzinfo=tz)  # the last run: January's last day
    following = rules.next_after_run(due, due + timedelta(minutes=5))
    assert following == datetime(2026, 2, 28, 6, 0, tzinfo=tz)  # not the same day again
    late = rules.next_after_run(due, datetime(2026, 3, 15, tzinfo=tz))  # down for weeks
    assert late == datetime(2026, 3, 31, 6, 0, tzinfo=tz)


def test_setting_a_formula_clears_weekdays_and_minutes_and_the_other_way_round(
    settings: Any, sessions: Any
) -> None:
    from domain.clock import utcnow
    from domain.queue import entries as ops
    from jobs.registry import registry
    from tests.helpers import add, entry

    add(sessions, settings, "MONTHLY", "noop", recurring=True, minutes_between_runs=60,
        weekdays=frozenset({0, 1}))  # fmt: skip
    with sessions.begin() as session:
        ops.edit_entry(session, "MONTHLY", {"next_run_date_formula": "<cm>"}, registry,
                       utcnow(), settings.tz)  # fmt: skip
    e = entry(sessions, "MONTHLY")
    assert e.next_run_date_formula == "<CM>" and e.minutes_between_runs == 0
    assert recurrence_of(e, settings.tz).weekdays == frozenset(range(7))
    with sessions.begin() as session:
        ops.edit_entry(session, "MONTHLY", {"weekdays": frozenset({2})}, registry, utcnow(),
                       settings.tz)  # fmt: skip
    assert entry(sessions, "MONTHLY").next_run_date_formula is None
    with sessions.begin() as session, pytest.raises(EntryFieldError, match="goes back"):
        ops.edit_entry(session, "MONTHLY", {"next_run_date_formula": "<-1D>"}, registry,
                       utcnow(), settings.tz)  # fmt: skip


def test_the_command_line_sets_and_shows_the_formula(
    settings: Any, sessions: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import add, cli_runner, entry

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    add(sessions, settings, "WEEKLY", "noop", recurring=True)
    run = cli_runner(capsys)
    code, _out, err = run("entries", "set", "WEEKLY", "--next-run-date-formula", "<1W+WD1>")
    assert code == 0, err
    assert entry(sessions, "WEEKLY").next_run_date_formula == "<1W+WD1>"
    code, out, _err = run("entries", "show", "WEEKLY")
    assert "<1W+WD1>" in out
    code, _out, err = run("entries", "set", "WEEKLY", "--next-run-date-formula", "<1X>")
    assert code == 2 and "next run date formula" in err and "cannot read" in err


def test_after_a_run_the_entry_is_due_on_its_formula_date(settings: Any, sessions: Any) -> None:
    from domain.clock import utcnow
    from domain.queue.transitions import after_success, plan_of
    from tests.helpers import add, entry

    add(sessions, settings, "DAILY", "noop", recurring=True, next_run_date_formula="<1D>",
        starting_time=time(8, 0))  # fmt: skip
    row = entry(sessions, "DAILY")
    now = utcnow()
    decision = after_success(plan_of(row, settings.tz), True, now)
    local = decision.earliest_start.astimezone(settings.tz)
    assert local.time() == time(8, 0)
    assert decision.earliest_start > now
    assert local.date() - row.earliest_start.astimezone(settings.tz).date() >= timedelta(days=1)


def test_the_reference_starting_time_anchors_the_minutes_between_runs() -> None:
    """Issue 17, point 2: runs stay on the grid of the reference starting time."""
    from datetime import UTC

    reference = datetime(2026, 11, 23, 8, 5, tzinfo=UTC)
    anchored = Recurrence(minutes_between_runs=15, reference=reference)
    free = Recurrence(minutes_between_runs=15)
    run_now = datetime(2026, 11, 23, 8, 27, tzinfo=UTC)  # an admin's Run now, off the grid
    assert anchored.next_after_run(run_now, run_now + timedelta(minutes=1)) == (
        datetime(2026, 11, 23, 8, 35, tzinfo=UTC))  # fmt: skip
    assert free.next_after_run(run_now, run_now + timedelta(minutes=1)) == (
        datetime(2026, 11, 23, 8, 42, tzinfo=UTC))  # fmt: skip
    late = datetime(2026, 11, 23, 9, 51, tzinfo=UTC)  # the run ended long after its slot
    assert anchored.next_after_run(reference, late) == datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    early = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    assert anchored.next_after_run(early, early) == reference


def test_the_command_line_sets_the_reference_starting_time(
    settings: Any, sessions: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import add, cli_runner, entry

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    add(sessions, settings, "GRID", "noop", recurring=True, minutes_between_runs=15)
    run = cli_runner(capsys)
    code, _out, err = run("entries", "set", "GRID", "--reference-starting-time",
                          "2026-11-23T08:05")  # fmt: skip
    assert code == 0, err
    stored = entry(sessions, "GRID").reference_starting_time
    assert stored is not None and stored.astimezone(settings.tz).strftime("%H:%M") == "08:05"
    code, _out, err = run("entries", "set", "GRID", "--reference-starting-time", "soon")
    assert code == 2 and "reference starting time" in err
