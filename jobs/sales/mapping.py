"""An integration table mapping as a run uses it: its row, its field mappings and the
shipped definition it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, exists, select

from domain.sales.defaults import BY_NAME, MappingDef
from domain.sales.integration import (
    Direction,
    IntegrationFieldMapping,
    IntegrationTableMapping,
    PendingRow,
)
from domain.sales.models import LOCAL_MODELS, table

M, F, PR = table(IntegrationTableMapping), table(IntegrationFieldMapping), table(PendingRow)
# Whether rows read from Dataverse wait to be read again, known with the mapping (a run
# that has none spends no statement on them).
_WAITING = exists().where(PR.c.mapping_name == M.c.name).label("rows_waiting")


@dataclass
class Mapping:
    row: Any
    fields: list[Any]
    spec: MappingDef | None

    @property
    def name(self) -> str:
        return str(self.row.name)

    @property
    def rows_waiting(self) -> bool:
        """Rows read from Dataverse failed to come in and wait to be read again."""
        return bool(getattr(self.row, "rows_waiting", False))

    @property
    def local_table(self) -> str:
        return str(self.row.local_table)

    @property
    def entity_set(self) -> str:
        return str(self.row.dataverse_table)

    @property
    def modified_field(self) -> str:
        return self.spec.modified_field if self.spec else "modified_at"

    @property
    def creates(self) -> bool:
        return self.spec.creates if self.spec else True

    @property
    def local(self) -> Table:
        return table(LOCAL_MODELS[self.local_table])

    @property
    def key(self) -> Column[Any]:
        """The local table's key column: the record's business key (item no., customer no.)."""
        return self.local.primary_key.columns.values()[0]

    def local_id(self, row: Any) -> str:
        return str(row._mapping[self.key.name])

    def fields_toward(self, direction: Direction) -> list[Any]:
        return [f for f in self.fields if f.direction in (direction, Direction.BIDIRECTIONAL)]


def load_mapping(conn: Connection, name: str) -> Mapping:
    row = conn.execute(select(M, _WAITING).where(M.c.name == name)).one_or_none()
    if row is None:
        raise LookupError(f"no integration table mapping named {name!r}")
    fields = list(
        conn.execute(select(F).where(F.c.mapping_name == name).order_by(F.c.position)).all()
    )
    return Mapping(row, fields, BY_NAME.get(name))


def reloaded(db: Engine, mapping: Mapping) -> Mapping:
    """The mapping with its row read again (where the last read left off); its field
    mappings stay as the run loaded them."""
    with db.connect() as conn:
        row = conn.execute(select(M, _WAITING).where(M.c.name == mapping.name)).one()
    return Mapping(row, mapping.fields, mapping.spec)
