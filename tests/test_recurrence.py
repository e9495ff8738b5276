"""Recurrence rules: examples, then hypothesis properties for the invariants."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.queue.recurrence import (
    ALL_WEEKDAYS,
    Recurrence,
    format_weekdays,
    parse_weekdays,
    parse_window,
)

AMS = ZoneInfo("Europe/Amsterdam")


def at(text: str, tz: ZoneInfo | None = None) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=tz or UTC)


def test_every_30_minutes_keeps_its_cadence() -> None:
    rec = Recurrence(minutes_between_runs=30)
    assert rec.next_after_run(at("2026-11-23T10:00"), at("2026-11-23T10:05")) == at(
        "2026-11-23T10:30"
    )


def test_a_late_run_skips_missed_slots_instead_of_bursting() -> None:
    rec = Recurrence(minutes_between_runs=30)
    nxt = rec.next_after_run(at("2026-11-23T10:00"), at("2026-11-23T11:40"))
    assert nxt == at("2026-11-23T12:00")


def test_outside_the_window_moves_to_the_next_window_start() -> None:
    rec = Recurrence(minutes_between_runs=30, starting_time=time(8), ending_time=time(18), tz=AMS)
    nxt = rec.next_after_run(at("2026-11-23T17:45", AMS), at("2026-11-23T17:46", AMS))
    assert nxt == at("2026-11-24T08:00", AMS)


def test_disabled_weekdays_are_skipped() -> None:
    # 2026-11-27 is a Friday; mon-fri only, so Friday 18:00 -> Monday 08:00
    rec = Recurrence(
        minutes_between_runs=60,
        weekdays=parse_weekdays("mon-fri"),
        starting_time=time(8),
        ending_time=time(18),
    )
    nxt = rec.next_after_run(at("2026-11-27T17:30"), at("2026-11-27T17:31"))
    assert nxt == at("2026-11-30T08:00")


def test_window_crossing_midnight_belongs_to_the_day_it_opens() -> None:
    # Only Monday enabled; 22:00-06:00 window: Tuesday 02:00 is in Monday's window.
    rec = Recurrence(
        minutes_between_runs=60,
        weekdays=frozenset({0}),
        starting_time=time(22),
        ending_time=time(6),
    )
    assert rec.allows(at("2026-11-24T02:00"))  # Tuesday early morning
    assert not rec.allows(at("2026-11-24T22:30"))  # Tuesday evening: Tuesday's window
    assert rec.next_after_run(at("2026-11-24T05:30"), at("2026-11-24T05:31")) == at(
        "2026-11-30T22:00"
    )


def test_expiration_ends_the_recurrence() -> None:
    rec = Recurrence(minutes_between_runs=30, expiration=at("2026-11-23T10:20"))
    assert rec.next_after_run(at("2026-11-23T10:00"), at("2026-11-23T10:01")) is None


def test_daily_run_without_minutes_runs_at_the_starting_time_next_day() -> None:
    rec = Recurrence(starting_time=time(7), tz=AMS)
    nxt = rec.next_after_run(at("2026-11-23T07:00", AMS), at("2026-11-23T07:03", AMS))
    assert nxt == at("2026-11-24T07:00", AMS)


def test_window_start_in_a_dst_gap_moves_forward() -> None:
    # 2026-03-29 02:00-03:00 does not exist in Amsterdam.
    rec = Recurrence(
        minutes_between_runs=60, starting_time=time(2, 30), ending_time=time(5), tz=AMS
    )
    nxt = rec.fit(at("2026-03-29T00:10"))
    assert nxt is not None and rec.allows(nxt)
    assert nxt.astimezone(AMS).hour == 3


def test_no_weekday_means_no_run() -> None:
    assert (
        Recurrence(minutes_between_runs=5, weekdays=frozenset()).fit(at("2026-11-23T10:00")) is None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("sat,sun", {5, 6}),
        ("fri-mon", {4, 5, 6, 0}),
        ("all", set(range(7))),
    ],
)
def test_parse_weekdays(text: str, expected: set[int]) -> None:
    assert parse_weekdays(text) == frozenset(expected)
    assert parse_weekdays(format_weekdays(frozenset(expected))) == frozenset(expected)


@pytest.mark.parametrize("text", ["monday-funday", "xyz", "mo", "mon-"])
def test_unknown_weekday_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="weekday"):
        parse_weekdays(text)


def test_window_must_say_when_it_crosses_midnight() -> None:
    assert parse_window("08:00-18:00") == (time(8), time(18))
    assert parse_window("22:00-06:00+1") == (time(22), time(6))
    with pytest.raises(ValueError, match=r"\+1"):
        parse_window("22:00-06:00")
    with pytest.raises(ValueError, match="same time"):
        parse_window("08:00-08:00")
    with pytest.raises(ValueError, match="look like"):
        parse_window("8 to 6")


# --- properties -------------------------------------------------------------------------

zones = st.sampled_from([UTC, AMS, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")])
moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
times = st.times().map(lambda t: t.replace(microsecond=0, second=0))


@st.composite
def recurrences(draw: st.DrawFn) -> Recurrence:
    start = draw(st.none() | times)
    end = draw(st.none() | times)
    if start is not None and end is not None and start == end:
        end = None
    expiration = draw(st.none() | moments)
    return Recurrence(
        minutes_between_runs=draw(st.sampled_from([0, 1, 5, 15, 30, 60, 90, 720, 1440, 10080])),
        weekdays=draw(st.frozensets(st.integers(0, 6), min_size=1)),
        starting_time=start,
        ending_time=end,
        expiration=expiration,
        tz=draw(zones),
    )


@settings(max_examples=400, deadline=None)
@given(rec=recurrences(), scheduled=moments, lateness=st.integers(0, 3 * 24 * 3600))
def test_next_run_invariants(rec: Recurrence, scheduled: datetime, lateness: int) -> None:
    now = scheduled + timedelta(seconds=lateness)
    nxt = rec.next_after_run(scheduled, now)
    if nxt is None:
        return
    assert nxt > now, "a next run is in the future"
    assert nxt >= scheduled, "never before the earliest start"
    day = rec.window_day(nxt)
    assert day is not None, "never outside the window"
    assert day.weekday() in rec.weekdays, "never on a disabled weekday"
    if rec.expiration is not None:
        assert nxt <= rec.expiration, "never after expiration"


@settings(max_examples=400, deadline=None)
@given(rec=recurrences(), candidate=moments)
def test_fit_returns_the_earliest_allowed_moment(rec: Recurrence, candidate: datetime) -> None:
    fitted = rec.fit(candidate)
    if fitted is None:
        # nothing allowed in the next week, or expired: every whole minute up to 8 days is refused
        limit = min(candidate + timedelta(days=8), rec.expiration or candidate + timedelta(days=8))
        probe = candidate
        while probe <= limit:
            assert not rec.allows(probe)
            probe += timedelta(minutes=37)
        return
    assert fitted >= candidate
    assert rec.allows(fitted)
    # nothing allowed strictly between candidate and fitted (200 evenly spaced probes)
    gap = fitted - candidate
    for i in range(1, 200):
        probe = candidate + gap * i / 200
        if probe < fitted - timedelta(seconds=1):
            assert not rec.allows(probe), f"{probe} is allowed but earlier than {fitted}"


def test_all_weekdays_constant() -> None:
    assert frozenset(range(7)) == ALL_WEEKDAYS
