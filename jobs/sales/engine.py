"""The synchronization engine: runs one integration table mapping in its direction.

To Dataverse: local records modified since the mapping's watermark (re-read with a
short overlap, so a transaction that committed late is not missed), plus the records
skipped or failed before. Each is written alone: a dependency that is not coupled
yet skips it with the reason (it is retried next run, and the run that couples the
dependency wakes this mapping's entry); a create reserves the row id first, so it is
never made twice; an update carries the ETag last seen, so a row changed in
Dataverse since is a conflict, resolved by the mapping's rule or recorded.

From Dataverse: rows modified since the watermark, except those the integration
user wrote (no ping-pong); coupled records are updated locally (conflicts as
above); uncoupled rows are coupled to a matching record or create one, unless the
mapping syncs only coupled records.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from domain.clock import utcnow
from domain.sales.defaults import BY_NAME, INTEGRATION_USER, MappingDef
from domain.sales.integration import (
    DeletionConflict,
    Direction,
    IntegrationFieldMapping,
    IntegrationTableMapping,
    PendingRecord,
    RecordSyncState,
    SyncError,
    SyncResult,
    SyncRun,
    UpdateConflict,
)
from domain.sales.models import LOCAL_MODELS, table
from jobs.dataverse.client import (
    DataverseClient,
    DataverseError,
    NotFound,
    PreconditionFailed,
    Written,
    odata_datetime,
    parse_datetime,
)
from jobs.sales import couplings
from jobs.sales.behaviours import Behaviour, behaviour_for
from jobs.wakeup import data_changed
from runtime.logs import get_logger

log = get_logger("sales.sync")
OVERLAP = timedelta(seconds=60)
M = table(IntegrationTableMapping)
F = table(IntegrationFieldMapping)
P = table(PendingRecord)
S = table(RecordSyncState)
R = table(SyncRun)
ERR = table(SyncError)


class SkipRecord(Exception):
    """The record cannot be synced yet (a dependency is not coupled); not an error."""


class RecordError(Exception):
    """The record is wrong for the mapping (a required value is blank)."""


@dataclass
class Counters:
    inserted: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    failed_again: int = 0  # retried unchanged, and failed as before: no news
    conflicts: int = 0

    def add(self, other: Counters) -> None:
        for key, value in other.__dict__.items():
            setattr(self, key, getattr(self, key) + value)

    @property
    def activity(self) -> bool:
        """Whether the run did or learned something. Records that only failed again as
        they did before are no activity: the entry may sleep, and they are retried when
        it wakes (its inactivity timeout, a change to them or what they depend on)."""
        return bool(self.inserted or self.modified or self.deleted or self.failed or self.conflicts)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class SyncContext:
    """What a mapping's behaviour may use while one record is written."""

    db: Engine
    client: DataverseClient
    integration_user_id: str
    now: Callable[[], datetime]
    cache: dict[str, Any] = field(default_factory=dict)

    def coupled(self, local_table: str, local_id: str, entity_set: str) -> str | None:
        key = f"{local_table}|{local_id}|{entity_set}"
        if key not in self.cache:
            with self.db.connect() as conn:
                found = couplings.dataverse_id(conn, local_table, local_id, entity_set)
            if found is None:
                return None  # not cached: it may be coupled later in this run
            self.cache[key] = found
        return str(self.cache[key])

    def lookup(self, transform: str, value: Any, attribute: str) -> str:
        """`lookup:<table>:<set>` -> "/<set>(<id>)". A dependency that does not exist
        fails the record (waiting will not help); one not coupled yet skips it, naming
        why when the dependency's own sync keeps failing."""
        _, local_table, entity_set = transform.split(":")
        found = self.coupled(local_table, str(value), entity_set)
        if found is None:
            label = _record_label(local_table)
            field_name = attribute.removesuffix("@odata.bind")
            if not self._exists(local_table, value):
                raise RecordError(f"{label} {value!r} does not exist ({field_name})")
            why = self._pending_reason(local_table, value)
            raise SkipRecord(
                f"{label} {value!r} is not coupled to Dataverse yet ({field_name})"
                + (f"; its own sync failed: {why}" if why else "")
            )
        return f"/{entity_set}({found})"

    def _exists(self, local_table: str, value: Any) -> bool:
        model = LOCAL_MODELS.get(local_table)
        if model is None:
            return True  # not a local table of ours: nothing to check
        t = table(model)
        key = t.primary_key.columns.values()[0]
        with self.db.connect() as conn:
            return conn.execute(select(key).where(key == value)).first() is not None

    def _pending_reason(self, local_table: str, value: Any) -> str | None:
        """The reason the dependency's own sync last failed, if it is failing."""
        with self.db.connect() as conn:
            return conn.execute(
                select(P.c.reason)
                .join(M, M.c.name == P.c.mapping_name)
                .where(
                    M.c.local_table == local_table,
                    P.c.local_id == str(value),
                    P.c.result == SyncResult.FAILED,
                )
            ).scalar()


