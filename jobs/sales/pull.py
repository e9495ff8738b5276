"""Reading a mapping's changed rows from Dataverse into local records, a page at a time.

What changed comes through jobs.sales.delta (change tracking first, the delta link kept per
mapping): a run reads only what changed since the last one, deletions included. A
refused delta link (expired token) means one full read again; a table that does not
track changes is read by its `modifiedon` watermark instead. Rows the integration user
wrote are ours coming back (their version is remembered, nothing is sent back);
coupled records are updated locally (a local change since the last sync is a
conflict, settled by the mapping's rule); uncoupled rows are coupled to a matching
record or make one, unless the mapping syncs only coupled records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from domain.sales.defaults import INTEGRATION_USER
from domain.sales.integration import (
    Coupling,
    DeletionConflict,
    Direction,
    IntegrationTableMapping,
    PendingRecord,
    RecordSyncState,
    SyncResult,
    UpdateConflict,
)
from domain.sales.models import table
from domain.sales.outcome import Counters, Outcome
from domain.sales.payload import RecordError
from domain.sales.records import IMPORTABLE, FieldValueError, check_value
from domain.sales.row_filter import matches, terms
from jobs.dataverse.client import (
    is_deleted,
    parse_datetime,
    primary_key,
)
from jobs.sales import delta, rereads
from jobs.sales.behaviours import Behaviour
from jobs.sales.books import Books, Couple, Result
from jobs.sales.context import SyncContext
from jobs.sales.mapping import Mapping
from runtime.logs import get_logger

log = get_logger("sales.sync")
PAGE = 1000
C, M, P, S = (
    table(Coupling),
    table(IntegrationTableMapping),
    table(PendingRecord),
    table(RecordSyncState),
)


def _pages(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for row in rows:
        page.append(row)
        if len(page) == PAGE:
            yield page
            page = []
    if page:
        yield page


class Puller:
    def __init__(
        self,
        ctx: SyncContext,
        mapping: Mapping,
        behaviour: Behaviour,
        books: Books,
        cancelled: Callable[[], bool],
        read_waiting: bool = True,
    ) -> None:
        """`read_waiting`: also read again the rows that failed to come in before (not
        for a second read in the same run, which has read them)."""
        self.ctx, self.mapping, self.behaviour, self.books = ctx, mapping, behaviour, books
        self.cancelled = cancelled
        self.fields = mapping.fields_toward(Direction.FROM_DATAVERSE)
        self.key = primary_key(mapping.entity_set)
        self.counters = Counters()
        self.seen: set[str] = set()  # rows read by this run
        self.read_waiting = read_waiting
        self.waiting = rereads.waiting(ctx.db, mapping)  # rows that failed to come in

    def pull(self) -> Counters:
        mapping = self.mapping
        dv_filter = str(mapping.row.dataverse_filter or "")
        attrs = {f.dataverse_attribute for f in self.fields} | {
            self.key,
            "modifiedon",
            "_modifiedby_value",
        }
        attrs |= {name for name, _, _ in terms(dv_filter)}
        attrs |= set(self.behaviour.extra_attributes)
        read = delta.read_changes(self.ctx.client, mapping, sorted(attrs), also=dv_filter)
        for page in _pages(read.rows):
            if self.cancelled():
                return self.counters
            deleted = [str(r.get("id", "")) for r in page if is_deleted(r)]
            rows = [
                r for r in page if not is_deleted(r) and (not dv_filter or matches(dv_filter, r))
            ]
            self._deleted(deleted)
            self._changed(rows)
        if self.read_waiting and not self.cancelled():
            self._read_again(sorted(attrs), dv_filter)
        if not self.cancelled():
            delta.save(self.ctx.db, mapping, read)
        return self.counters

    def _read_again(self, attrs: list[str], dv_filter: str) -> None:
        """Rows that failed to come in before and did not change since: read again, a
        chunk at a time, in case what they wanted is here now (a contact coupled, a unit
        created). Failing as before is no news (no activity); a row deleted or filtered
        out in Dataverse meanwhile is no longer waited for."""
        row_ids = sorted(set(self.waiting) - self.seen)
        entity_set = self.mapping.entity_set
        for rows, gone in rereads.read_again(self.ctx.client, entity_set, attrs, row_ids):
            if self.cancelled():
                return
            kept = [r for r in rows if not dv_filter or matches(dv_filter, r)]
            filtered = [str(r.get(self.key) or "").lower() for r in rows if r not in kept]
            self._changed(kept, gone=gone + filtered)

    # -- deletions -------------------------------------------------------------------------
    def _deleted(self, row_ids: list[str]) -> None:
        """Rows deleted in Dataverse: the mapping's deletion rule (a mapping that only
        reads removes the coupling; the local record stays)."""
        if not row_ids:
            return
        mapping = self.mapping
        with self.ctx.db.connect() as conn:
            coupled = list(
                conn.execute(
                    select(C).where(
                        C.c.dataverse_table == mapping.entity_set, C.c.dataverse_id.in_(row_ids)
                    )
                )
            )
        rule = mapping.row.deletion_conflict
        if mapping.row.direction == Direction.FROM_DATAVERSE:
            rule = DeletionConflict.REMOVE_COUPLING
        results: list[Result] = []
        for c in coupled:
            local_id, row_id = str(c.local_id), str(c.dataverse_id)
            if rule == DeletionConflict.REMOVE_COUPLING:
                results.append(Result(local_id, Outcome.DELETED, uncouple=True))
            elif rule == DeletionConflict.RESTORE:  # the push of this run creates it again
                results.append(
                    Result(
                        local_id,
                        Outcome.DELETED,
                        couple=[
                            Couple(
                                mapping.local_table,
                                local_id,
                                mapping.entity_set,
                                str(uuid.uuid4()),
                                None,
                                SyncResult.CREATING,
                            )
                        ],
                        state=(None, None),
                        resend=f"the coupled {mapping.entity_set}({row_id}) was deleted in "
                        "Dataverse; the next push restores it",
                    )
                )
            else:
                message = f"the coupled {mapping.entity_set}({row_id}) was deleted in Dataverse"
                results.append(Result(local_id, Outcome.FAILED, message, row_id, retry=False))
        self.books.record(results)
        for r in results:
            self.counters.count(r.outcome)

    # -- changes ---------------------------------------------------------------------------
    def _changed(self, rows: list[dict[str, Any]], gone: list[str] | None = None) -> None:
        """`gone`: rows waited for (jobs.sales.rereads) that are no longer there to read."""
        mapping, key = self.mapping, self.key
        t, local_key = mapping.local, mapping.key
        results: list[Result] = []
        ids = [str(r.get(key) or "").lower() for r in rows]
        self.seen.update(ids)
        with self.ctx.db.connect() as conn:
            coupled = {
                str(c.dataverse_id): c
                for c in conn.execute(
                    select(C).where(
                        C.c.dataverse_table == mapping.entity_set,
                        C.c.local_table == mapping.local_table,
                        C.c.dataverse_id.in_([i for i in ids if i]),
                    )
                )
            }
            # Records to compare with their rows: not for a row unchanged or ours coming back.
            ours = self.ctx.integration_user_id
            local_ids = [
                str(c.local_id)
                for r, i in zip(rows, ids, strict=True)
                if (c := coupled.get(i)) is not None
                and c.dataverse_etag != r.get("@odata.etag")
                and r.get("_modifiedby_value") != ours
            ]
            locals_: dict[str, Any] = {}
            states: dict[str, Any] = {}
            if local_ids:
                locals_ = {
                    mapping.local_id(r): r
                    for r in conn.execute(select(t).where(local_key.in_(local_ids)))
                }
                mine = S.c.mapping_name == mapping.name
                states = {
                    str(s.local_id): s
                    for s in conn.execute(select(S).where(mine, S.c.local_id.in_(local_ids)))
                }
            new_rows = [(r, i) for r, i in zip(rows, ids, strict=True) if i and i not in coupled]
            matched: list[str | None] = []
            taken: set[str] = set()
            if new_rows and not mapping.row.only_coupled:
                matched = self.behaviour.match_local(conn, [self._values(r) for r, _ in new_rows])
                taken = self.behaviour.taken_keys(conn)
        now = self.ctx.now()
        stamp = {"modified_at": now, "modified_by": INTEGRATION_USER}
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for row, row_id in zip(rows, ids, strict=True):
            if not row_id:
                results.append(
                    Result(
                        "",
                        Outcome.FAILED,
                        f"a {mapping.entity_set} row without its id",
                        retry=False,
                    )
                )
                continue
            coupling = coupled.get(row_id)
            if coupling is None:
                continue  # below, with the other new rows
            r = self._coupled(row, row_id, coupling, locals_, states, stamp, updates)
            results.append(r)
        if new_rows and not mapping.row.only_coupled:
            unmatched = [r for (r, _), m in zip(new_rows, matched, strict=True) if m is None]
            extras = iter(self.behaviour.new_local_values(self.ctx, unmatched))
            for (row, row_id), match in zip(new_rows, matched, strict=True):
                extra = {} if match is not None else next(extras)
                results.append(self._new(row, row_id, match, extra, taken, stamp, updates, inserts))
        else:
            results += [Result("", Outcome.UNCHANGED) for _ in new_rows]
        with self.ctx.db.begin() as conn:
            if inserts:
                conn.execute(insert(t), inserts)
            if updates:
                conn.execute(
                    update(t).where(local_key == bindparam("_local_key")),
                    updates,
                )
        rereads.no_news(results, self.waiting)
        self.books.record(
            [r for r in results if r.local_id or r.outcome != Outcome.UNCHANGED],
            rows_read=[i for i in ids + (gone or []) if i in self.waiting],
        )
        for r in results:
            self.counters.count(r.outcome)

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        return {f.local_field: row.get(f.dataverse_attribute) for f in self.fields if f.local_field}

    def _converted(self, row: dict[str, Any], row_id: str) -> dict[str, Any]:
        """The row's values as the local columns store them (a date from its text, a
        number as a decimal), by the one check every way in uses; a value that does not
        fit raises RecordError naming the field and the row."""
        target = IMPORTABLE.get(self.mapping.local_table)
        values = self._values(row)
        if target is None:
            return values
        converted = {}
        for name, raw in values.items():
            if raw is None and not target.table.c[name].nullable:
                raw = target.default(name)  # Dataverse's empty number: the local default
            try:
                converted[name] = check_value(target, name, raw)
            except FieldValueError as exc:
                where = f"in {self.mapping.entity_set}({row_id})"
                raise RecordError(f"{exc.field}: {exc.reason} ({where})") from None
        return converted

    def _blank(self, row: dict[str, Any], row_id: str) -> str | None:
        for f in self.fields:
            if f.validate and row.get(f.dataverse_attribute) in (None, ""):
                return f"{f.dataverse_attribute} is blank in {self.mapping.entity_set}({row_id})"
        return None

    def _coupled(
        self,
        row: dict[str, Any],
        row_id: str,
        coupling: Any,
        locals_: dict[str, Any],
        states: dict[str, Any],
        stamp: dict[str, Any],
        updates: list[dict[str, Any]],
    ) -> Result:
        mapping = self.mapping
        etag = row.get("@odata.etag")
        local_id = str(coupling.local_id)
        modified = parse_datetime(row.get("modifiedon"))
        if coupling.dataverse_etag == etag:
            return Result(local_id, Outcome.UNCHANGED)
        couple = Couple(mapping.local_table, local_id, mapping.entity_set, row_id, etag)
        if row.get("_modifiedby_value") == self.ctx.integration_user_id:
            # Our own write coming back: remember its version, send nothing back.
            return Result(local_id, Outcome.UNCHANGED, couple=[couple])
        blank = self._blank(row, row_id)
        if blank is not None:
            return Result(local_id, Outcome.FAILED, blank, row_id, retry=False)
        local = locals_.get(local_id)
        if local is None:
            return Result(local_id, Outcome.DELETED, uncouple=True)
        state = states.get(local_id)
        local_changed = local.modified_by != INTEGRATION_USER and (
            state is None or state.last_local_modified != local.modified_at
        )
        rule = mapping.row.update_conflict
        if local_changed and rule != UpdateConflict.GET_DATAVERSE:
            if rule == UpdateConflict.SEND_LOCAL:
                return Result(local_id, Outcome.UNCHANGED)  # the push sends the local version
            message = (
                f"update conflict: {mapping.local_table} {local_id} and "
                f"{mapping.entity_set}({row_id}) both changed since the last sync; "
                "neither overwritten"
            )
            conflict = Couple(
                mapping.local_table,
                local_id,
                mapping.entity_set,
                row_id,
                coupling.dataverse_etag,
                SyncResult.CONFLICT,
            )
            return Result(
                local_id, Outcome.CONFLICT, message, row_id, couple=[conflict], retry=False
            )
        try:
            values = self._converted(row, row_id)
        except RecordError as exc:
            return Result(local_id, Outcome.FAILED, str(exc), row_id, retry=False)
        updates.append({"_local_key": local_id, **values, **stamp})
        return Result(
            local_id,
            Outcome.MODIFIED,
            couple=[couple],
            state=(stamp["modified_at"], modified),
        )

    def _new(
        self,
        row: dict[str, Any],
        row_id: str,
        match: str | None,
        extra: dict[str, Any] | str,
        taken: set[str],
        stamp: dict[str, Any],
        updates: list[dict[str, Any]],
        inserts: list[dict[str, Any]],
    ) -> Result:
        mapping = self.mapping
        if row.get("_modifiedby_value") == self.ctx.integration_user_id:
            return Result("", Outcome.UNCHANGED)
        blank = self._blank(row, row_id)
        if blank is not None:
            return Result("", Outcome.FAILED, blank, row_id, retry=False)
        if isinstance(extra, str):  # a reference not coupled here yet
            return Result("", Outcome.FAILED, extra, row_id, retry=False)
        try:
            values = self._converted(row, row_id) | extra
        except RecordError as exc:
            return Result(match or "", Outcome.FAILED, str(exc), row_id, retry=False)
        local_id = match
        if local_id is None:
            local_id = self.behaviour.new_local_key(values, taken)
            if local_id is None:
                message = (
                    f"{mapping.entity_set}({row_id}) has no coupled {mapping.local_table} "
                    f"record and {mapping.name} does not create them; couple it or sync only "
                    "coupled records"
                )
                return Result("", Outcome.SKIPPED, message, row_id, retry=False)
            inserts.append({mapping.key.name: local_id, **values, **stamp})
        else:
            updates.append({"_local_key": local_id, **values, **stamp})
        etag = row.get("@odata.etag")
        couple = Couple(mapping.local_table, local_id, mapping.entity_set, row_id, etag)
        return Result(
            local_id,
            Outcome.INSERTED,
            couple=[couple],
            state=(stamp["modified_at"], parse_datetime(row.get("modifiedon"))),
        )
