"""Writing local sales records the way the application does: stamped with the time and
the user, and waking the sync entries that handle the table, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.sales.models import LOCAL_MODELS, SalesInvoiceLine, table
from domain.sales.records import LocalTable
from jobs.wakeup import data_changed


def save(
    session: Session,
    table_name: str,
    values: dict[str, Any],
    *,
    user: str,
    tz: tzinfo,
    now: datetime | None = None,
    lines: list[dict[str, Any]] | None = None,
) -> None:
    """Inserts or updates one record (by its key) and wakes the entries watching it."""
    if table_name not in LOCAL_MODELS:
        raise ValueError(f"no local sales table {table_name!r} (known: {sorted(LOCAL_MODELS)})")
    t = table(LOCAL_MODELS[table_name])
    key = t.primary_key.columns.values()[0]
    unknown = set(values) - set(t.c.keys())
    if unknown:
        raise ValueError(f"{table_name} has no field {sorted(unknown)[0]!r}")
    now = now or utcnow()
    stamped = values | {"modified_at": now, "modified_by": user}
    if table_name == "customers" and {"balance", "total_sales", "outstanding_orders"} & set(values):
        stamped["statistics_modified_at"] = now
    exists = (
        key.name in values and session.execute(select(key).where(key == values[key.name])).first()
    )
    if exists:
        session.execute(update(t).where(key == values[key.name]).values(**stamped))
    else:
        session.execute(insert(t).values(**stamped))
    if lines:
        session.execute(insert(table(SalesInvoiceLine)), lines)
    data_changed(session, table_name, tz, now=now)


@dataclass(frozen=True)
class Saved:
    inserted: int
    updated: int


CHUNK = 1000


def save_many(
    session: Session,
    target: LocalTable,
    records: list[dict[str, Any]],
    *,
    user: str,
    tz: tzinfo,
    now: datetime | None = None,
) -> Saved:
    """Upserts checked records (`domain.sales.records.check_record`) by their business
    key, a chunk at a time (one read, one insert and one update per chunk and set of
    fields), stamps them, and wakes the entries watching the table once."""
    now = now or utcnow()
    t = target.table
    stamp = {"modified_at": now, "modified_by": user} if "modified_at" in t.c else {}
    if target.name == "customers" and any(
        {"balance", "total_sales", "outstanding_orders"} & set(r) for r in records
    ):
        stamp["statistics_modified_at"] = now
    pk = [c.name for c in t.primary_key.columns]
    inserted = updated = 0
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        existing = _existing(session, target, chunk)
        news, olds = [], []
        for record in chunk:
            found = existing.get(target.key_of(record))
            if found is None:
                news.append(record | stamp)
            else:
                olds.append(record | stamp | {f"b_{c}": v for c, v in zip(pk, found, strict=True)})
        for group in _by_fields(news):
            session.execute(insert(t), group)
        for group in _by_fields(olds):
            fields = [f for f in group[0] if not f.startswith("b_")]
            session.execute(
                update(t)
                .where(*[t.c[c] == bindparam(f"b_{c}") for c in pk])
                .values({f: bindparam(f) for f in fields}),
                group,
            )
        inserted, updated = inserted + len(news), updated + len(olds)
    # Lines change with their document: the entries watching the documents wake.
    kind = {"sales_invoice_lines": "sales_invoice_headers", "sales_lines": "sales_headers"}.get(
        target.name, target.name
    )
    data_changed(session, kind, tz, now=now)
    return Saved(inserted, updated)


def _existing(
    session: Session, target: LocalTable, chunk: list[dict[str, Any]]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """Business key -> primary key of the chunk's records already stored (read by the
    key's first column, matched in Python so an empty date matches an empty date)."""
    t = target.table
    first = target.key[0]
    pk = t.primary_key.columns.values()
    firsts = {target.key_of(r)[0] for r in chunk}
    rows = session.execute(
        select(*[t.c[k] for k in target.key], *pk).where(t.c[first].in_(firsts))
    ).all()
    width = len(target.key)
    return {tuple(row[:width]): tuple(row[width:]) for row in rows}


def _by_fields(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by the set of fields they give (one executemany per group)."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())