def _key_name(mapping: Mapping) -> str:
    """The local table's key column: the record's business key (item no., customer no.)."""
    key = table(LOCAL_MODELS[mapping.row.local_table]).primary_key.columns.values()[0]
    return str(key.name)


def _record_label(local_table: str) -> str:
    """'units_of_measure' -> 'unit of measure', 'customer_price_groups' -> 'customer
    price group', 'items' -> 'item'."""
    words = local_table.split("_")
    head = 0 if "of" in words else len(words) - 1  # the noun that is plural
    words[head] = words[head].removesuffix("s")
    return " ".join(words)


def to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return odata_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class Mapping:
    row: Any
    fields: list[Any]
    spec: MappingDef | None

    @property
    def name(self) -> str:
        return str(self.row.name)

    @property
    def modified_field(self) -> str:
        return self.spec.modified_field if self.spec else "modified_at"

    @property
    def creates(self) -> bool:
        return self.spec.creates if self.spec else True

    def fields_toward(self, direction: Direction) -> list[Any]:
        return [f for f in self.fields if f.direction in (direction, Direction.BIDIRECTIONAL)]


def load_mapping(conn: Connection, name: str) -> Mapping:
    row = conn.execute(select(M).where(M.c.name == name)).one_or_none()
    if row is None:
        raise LookupError(f"no integration table mapping named {name!r}")
    fields = list(
        conn.execute(select(F).where(F.c.mapping_name == name).order_by(F.c.position)).all()
    )
    return Mapping(row, fields, BY_NAME.get(name))


