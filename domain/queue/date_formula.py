"""Business Central's date formulas (DateFormula, CalcDate): `<1D>`, `<1W>`, `<1M>`,
`<CM>`, `<CM+1D>`, `<WD1>`, `<D15>`, `<1Y>`, `<-1D>`, `<CW+1W+WD1>`.

A formula is subexpressions read left to right, each `[sign] term`, a term being
`<number><unit>` (move by that many units), `<unit><number>` (the next weekday or day
of the month with that number, not the reference date itself; backwards with `-`) or
`C<unit>` (the end of the current week, month, quarter or year; its start with `-`).
Units: D day, WD weekday, W week, M month, Q quarter, Y year. Weeks run Monday (1) to
Sunday (7). Months move by calendar month and keep the day, or the month's last day
when the month is shorter (Jan 31 + 1M = Feb 28 or 29), as CalcDate does.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

_TERM = re.compile(r"([+-]?)(?:(\d+)(WD|D|W|M|Q|Y)|(WD|D)(\d+)|C(D|W|M|Q|Y))")
MAX_NUMBER = 9999  # larger moves leave the calendar (year 9999) long before they mean anything


class DateFormulaError(ValueError):
    pass


@dataclass(frozen=True)
class Term:
    sign: int  # +1 or -1
    kind: str  # "move", "next" (WD3, D15) or "current" (CM)
    unit: str
    number: int = 0


@dataclass(frozen=True)
class DateFormula:
    terms: tuple[Term, ...]
    text: str

    def __str__(self) -> str:
        return self.text

    @property
    def forward(self) -> bool:
        """No term moves backwards (what keeps a recurring entry's next run ahead)."""
        return all(t.sign > 0 for t in self.terms) and bool(self.terms)

    def apply(self, reference: date) -> date:
        result = reference
        for term in self.terms:
            result = _apply(term, result)
        return result


def parse(text: str) -> DateFormula:
    """`<1M+CM>` or `1M+CM` (any case, no spaces needed); a bad formula raises
    DateFormulaError saying where it stops making sense."""
    body = text.strip().upper().replace(" ", "")
    if body.startswith("<") and body.endswith(">"):
        body = body[1:-1]
    if not body:
        raise DateFormulaError("a date formula needs at least one term, like <1D> or <CM>")
    terms: list[Term] = []
    position = 0
    while position < len(body):
        match = _TERM.match(body, position)
        if match is None:
            raise DateFormulaError(
                f"date formula {text.strip()!r}: cannot read {body[position:]!r} (terms look "
                "like 1D, 2W, 1M, 1Q, 1Y, WD1, D15, CM, each with an optional + or -)"
            )
        sign = -1 if match.group(1) == "-" else 1
        if match.group(2):
            number, unit, kind = int(match.group(2)), match.group(3), "move"
        elif match.group(4):
            unit, number, kind = match.group(4), int(match.group(5)), "next"
            highest = 7 if unit == "WD" else 31
            if not 1 <= number <= highest:
                raise DateFormulaError(f"{unit}{number}: {unit} takes 1 to {highest}")
        else:
            unit, number, kind = match.group(6), 0, "current"
        if number > MAX_NUMBER:
            raise DateFormulaError(f"{number}{unit}: at most {MAX_NUMBER}")
        if kind == "move" and unit == "WD":
            raise DateFormulaError(f"{number}WD: a weekday is chosen by WD<n> (WD1 = Monday)")
        terms.append(Term(sign, kind, unit, number))
        position = match.end()
    return DateFormula(tuple(terms), f"<{body}>")


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise DateFormulaError("the date formula leaves the calendar")
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def _apply(term: Term, day: date) -> date:
    try:
        if term.kind == "move":
            if term.unit == "D":
                return day + timedelta(days=term.sign * term.number)
            if term.unit == "W":
                return day + timedelta(weeks=term.sign * term.number)
            months = {"M": 1, "Q": 3, "Y": 12}[term.unit] * term.number * term.sign
            return _add_months(day, months)
        if term.kind == "next":
            step = timedelta(days=term.sign)
            candidate = day + step
            for _ in range(400):  # a day of the month 29-31 may skip months
                if (term.unit == "WD" and candidate.isoweekday() == term.number) or (
                    term.unit == "D" and candidate.day == term.number
                ):
                    return candidate
                candidate += step
            raise DateFormulaError(f"{term.unit}{term.number}: no such day")
        return _current(term, day)
    except OverflowError:
        raise DateFormulaError("the date formula leaves the calendar") from None


def _current(term: Term, day: date) -> date:
    """The end (sign +) or the start (sign -) of the current day, week, month, quarter, year."""
    if term.unit == "D":
        return day
    if term.unit == "W":
        monday = day - timedelta(days=day.weekday())
        return monday if term.sign < 0 else monday + timedelta(days=6)
    if term.unit == "Y":
        return date(day.year, 1, 1) if term.sign < 0 else date(day.year, 12, 31)
    first_month = day.month if term.unit == "M" else 3 * ((day.month - 1) // 3) + 1
    start = date(day.year, first_month, 1)
    if term.sign < 0:
        return start
    span = 1 if term.unit == "M" else 3
    return _add_months(start, span) - timedelta(days=1)
