"""Writing local sales records the way the application does: stamped with the time and
the user, and waking the sync entries that handle the table, in one transaction."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.sales.models import LOCAL_MODELS, SalesInvoiceLine, table
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
