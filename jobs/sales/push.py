"""Sending a chunk of local records to Dataverse: decide each record's fate, create and
update in bulk, settle conflicts and deletions, and say what to record of each.

A record whose dependency is not coupled yet is skipped with the reason (retried next
run; the run that couples the dependency wakes this mapping's entry). Creates use ids
reserved first, so none is made twice; updates carry the ETag last seen, so a row
changed in Dataverse since is a conflict, resolved by the mapping's rule or recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from domain.sales.defaults import INTEGRATION_USER
from domain.sales.integration import DeletionConflict, SyncResult, UpdateConflict
from domain.sales.outcome import Outcome
from domain.sales.payload import RecordError, SkipRecord, build_payload
from jobs.dataverse.client import DataverseError, Written
from jobs.sales import couplings, writes
from jobs.sales.behaviours import Behaviour, Done
from jobs.sales.books import AlreadyCoupled, Books, Couple, Result
from jobs.sales.candidates import Candidate
from jobs.sales.context import SyncContext
from jobs.sales.mapping import Mapping
from runtime.logs import get_logger

log = get_logger("sales.sync")


@dataclass
class Pending:
    candidate: Candidate
    row_id: str
    payload: dict[str, Any]


class Pusher:
    def __init__(
        self,
        ctx: SyncContext,
        mapping: Mapping,
        behaviour: Behaviour,
        books: Books,
        fields: list[Any],
        today: date,
    ) -> None:
        self.ctx, self.mapping, self.behaviour, self.books = ctx, mapping, behaviour, books
        self.fields, self.today = fields, today

    @property
    def client(self) -> Any:
        return self.ctx.client

    def push(self, chunk: list[Candidate]) -> list[Result]:
        results: list[Result] = []
        creates: list[Pending] = []
        updates: list[Pending] = []
        retired: list[Candidate] = []
        to_send: list[Candidate] = []
        for c in chunk:
            settled = self._settled(c, retired)
            if settled is not None:
                results.append(settled)
            elif c not in retired:
                to_send.append(c)
        if to_send:
            self._prefetch(to_send)
        for c in to_send:
            decided = self._payload(c, creates, updates)
            if decided is not None:
                results.append(decided)
        results += self._retire(retired)
        since = writes.clock_before_write(self.client, self.ctx.now())
        done: list[Done] = []
        results += self._create(creates, done)
        results += self._update(updates, done)
        results += self._finish(done, since)
        return results

    # -- deciding --------------------------------------------------------------------------
    def _prefetch(self, chunk: list[Candidate]) -> None:
        rows = [c.row for c in chunk]
        for f in self.fields:
            transform = f.transform or ""
            if transform.startswith("lookup:"):
                _, local_table, entity_set = transform.split(":")
                self.ctx.lookups.prefetch(
                    local_table, entity_set, [r._mapping[f.local_field] for r in rows]
                )
            elif transform == "owner":
                self.ctx.lookups.prefetch(
                    "salespersons", "systemusers", [r._mapping[f.local_field] for r in rows]
                )
            elif transform == "currency" and f.local_field:
                self.ctx.lookups.prefetch(
                    "currencies", "transactioncurrencies", [r._mapping[f.local_field] for r in rows]
                )
        self.behaviour.prefetch(self.ctx, rows)

    def _settled(self, c: Candidate, retired: list[Candidate]) -> Result | None:
        """The outcome of a record that needs no payload (unchanged, written by this
        integration, not to be created, no longer current); None: it is to be sent."""
        modified = c.row._mapping[self.mapping.modified_field]
        coupling, state = c.coupling, c.state
        # A recorded conflict waits for the admin (or a new local change), not every run.
        done = coupling is not None and coupling.last_result in (
            SyncResult.SUCCESS,
            SyncResult.CONFLICT,
        )
        if self.behaviour.retired(c.row, self.today):
            if coupling is None:
                return Result(c.local_id, Outcome.UNCHANGED)
            retired.append(c)
            return None
        if done and not c.pending and state is not None and state.last_local_modified == modified:
            return Result(c.local_id, Outcome.UNCHANGED)
        if (
            done
            and getattr(c.row, "modified_by", "") == INTEGRATION_USER
            and self.mapping.modified_field == "modified_at"
        ):  # written by this integration: nothing to send back
            dv_modified = state.last_dataverse_modified if state else None
            return Result(c.local_id, Outcome.UNCHANGED, state=(modified, dv_modified))
        if coupling is None and not self.mapping.creates:
            return Result(c.local_id, Outcome.UNCHANGED)  # only coupled records are updated
        return None

    def _payload(
        self, c: Candidate, creates: list[Pending], updates: list[Pending]
    ) -> Result | None:
        coupling = c.coupling
        creating = coupling is None or coupling.last_result == SyncResult.CREATING
        row_id = str(uuid.uuid4()) if coupling is None else str(coupling.dataverse_id)
        try:
            payload, warnings = build_payload(self.fields, c.row._mapping, self.ctx.lookups)
            payload |= self.behaviour.extra_payload(self.ctx, c.row)
            if creating:
                self.behaviour.check(self.ctx, c.row, row_id)
        except SkipRecord as exc:
            return Result(c.local_id, Outcome.SKIPPED, str(exc))
        except RecordError as exc:
            return self._failed(c, str(exc))
        for warning in warnings:
            log.warning(
                "sales.owner_not_coupled",
                mapping=self.mapping.name,
                record=c.local_id,
                reason=warning,
                salesperson=warning.split("'")[1] if "'" in warning else "",
            )
        (creates if creating else updates).append(Pending(c, row_id, payload))
        return None

    def _failed(self, c: Candidate, reason: str, dataverse_id: str = "") -> Result:
        outcome = Outcome.FAILED_AGAIN if c.retry_only else Outcome.FAILED
        return Result(c.local_id, outcome, reason, dataverse_id)

    # -- writing ---------------------------------------------------------------------------
    def _create(self, creates: list[Pending], done: list[Done]) -> list[Result]:
        if not creates:
            return []
        fresh = {p.candidate.local_id: p.row_id for p in creates if p.candidate.coupling is None}
        try:
            self.books.reserve(fresh)
        except AlreadyCoupled as exc:
            return [self._failed(p.candidate, str(exc)) for p in creates]
        answers = self.behaviour.create(
            self.ctx,
            self.mapping.entity_set,
            {p.row_id: (p.candidate.row, p.payload) for p in creates},
        )
        results = []
        for p in creates:
            answer = answers[p.row_id]
            if answer.written is None:
                results.append(self._failed(p.candidate, str(answer.error)))
            else:
                done.append(Done(p.candidate, answer.written, created=True))
        return results

    def _update(self, updates: list[Pending], done: list[Done]) -> list[Result]:
        if not updates:
            return []
        answers = writes.update_all(
            self.client,
            self.mapping.entity_set,
            {p.row_id: (p.payload, p.candidate.coupling.dataverse_etag) for p in updates},
        )
        results: list[Result] = []
        for p in updates:
            answer = answers[p.row_id]
            if answer.error is None:
                written = writes.written_of(p.row_id, answer).written
                assert written is not None
                done.append(Done(p.candidate, written, created=False))
            elif answer.status == 404:
                results += self._gone(p, done)
            elif answer.status == 412:
                results += self._stale(p, done)
            else:
                results.append(self._failed(p.candidate, str(answer.error), p.row_id))
        return results

    def _stale(self, p: Pending, done: list[Done]) -> list[Result]:
        """The row changed in Dataverse since the ETag we hold."""
        entity_set, row_id = self.mapping.entity_set, p.row_id
        try:
            current = self.client.get(entity_set, row_id, ["modifiedon", "_modifiedby_value"])
            if current is None:
                return self._gone(p, done)
            by = current.get("_modifiedby_value")
            rule = self.mapping.row.update_conflict
            if by == self.ctx.integration_user_id or rule == UpdateConflict.SEND_LOCAL:
                written = self.client.update(
                    entity_set, row_id, p.payload, current.get("@odata.etag")
                )
                done.append(Done(p.candidate, written, created=False))
                return []
        except DataverseError as exc:
            return [self._failed(p.candidate, str(exc), row_id)]
        c = p.candidate
        message = (
            f"update conflict: {entity_set}({row_id}) was changed in Dataverse at "
            f"{current.get('modifiedon')} since the last sync; not overwritten"
        )
        state = c.state
        return [
            Result(
                c.local_id,
                Outcome.CONFLICT,
                message,
                row_id,
                couple=[
                    Couple(
                        self.mapping.local_table,
                        c.local_id,
                        entity_set,
                        row_id,
                        c.coupling.dataverse_etag,
                        SyncResult.CONFLICT,
                    )
                ],
                state=(
                    c.row._mapping[self.mapping.modified_field],
                    state.last_dataverse_modified if state else None,
                ),
            )
        ]

    def _gone(self, p: Pending, done: list[Done]) -> list[Result]:
        """The coupled row was deleted in Dataverse: the mapping's deletion rule."""
        c, rule = p.candidate, self.mapping.row.deletion_conflict
        if rule == DeletionConflict.RESTORE:
            row_id = str(uuid.uuid4())
            with self.ctx.db.begin() as conn:
                couplings.mark(
                    conn, c.coupling.id, SyncResult.CREATING, self.ctx.now(), row_id=row_id
                )
            answer = self.behaviour.create(
                self.ctx, self.mapping.entity_set, {row_id: (c.row, p.payload)}
            )[row_id]
            if answer.written is None:
                return [self._failed(c, str(answer.error))]
            done.append(Done(c, answer.written, created=True))
            return []
        if rule == DeletionConflict.REMOVE_COUPLING:
            return [Result(c.local_id, Outcome.DELETED, uncouple=True)]
        message = f"the coupled {self.mapping.entity_set}({p.row_id}) was deleted in Dataverse"
        return [self._failed(c, message, p.row_id)]

    def _retire(self, retired: list[Candidate]) -> list[Result]:
        """Records no longer current (an expired price): their rows are removed."""
        if not retired:
            return []
        ids = {str(c.coupling.dataverse_id): c for c in retired}
        errors = writes.delete_all(self.client, self.mapping.entity_set, list(ids))
        results = []
        for row_id, c in ids.items():
            error = errors[row_id]
            if error is not None:
                results.append(self._failed(c, str(error), row_id))
            else:
                modified = c.row._mapping[self.mapping.modified_field]
                results.append(
                    Result(c.local_id, Outcome.DELETED, uncouple=True, state=(modified, None))
                )
        return results

    def _finish(self, done: list[Done], since: Any) -> list[Result]:
        """After the writes: the behaviour's extras, versions read back, and what to
        record of each record written."""
        if not done:
            return []
        after = self.behaviour.after_write(self.ctx, done)
        unknown = {d.written.id for d in done if d.written.etag is None}
        found = (
            writes.read_back(
                self.client, self.mapping.entity_set, self.ctx.integration_user_id, since, unknown
            )
            if unknown
            else {}
        )
        extra: dict[str, list[Couple]] = {}
        for couple in after.couples:
            extra.setdefault(couple.local_id, []).append(couple)
        results = []
        for d in done:
            c = d.candidate
            if c.local_id in after.failed:
                results.append(self._failed(c, after.failed[c.local_id], d.written.id))
                continue
            written = found.get(d.written.id, d.written)
            if written.etag is None:
                written = Written(written.id, writes.UNKNOWN_ETAG, written.modifiedon)
            couple = Couple(
                self.mapping.local_table,
                c.local_id,
                self.mapping.entity_set,
                written.id,
                written.etag,
            )
            self.ctx.lookups.remember(
                self.mapping.local_table, c.local_id, self.mapping.entity_set, written.id
            )
            results.append(
                Result(
                    c.local_id,
                    Outcome.INSERTED if d.created else Outcome.MODIFIED,
                    couple=[couple, *extra.get(c.local_id, [])],
                    state=(c.row._mapping[self.mapping.modified_field], written.modifiedon),
                )
            )
        return results
