"""`data import`: the back office's records coming in from a file (CSV with a header
row, or JSON lines) or an API call. Every row is checked first; one bad row refuses the
whole import with a line per bad row, and nothing is written. A good import upserts by
business key in one transaction and wakes the entries that sync the table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from domain.sales.payload import record_label
from domain.sales.records import FieldValueError, LocalTable, check_record, local_table
from jobs.sales.local import Saved, save_many

SHOWN_ERRORS = 20  # a file with thousands of bad rows names the first ones and counts the rest
FORMATS = ("csv", "jsonl")


class ImportRefused(ValueError):
    """Rows that cannot be imported, one line each ("line 7: unit_price: ...")."""

    def __init__(self, errors: list[str], total: int | None = None) -> None:
        total = len(errors) if total is None else total
        shown = errors[:SHOWN_ERRORS]
        if total > len(shown):
            shown.append(f"... and {total - len(shown)} more")
        super().__init__("\n".join(shown))
        self.errors = shown


def rows_of_file(path: Path, fmt: str | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, row) of a CSV file with a header row, or of a JSON lines file;
    the format comes from the file's suffix unless given."""
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    if fmt not in FORMATS:
        raise ImportRefused([f"format: {fmt!r} is not one of {', '.join(FORMATS)}"])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            [f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from None
    except OSError as exc:
        raise ImportRefused([f"{path}: {exc.strerror or exc}"]) from None
    yield from rows_of_text(text, fmt)


def rows_of_text(text: str, fmt: str) -> Iterator[tuple[int, Any]]:
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            if None in row:  # more cells than the header has columns
                yield reader.line_num, {"": "has more cells than the header row"}
            else:
                yield reader.line_num, {k.strip(): v for k, v in row.items()}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {"": f"not JSON ({exc.msg} at column {exc.colno})"}


def import_rows(
    session: Session,
    table_name: str,
    rows: Iterable[tuple[int, Any]],
    *,
    user: str,
    tz: tzinfo,
    now: datetime | None = None,
) -> Saved:
    """Check every row, then write them all (in the caller's transaction) or none."""
    try:
        target = local_table(table_name)
    except FieldValueError as exc:
        raise ImportRefused([str(exc)]) from None
    records: list[tuple[int, dict[str, Any]]] = []
    errors: list[str] = []
    seen: dict[tuple[Any, ...], int] = {}
    for number, row in rows:
        try:
            record = _checked(target, row)
        except FieldValueError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        key = target.key_of(record)
        if key in seen:
            errors.append(f"line {number}: the same record as line {seen[key]} ({_shown(key)})")
            continue
        seen[key] = number
        records.append((number, record))
    errors += _missing_references(session, target, records)
    if errors:
        raise ImportRefused(errors)
    if not records:
        raise ImportRefused(["no rows to import"])
    return save_many(session, target, [r for _, r in records], user=user, tz=tz, now=now)


def _checked(target: LocalTable, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise FieldValueError("row", f"must be an object of fields, not {type(row).__name__}")
    if "" in row:
        raise FieldValueError("row", str(row[""]))
    return check_record(target, row)


def _missing_references(
    session: Session, target: LocalTable, records: list[tuple[int, dict[str, Any]]]
) -> list[str]:
    """A value that refers to another table (an invoice line's invoice, an opportunity's
    contact, a sales line's document) must name a record there: one read per reference,
    a line per bad row."""
    errors = []
    position = {c.name: i for i, c in enumerate(target.table.columns)}
    constraints = sorted(
        target.table.foreign_key_constraints, key=lambda k: position[k.column_keys[0]]
    )
    for constraint in constraints:
        names = list(constraint.column_keys)
        columns = [element.column for element in constraint.elements]

        def refers(record: dict[str, Any], names: list[str] = names) -> tuple[Any, ...] | None:
            values = tuple(record.get(name) for name in names)
            return None if any(v in (None, "") for v in values) else values

        wanted = {key for _, r in records if (key := refers(r)) is not None}
        if not wanted:
            continue
        found = {tuple(row) for row in session.execute(
            select(*columns).where(tuple_(*columns).in_(wanted)))}  # fmt: skip
        label = record_label(columns[0].table.name)
        for n, r in records:
            key = refers(r)
            if key is not None and key not in found:
                shown = " ".join(str(v) for v in key)
                errors.append(f"line {n}: {', '.join(names)}: no {label} {shown!r}")
    return errors


def _shown(key: tuple[Any, ...]) -> str:
    return ", ".join("" if v is None else str(v) for v in key)
