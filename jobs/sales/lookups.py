"""The couplings a chunk of records refers to, read in a few statements per chunk.

`prefetch` loads the couplings of every value a chunk's lookups name (and, for those
not coupled, whether the record exists and why its own sync failed), so building the
chunk's payloads asks the database nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, select

from domain.sales.integration import (
    Coupling,
    IntegrationTableMapping,
    PendingRecord,
    SyncResult,
)
from domain.sales.models import LOCAL_MODELS, table
from domain.sales.payload import RecordError, SkipRecord, record_label

C, M, P = table(Coupling), table(IntegrationTableMapping), table(PendingRecord)
CHUNK = 500


CURRENCY = "lookup:currencies:transactioncurrencies"


class Lookups:
    def __init__(self, db: Engine, base_currency: Callable[[], str] | None = None) -> None:
        self.db = db
        self._base_currency = base_currency
        self._base: str | None = None
        self._ids: dict[tuple[str, str, str], str | None] = {}
        self._exists: dict[tuple[str, str], bool] = {}
        self._failing: dict[tuple[str, str], str] = {}

    def prefetch(self, local_table: str, entity_set: str, values: Iterable[Any]) -> None:
        wanted = sorted(
            {str(v) for v in values if v not in (None, "")}
            - {k[1] for k in self._ids if k[0] == local_table and k[2] == entity_set}
        )
        if not wanted:
            return
        with self.db.connect() as conn:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start : start + CHUNK]
                found = {
                    str(r.local_id): str(r.dataverse_id)
                    for r in conn.execute(
                        select(C.c.local_id, C.c.dataverse_id).where(
                            C.c.local_table == local_table,
                            C.c.dataverse_table == entity_set,
                            C.c.local_id.in_(chunk),
                            C.c.last_result != SyncResult.CREATING,
                        )
                    )
                }
                for value in chunk:
                    self._ids[(local_table, value, entity_set)] = found.get(value)
                missing = [v for v in chunk if v not in found]
                if missing:
                    self._load_missing(conn, local_table, missing)

    def _load_missing(self, conn: Any, local_table: str, values: list[str]) -> None:
        model = LOCAL_MODELS.get(local_table)
        if model is None:
            existing = set(values)  # not a local table of ours: nothing to check
        else:
            t = table(model)
            key = t.primary_key.columns.values()[0]
            existing = {str(v) for v in conn.execute(select(key).where(key.in_(values))).scalars()}
        for value in values:
            self._exists[(local_table, value)] = value in existing
        for local_id, reason in conn.execute(
            select(P.c.local_id, P.c.reason)
            .join(M, M.c.name == P.c.mapping_name)
            .where(
                M.c.local_table == local_table,
                P.c.local_id.in_(values),
                P.c.result == SyncResult.FAILED,
            )
        ):
            self._failing[(local_table, str(local_id))] = str(reason)

    def coupled(self, local_table: str, local_id: str, entity_set: str) -> str | None:
        key = (local_table, str(local_id), entity_set)
        if key not in self._ids:
            self.prefetch(local_table, entity_set, [local_id])
        return self._ids.get(key)

    def remember(self, local_table: str, local_id: str, entity_set: str, row_id: str) -> None:
        """A coupling made in this run: later chunks refer to it without a query."""
        self._ids[(local_table, str(local_id), entity_set)] = row_id

    def currency(self, code: str, attribute: str) -> str:
        """A foreign currency's coupled row; the local currency (blank) is the
        organization's base currency, read once per run."""
        if code:
            return self.lookup(CURRENCY, code, attribute)
        if self._base is None:
            if self._base_currency is None:
                raise RecordError("the Dataverse organization's base currency is not known")
            self._base = self._base_currency()
        return f"/transactioncurrencies({self._base})"

    def lookup(self, transform: str, value: Any, attribute: str) -> str:
        """`lookup:<table>:<set>` -> "/<set>(<id>)". A dependency that does not exist
        fails the record (waiting will not help); one not coupled yet skips it, naming
        why when the dependency's own sync keeps failing."""
        _, local_table, entity_set = transform.split(":")
        found = self.coupled(local_table, str(value), entity_set)
        if found is not None:
            return f"/{entity_set}({found})"
        label = record_label(local_table)
        field_name = attribute.removesuffix("@odata.bind")
        if not self._exists.get((local_table, str(value)), True):
            raise RecordError(f"{label} {value!r} does not exist ({field_name})")
        why = self._failing.get((local_table, str(value)))
        raise SkipRecord(
            f"{label} {value!r} is not coupled to Dataverse yet ({field_name})"
            + (f"; its own sync failed: {why}" if why else "")
        )
