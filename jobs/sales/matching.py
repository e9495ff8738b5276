"""Coupling tools: match-based coupling (Business Central's "Match-Based Coupling"),
coupling one record to a row by hand, and uncoupling.

Matching pairs uncoupled local records with uncoupled Dataverse rows whose chosen
fields are equal (case and surrounding spaces ignored). The preview is a plan: it is
saved, shown, and applied as it is, so exactly the previewed pairs are coupled. A pair
whose record or row was coupled, changed in the fields matched on, or removed since is
left out with its reason. Coupled records are queued for the mapping's next run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select

from domain.sales.integration import Coupling, PendingRecord, SyncResult
from domain.sales.models import table
from jobs.dataverse.client import DataverseClient, primary_key
from jobs.sales.couplings import by_dataverse, find, find_by_dataverse, find_many
from jobs.sales.couplings import couple as couple_row
from jobs.sales.mapping import Mapping, load_mapping

C, P = table(Coupling), table(PendingRecord)
QUEUED = "coupled by hand or by match; synchronized by the next run"


class CouplingError(ValueError):
    """A coupling the tools refuse, naming why."""


@dataclass(frozen=True)
class Pair:
    local_id: str
    row_id: str
    values: list[str]  # the matched values, as stored locally


@dataclass
class Plan:
    mapping: str
    on: list[str]  # local fields
    attributes: list[str]  # the Dataverse attributes they map to
    pairs: list[Pair] = field(default_factory=list)
    ambiguous: dict[str, int] = field(default_factory=dict)  # local id -> candidate rows
    unmatched: int = 0

    @property
    def fingerprint(self) -> str:
        """Names this exact plan: what `apply` couples is what was previewed."""
        text = json.dumps([self.mapping, self.on, [asdict(p) for p in self.pairs]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "fingerprint": self.fingerprint}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
            plan = cls(data["mapping"], list(data["on"]), list(data["attributes"]),
                       [Pair(**p) for p in data["pairs"]], dict(data.get("ambiguous", {})),
                       int(data.get("unmatched", 0)))  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise CouplingError(f"not a match plan: {exc}") from None
        if data.get("fingerprint") != plan.fingerprint:
            raise CouplingError("the plan was changed after it was previewed; preview again")
        return plan


def _key(values: list[Any]) -> tuple[str, ...] | None:
    """Values compared as people would: case and surrounding spaces ignored; a blank
    value matches nothing."""
    texts = tuple(str(v).strip().casefold() for v in values)
    return None if any(not t or t == "none" for t in texts) else texts


def _attributes(mapping: Mapping, on: list[str]) -> list[str]:
    by_field = {f.local_field: f.dataverse_attribute for f in mapping.fields
                if f.local_field and not f.transform and f.constant is None}  # fmt: skip
    missing = [name for name in on if name not in by_field]
    if not on or missing:
        choices = ", ".join(sorted(by_field))
        raise CouplingError(
            f"match on: {missing[0] if missing else '(nothing)'} is not a plain field of "
            f"{mapping.name} (fields: {choices})"
        )
    return [by_field[name] for name in on]


def preview(db: Engine, client: DataverseClient, mapping_name: str, on: list[str]) -> Plan:
    """The pairs matching on these local fields would couple (nothing is written)."""
    with db.connect() as conn:
        mapping = _mapping(conn, mapping_name)
        attributes = _attributes(mapping, on)
        t, key = mapping.local, mapping.key
        coupled_local = select(C.c.local_id).where(
            C.c.local_table == mapping.local_table, C.c.dataverse_table == mapping.entity_set
        )
        local_rows = conn.execute(
            select(key, *[t.c[name] for name in on]).where(key.not_in(coupled_local))
        ).all()
        coupled_rows = set(
            conn.execute(
                select(C.c.dataverse_id).where(C.c.dataverse_table == mapping.entity_set)
            ).scalars()
        )
    pk = primary_key(mapping.entity_set)
    index: dict[tuple[str, ...], list[str]] = {}
    for row in client.query(mapping.entity_set, [pk, *attributes], key=pk):
        if str(row[pk]) in coupled_rows:
            continue
        found = _key([row.get(a) for a in attributes])
        if found is not None:
            index.setdefault(found, []).append(str(row[pk]))
    plan = Plan(mapping.name, on, attributes)
    claimed: dict[str, list[str]] = {}
    for record in local_rows:
        local_id, values = str(record[0]), list(record[1:])
        found = _key(values)
        rows = index.get(found, []) if found is not None else []
        if len(rows) == 1:
            claimed.setdefault(rows[0], []).append(local_id)
            plan.pairs.append(Pair(local_id, rows[0], [str(v) for v in values]))
        elif rows:
            plan.ambiguous[local_id] = len(rows)
        else:
            plan.unmatched += 1
    for row_id, local_ids in claimed.items():  # one row, several records: none of them
        if len(local_ids) > 1:
            plan.pairs = [p for p in plan.pairs if p.row_id != row_id]
            plan.ambiguous.update({local_id: 1 for local_id in local_ids})
    plan.pairs.sort(key=lambda p: p.local_id)
    return plan


APPLY_CHUNK = 50  # pairs read back per request (the $filter stays far below URL limits)


def apply(db: Engine, client: DataverseClient, plan: Plan, now: datetime) -> list[str]:
    """Couples the plan's pairs, each still as previewed; returns a line per pair left
    out, saying why. Per chunk of pairs: one read of their rows from Dataverse, one
    transaction here."""
    left_out: list[str] = []
    with db.connect() as conn:
        mapping = _mapping(conn, plan.mapping)
    if _attributes(mapping, plan.on) != plan.attributes:
        raise CouplingError("the mapping's fields changed since the preview; preview again")
    pk = primary_key(mapping.entity_set)
    for start in range(0, len(plan.pairs), APPLY_CHUNK):
        chunk = plan.pairs[start : start + APPLY_CHUNK]
        wanted = " or ".join(f"{pk} eq {p.row_id}" for p in chunk)
        rows = {
            str(r[pk]).lower(): r
            for r in client.query(mapping.entity_set, [pk, *plan.attributes], f"({wanted})", key=pk)
        }
        still: list[tuple[Pair, Any]] = []
        for pair in chunk:
            row = rows.get(pair.row_id.lower())
            if row is None:
                left_out.append(f"{pair.local_id}: the Dataverse row {pair.row_id} is gone")
            elif _key([row.get(a) for a in plan.attributes]) != _key(pair.values):
                left_out.append(f"{pair.local_id}: the Dataverse row no longer matches")
            else:
                still.append((pair, row.get("@odata.etag")))
        with db.begin() as conn:
            left_out += _couple_many(conn, mapping, still, now)
    return left_out


def _couple_many(
    conn: Connection, mapping: Mapping, pairs: list[tuple[Pair, Any]], now: datetime
) -> list[str]:
    """Couples the pairs whose record exists and neither side is coupled (read in three
    queries); returns a line per pair refused."""
    local_ids = [p.local_id for p, _ in pairs]
    existing = {
        str(k)
        for k in conn.execute(select(mapping.key).where(mapping.key.in_(local_ids))).scalars()
    }
    coupled = {
        str(c.local_id) for c in find_many(conn, mapping.local_table, local_ids, mapping.entity_set)
    }
    taken = {
        row_id: str(c.local_id)
        for (_, row_id), c in by_dataverse(
            conn, {mapping.entity_set: {p.row_id for p, _ in pairs}}
        ).items()
    }
    refused: list[str] = []
    couplings: list[dict[str, Any]] = []
    for pair, etag in pairs:
        local_id, row_id = pair.local_id, pair.row_id
        if local_id not in existing:
            refused.append(f"{local_id}: no {mapping.local_table} record {local_id!r}")
        elif local_id in coupled:
            refused.append(f"{local_id}: {mapping.local_table} {local_id!r} is coupled already")
        elif row_id in taken:
            refused.append(f"{local_id}: the row {row_id} is coupled already to {taken[row_id]!r}")
        else:
            couplings.append({
                "local_table": mapping.local_table, "local_id": local_id,
                "dataverse_table": mapping.entity_set, "dataverse_id": row_id,
                "dataverse_etag": str(etag) if etag else None,
                "last_result": SyncResult.SUCCESS, "last_synced_at": now,
            })  # fmt: skip
    if couplings:
        coupled_ids = [c["local_id"] for c in couplings]
        conn.execute(insert(C), couplings)
        _queue(conn, mapping, coupled_ids, now)
    return refused


def _queue(conn: Connection, mapping: Mapping, local_ids: list[str], now: datetime) -> None:
    """The coupled records wait for the mapping's next run."""
    conn.execute(delete(P).where(P.c.mapping_name == mapping.name, P.c.local_id.in_(local_ids)))
    conn.execute(
        insert(P),
        [
            {"mapping_name": mapping.name, "local_id": local_id, "result": SyncResult.SKIPPED,
             "reason": QUEUED, "since": now}
            for local_id in local_ids
        ],
    )  # fmt: skip