class SyncEngine:
    def __init__(
        self,
        db: Engine,
        client: DataverseClient,
        integration_user_id: str,
        *,
        tz: tzinfo,
        clock: Callable[[], datetime] = utcnow,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db = db
        self.ctx = SyncContext(db, client, integration_user_id, clock)
        self.tz = tz
        self.clock = clock
        self.cancelled = cancelled

    @property
    def client(self) -> DataverseClient:
        return self.ctx.client

    def run(self, name: str, job_run_id: str = "") -> Counters:
        with self.db.begin() as conn:
            mapping = load_mapping(conn, name)
            run_id = conn.execute(
                insert(R)
                .values(mapping_name=name, job_run_id=job_run_id, started_at=self.clock())
                .returning(R.c.id)
            ).scalar_one()
        behaviour = behaviour_for(name)
        counters = Counters()
        direction = mapping.row.direction
        if direction in (Direction.FROM_DATAVERSE, Direction.BIDIRECTIONAL):
            counters.add(self._from_dataverse(mapping, run_id))
        if direction in (Direction.TO_DATAVERSE, Direction.BIDIRECTIONAL):
            counters.add(self._to_dataverse(mapping, behaviour, run_id))
        with self.db.begin() as conn:
            recorded = counters.as_dict()  # the run's row counts every failure as failed
            recorded["failed"] += recorded.pop("failed_again")
            conn.execute(
                update(R).where(R.c.id == run_id).values(finished_at=self.clock(), **recorded)
            )
        log.info("sales.sync_run", mapping=name, run_id=run_id, **counters.as_dict())
        return counters

    # -- bookkeeping -----------------------------------------------------------------------
    def _error(
        self,
        conn: Connection,
        run_id: int,
        mapping: Mapping,
        local_id: str,
        result: SyncResult,
        message: str,
        dataverse_id: str = "",
    ) -> None:
        conn.execute(
            insert(ERR).values(
                run_id=run_id,
                mapping_name=mapping.name,
                local_id=local_id,
                dataverse_id=dataverse_id,
                result=result,
                message=message,
                at=self.clock(),
            )
        )
        log.warning(
            f"sales.record_{result.value.lower()}",
            mapping=mapping.name,
            local_id=local_id,
            dataverse_id=dataverse_id,
            reason=message,
        )

    def _pending(
        self, conn: Connection, mapping: Mapping, local_id: str, result: SyncResult, reason: str
    ) -> None:
        conn.execute(delete(P).where(P.c.mapping_name == mapping.name, P.c.local_id == local_id))
        conn.execute(
            insert(P).values(
                mapping_name=mapping.name,
                local_id=local_id,
                result=result,
                reason=reason,
                since=self.clock(),
            )
        )

    def _done(
        self,
        conn: Connection,
        mapping: Mapping,
        local_id: str,
        local_modified: datetime | None,
        dataverse_modified: datetime | None,
    ) -> None:
        conn.execute(delete(P).where(P.c.mapping_name == mapping.name, P.c.local_id == local_id))
        conn.execute(delete(S).where(S.c.mapping_name == mapping.name, S.c.local_id == local_id))
        conn.execute(
            insert(S).values(
                mapping_name=mapping.name,
                local_id=local_id,
                last_local_modified=local_modified,
                last_dataverse_modified=dataverse_modified,
            )
        )

    def _state(self, conn: Connection, mapping: Mapping, local_id: str) -> Any | None:
        return conn.execute(
            select(S).where(S.c.mapping_name == mapping.name, S.c.local_id == local_id)
        ).one_or_none()

    # -- to Dataverse ----------------------------------------------------------------------
    def _candidates(
        self, mapping: Mapping
    ) -> tuple[list[Any], datetime | None, set[str], set[str]]:
        """The records to push: changed since the watermark, and the pending ones (failed
        or skipped before). Also returns the watermark, the pending records, and those of
        them that did not change since (their run is only a retry)."""
        model = LOCAL_MODELS[mapping.row.local_table]
        t = table(model)
        key = t.primary_key.columns.values()[0]
        modified = t.c[mapping.modified_field]
        filters = [
            (t.c[name] != spec["ne"]) if isinstance(spec, dict) else (t.c[name] == spec)
            for name, spec in (mapping.row.local_filter or {}).items()
        ]
        with self.db.connect() as conn:
            pending_since = {
                str(r.local_id): r.since
                for r in conn.execute(
                    select(P.c.local_id, P.c.since).where(P.c.mapping_name == mapping.name)
                )
            }
            pending = set(pending_since)
            changed = select(t).where(*filters).where(modified.is_not(None))
            if mapping.row.local_watermark is not None:
                since = mapping.row.local_watermark - OVERLAP
                changed = changed.where(modified >= since)
            rows = {str(r._mapping[key.name]): r for r in conn.execute(changed.order_by(modified))}
            watermark = max((r._mapping[modified.name] for r in rows.values()), default=None)
            missing = [p for p in pending if p not in rows]
            if missing:
                keys = [int(p) for p in missing] if key.type.python_type is int else missing
                for r in conn.execute(select(t).where(*filters).where(key.in_(keys))):
                    rows[str(r._mapping[key.name])] = r
        unchanged = {
            local_id
            for local_id, row in rows.items()
            if local_id in pending_since
            and (
                row._mapping[modified.name] is None
                or row._mapping[modified.name] <= pending_since[local_id]
            )
        }
        return list(rows.values()), watermark, pending, unchanged

    def _known(
        self, mapping: Mapping, local_ids: list[str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Couplings and sync states of a run's records, read in a few statements rather
        than per record."""
        found_couplings: dict[str, Any] = {}
        states: dict[str, Any] = {}
        with self.db.connect() as conn:
            for start in range(0, len(local_ids), 500):
                chunk = local_ids[start : start + 500]
                for c in couplings.find_many(
                    conn, mapping.row.local_table, chunk, mapping.row.dataverse_table
                ):
                    found_couplings[str(c.local_id)] = c
                for st in conn.execute(
                    select(S).where(S.c.mapping_name == mapping.name, S.c.local_id.in_(chunk))
                ):
                    states[str(st.local_id)] = st
        return found_couplings, states

    def _to_dataverse(self, mapping: Mapping, behaviour: Behaviour, run_id: int) -> Counters:
        counters = Counters()
        rows, watermark, pending, retry_only = self._candidates(mapping)
        fields = mapping.fields_toward(Direction.TO_DATAVERSE)
        t = table(LOCAL_MODELS[mapping.row.local_table])
        key = t.primary_key.columns.values()[0].name
        found, states = self._known(mapping, [str(r._mapping[key]) for r in rows])
        coupled_any = False
        for row in rows:
            if self.cancelled():
                watermark = None  # not all were read; the next run starts where this one did
                break
            local_id = str(row._mapping[key])
            outcome = self._push(
                mapping,
                behaviour,
                fields,
                row,
                local_id,
                run_id,
                coupling=found.get(local_id),
                state=states.get(local_id),
                is_pending=local_id in pending,
            )
            if outcome == "failed" and local_id in retry_only:
                outcome = "failed_again"
            setattr(counters, outcome, getattr(counters, outcome) + 1)
            coupled_any |= outcome == "inserted"
        if watermark is not None:
            with self.db.begin() as conn:
                conn.execute(
                    update(M).where(M.c.name == mapping.name).values(local_watermark=watermark)
                )
        if coupled_any:
            self._wake(f"coupled:{mapping.row.local_table}")
        return counters

    def _wake(self, kind: str) -> None:
        """Entries that skipped records waiting for these couplings run again now."""
        with Session(self.db) as session, session.begin():
            data_changed(session, kind, self.tz)

    def _payload(self, mapping: Mapping, fields: list[Any], row: Any) -> dict[str, Any]:
        values = row._mapping
        payload: dict[str, Any] = {}
        for f in fields:
            if f.constant is not None:
                payload[f.dataverse_attribute] = json.loads(f.constant)
                continue
            value = values[f.local_field]
            blank = value is None or value == ""
            if blank and f.validate:
                raise RecordError(f"{f.local_field} must not be blank")
            transform = f.transform or ""
            if transform.startswith("lookup:"):
                if not blank:
                    payload[f.dataverse_attribute] = self.ctx.lookup(
                        transform, value, f.dataverse_attribute
                    )
            elif transform == "owner":
                user = (
                    self.ctx.coupled("salespersons", str(value), "systemusers")
                    if not blank
                    else None
                )
                if user is not None:
                    payload[f.dataverse_attribute] = f"/systemusers({user})"
                elif not blank:  # owned by the integration user; say so, do not hide it
                    log.warning(
                        "sales.owner_not_coupled",
                        mapping=mapping.name,
                        record=str(values[_key_name(mapping)]),
                        salesperson=str(value),
                        reason=f"salesperson {value!r} has no coupled Dataverse user; the "
                        "record is owned by the integration user",
                    )
            elif transform == "state":
                payload[f.dataverse_attribute] = 1 if value else 0
            else:
                payload[f.dataverse_attribute] = to_json(value)
        return payload

    def _push(
        self,
        mapping: Mapping,
        behaviour: Behaviour,
        fields: list[Any],
        row: Any,
        local_id: str,
        run_id: int,
        *,
        coupling: Any | None,
        state: Any | None,
        is_pending: bool,
    ) -> str:
        local_table, entity_set = mapping.row.local_table, mapping.row.dataverse_table
        modified = row._mapping[mapping.modified_field]
        # A recorded conflict waits for the admin (or a new local change), not for every run.
        done = coupling is not None and coupling.last_result in (
            SyncResult.SUCCESS,
            SyncResult.CONFLICT,
        )
        if done and not is_pending and state is not None and state.last_local_modified == modified:
            return "unchanged"
        if (
            done
            and getattr(row, "modified_by", "") == INTEGRATION_USER
            and mapping.modified_field == "modified_at"
        ):
            with self.db.begin() as conn:  # written by this integration: nothing to send back
                self._done(
                    conn,
                    mapping,
                    local_id,
                    modified,
                    state.last_dataverse_modified if state else None,
                )
            return "unchanged"
        if coupling is None and not mapping.creates:
            return "unchanged"  # only coupled records are updated
        try:
            payload = self._payload(mapping, fields, row) | behaviour.extra_payload(self.ctx, row)
            if coupling is None or coupling.last_result == SyncResult.CREATING:
                written = self._create(mapping, behaviour, row, local_id, payload, coupling)
                outcome = "inserted"
            else:
                updated, outcome = self._update(mapping, row, local_id, payload, coupling, run_id)
                if updated is None:
                    return outcome
                written = updated
            behaviour.after_write(self.ctx, row, written, outcome == "inserted")
        except SkipRecord as exc:
            with self.db.begin() as conn:
                self._pending(conn, mapping, local_id, SyncResult.SKIPPED, str(exc))
                self._error(conn, run_id, mapping, local_id, SyncResult.SKIPPED, str(exc))
            return "skipped"
        except (DataverseError, RecordError) as exc:
            with self.db.begin() as conn:
                self._pending(conn, mapping, local_id, SyncResult.FAILED, str(exc))
                self._error(conn, run_id, mapping, local_id, SyncResult.FAILED, str(exc))
            return "failed"
        with self.db.begin() as conn:
            couplings.couple(
                conn, local_table, local_id, entity_set, written.id, written.etag, self.clock()
            )
            self._done(conn, mapping, local_id, modified, written.modifiedon)
        self.ctx.cache[f"{local_table}|{local_id}|{entity_set}"] = written.id
        return outcome

    def _create(
        self,
        mapping: Mapping,
        behaviour: Behaviour,
        row: Any,
        local_id: str,
        payload: dict[str, Any],
        coupling: Any | None,
    ) -> Written:
        local_table, entity_set = mapping.row.local_table, mapping.row.dataverse_table
        if coupling is None:
            row_id = str(uuid.uuid4())
            try:
                with self.db.begin() as conn:
                    couplings.reserve(conn, local_table, local_id, entity_set, row_id, self.clock())
            except IntegrityError:
                raise RecordError(
                    "the record was coupled by another run at the same time"
                ) from None
        else:
            row_id = str(coupling.dataverse_id)  # an earlier create may have landed: same id
        return behaviour.create(self.ctx, entity_set, row_id, payload, row)

    def _update(
        self,
        mapping: Mapping,
        row: Any,
        local_id: str,
        payload: dict[str, Any],
        coupling: Any,
        run_id: int,
    ) -> tuple[Written | None, str]:
        entity_set, row_id = mapping.row.dataverse_table, str(coupling.dataverse_id)
        try:
            return self.client.update(
                entity_set, row_id, payload, coupling.dataverse_etag
            ), "modified"
        except NotFound:
            return self._deleted_in_dataverse(mapping, row, local_id, payload, coupling, run_id)
        except PreconditionFailed:
            current = self.client.get(entity_set, row_id, ["modifiedon", "_modifiedby_value"])
            if current is None:
                return self._deleted_in_dataverse(mapping, row, local_id, payload, coupling, run_id)
            etag = current.get("@odata.etag")
            by = current.get("_modifiedby_value")
            rule = mapping.row.update_conflict
            if by == self.ctx.integration_user_id or rule == UpdateConflict.SEND_LOCAL:
                return self.client.update(entity_set, row_id, payload, etag), "modified"
            message = (
                f"update conflict: {entity_set}({row_id}) was changed in Dataverse at "
                f"{current.get('modifiedon')} since the last sync; not overwritten"
            )
            with self.db.begin() as conn:
                couplings.mark(conn, coupling.id, SyncResult.CONFLICT, self.clock())
                self._error(conn, run_id, mapping, local_id, SyncResult.CONFLICT, message, row_id)
                conn.execute(
                    delete(P).where(P.c.mapping_name == mapping.name, P.c.local_id == local_id)
                )
                state = self._state(conn, mapping, local_id)
                self._done(
                    conn,
                    mapping,
                    local_id,
                    row._mapping[mapping.modified_field],
                    state.last_dataverse_modified if state else None,
                )
            return None, "conflicts"

    def _deleted_in_dataverse(
        self,
        mapping: Mapping,
        row: Any,
        local_id: str,
        payload: dict[str, Any],
        coupling: Any,
        run_id: int,
    ) -> tuple[Written | None, str]:
        rule = mapping.row.deletion_conflict
        entity_set = mapping.row.dataverse_table
        if rule == DeletionConflict.RESTORE:
            row_id = str(uuid.uuid4())
            with self.db.begin() as conn:
                couplings.mark(conn, coupling.id, SyncResult.CREATING, self.clock(), row_id=row_id)
            return self.client.create(entity_set, row_id, payload), "inserted"
        with self.db.begin() as conn:
            if rule == DeletionConflict.REMOVE_COUPLING:
                couplings.uncouple(conn, coupling.id)
                return None, "deleted"
            message = f"the coupled {entity_set}({coupling.dataverse_id}) was deleted in Dataverse"
            self._pending(conn, mapping, local_id, SyncResult.FAILED, message)
            self._error(conn, run_id, mapping, local_id, SyncResult.FAILED, message)
        return None, "failed"

    # -- from Dataverse --------------------------------------------------------------------
    def _from_dataverse(self, mapping: Mapping, run_id: int) -> Counters:
        counters = Counters()
        fields = mapping.fields_toward(Direction.FROM_DATAVERSE)
        entity_set = mapping.row.dataverse_table
        key = f"{entity_set.removesuffix('s')}id"
        select_attrs = sorted(
            {f.dataverse_attribute for f in fields} | {key, "modifiedon", "_modifiedby_value"}
        )
        clauses = [mapping.row.dataverse_filter] if mapping.row.dataverse_filter else []
        if mapping.row.dataverse_watermark is not None:
            clauses.append(
                f"modifiedon ge {odata_datetime(mapping.row.dataverse_watermark - OVERLAP)}"
            )
        watermark: datetime | None = None
        for dv_row in self.client.query(entity_set, select_attrs, " and ".join(clauses), key=key):
            if self.cancelled():
                watermark = None
                break
            modified = parse_datetime(dv_row.get("modifiedon"))
            if modified is not None:
                watermark = max(watermark, modified) if watermark else modified
            outcome = self._pull(mapping, fields, dv_row, dv_row.get(key), modified, run_id)
            setattr(counters, outcome, getattr(counters, outcome) + 1)
        if counters.inserted:
            self._wake(f"coupled:{mapping.row.local_table}")
        if watermark is not None:
            with self.db.begin() as conn:
                conn.execute(
                    update(M).where(M.c.name == mapping.name).values(dataverse_watermark=watermark)
                )
        return counters

    def _pull(
        self,
        mapping: Mapping,
        fields: list[Any],
        dv_row: dict[str, Any],
        row_id: Any,
        modified: datetime | None,
        run_id: int,
    ) -> str:
        local_table, entity_set = mapping.row.local_table, mapping.row.dataverse_table
        if not isinstance(row_id, str):
            with self.db.begin() as conn:
                self._error(
                    conn,
                    run_id,
                    mapping,
                    "",
                    SyncResult.FAILED,
                    f"a {entity_set} row without its id",
                )
            return "failed"
        etag = dv_row.get("@odata.etag")
        model = LOCAL_MODELS[local_table]
        t = table(model)
        key = t.primary_key.columns.values()[0]
        with self.db.begin() as conn:
            coupling = couplings.find_by_dataverse(conn, entity_set, row_id)
            if coupling is not None and coupling.dataverse_etag == etag:
                return "unchanged"
            if dv_row.get("_modifiedby_value") == self.ctx.integration_user_id:
                # Our own write coming back: remember its version, send nothing back.
                if coupling is not None:
                    couplings.mark(conn, coupling.id, SyncResult.SUCCESS, self.clock(), etag=etag)
                return "unchanged"
            values = {
                f.local_field: dv_row.get(f.dataverse_attribute) for f in fields if f.local_field
            }
            for f in fields:
                if f.validate and values.get(f.local_field) in (None, ""):
                    message = f"{f.dataverse_attribute} is blank in {entity_set}({row_id})"
                    self._error(conn, run_id, mapping, "", SyncResult.FAILED, message, row_id)
                    return "failed"
            now = self.clock()
            stamp = {"modified_at": now, "modified_by": INTEGRATION_USER}
            if coupling is None:
                if mapping.row.only_coupled:
                    return "unchanged"
                behaviour = behaviour_for(mapping.name)
                local_id = behaviour.match_local(conn, dv_row, values)
                if local_id is None:
                    local_id = behaviour.new_local_key(conn, dv_row, values)
                    if local_id is None:
                        message = (
                            f"{entity_set}({row_id}) has no coupled {local_table} record and "
                            f"{mapping.name} does not create them; couple it or sync only "
                            "coupled records"
                        )
                        self._error(conn, run_id, mapping, "", SyncResult.SKIPPED, message, row_id)
                        return "skipped"
                    conn.execute(insert(t).values({key.name: local_id, **values, **stamp}))
                else:
                    conn.execute(update(t).where(key == local_id).values(**values, **stamp))
                couplings.couple(conn, local_table, local_id, entity_set, row_id, etag, now)
                self._done(conn, mapping, local_id, now, modified)
                return "inserted"
            local_id = str(coupling.local_id)
            local = conn.execute(select(t).where(key == local_id)).one_or_none()
            if local is None:
                couplings.uncouple(conn, coupling.id)
                return "deleted"
            state = self._state(conn, mapping, local_id)
            local_changed = local.modified_by != INTEGRATION_USER and (
                state is None or state.last_local_modified != local.modified_at
            )
            if local_changed and mapping.row.update_conflict != UpdateConflict.GET_DATAVERSE:
                if mapping.row.update_conflict == UpdateConflict.SEND_LOCAL:
                    return "unchanged"  # the to-Dataverse pass sends the local version
                message = (
                    f"update conflict: {local_table} {local_id} and {entity_set}({row_id}) "
                    "both changed since the last sync; neither overwritten"
                )
                couplings.mark(conn, coupling.id, SyncResult.CONFLICT, now)
                self._error(conn, run_id, mapping, local_id, SyncResult.CONFLICT, message, row_id)
                return "conflicts"
            conn.execute(update(t).where(key == local_id).values(**values, **stamp))
            couplings.mark(conn, coupling.id, SyncResult.SUCCESS, now, etag=etag)
            self._done(conn, mapping, local_id, now, modified)
            return "modified"