def couple(
    db: Engine, client: DataverseClient, mapping_name: str, local_id: str, row_id: str,
    now: datetime,
) -> None:  # fmt: skip
    """Couple one local record to an existing Dataverse row, by hand."""
    with db.connect() as conn:
        mapping = _mapping(conn, mapping_name)
    pk = primary_key(mapping.entity_set)
    row = client.get(mapping.entity_set, row_id, [pk])
    if row is None:
        raise CouplingError(f"no {mapping.entity_set} row {row_id} in Dataverse")
    with db.begin() as conn:
        _couple(conn, mapping, local_id, row_id, row.get("@odata.etag"), now)


def uncouple(db: Engine, mapping_name: str, local_id: str) -> str:
    """Remove a record's coupling (neither side is deleted); returns the row it had."""
    with db.begin() as conn:
        mapping = _mapping(conn, mapping_name)
        found = find(conn, mapping.local_table, local_id, mapping.entity_set)
        if found is None:
            raise CouplingError(f"{mapping.local_table} {local_id!r} is not coupled")
        conn.execute(delete(C).where(C.c.id == found.id))
        conn.execute(delete(P).where(P.c.mapping_name == mapping.name, P.c.local_id == local_id))
    return str(found.dataverse_id)


def _mapping(conn: Connection, name: str) -> Mapping:
    try:
        return load_mapping(conn, name)
    except LookupError as exc:
        raise CouplingError(str(exc)) from None


def _couple(
    conn: Connection, mapping: Mapping, local_id: str, row_id: str, etag: Any, now: datetime
) -> None:
    key = mapping.key
    if conn.execute(select(key).where(key == local_id)).first() is None:
        raise CouplingError(f"no {mapping.local_table} record {local_id!r}")
    if find(conn, mapping.local_table, local_id, mapping.entity_set) is not None:
        raise CouplingError(f"{mapping.local_table} {local_id!r} is coupled already")
    other = find_by_dataverse(conn, mapping.entity_set, row_id)
    if other is not None:
        raise CouplingError(f"the row {row_id} is coupled already to {other.local_id!r}")
    couple_row(conn, mapping.local_table, local_id, mapping.entity_set, row_id,
               str(etag) if etag else None, now)  # fmt: skip
    _queue(conn, mapping, [local_id], now)
