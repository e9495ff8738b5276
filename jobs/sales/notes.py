"""Sales order notes both ways: a note written on a coupled order here is sent to the
Dataverse order as a note (annotation), and a note written there comes here. Neither
comes back: a note read from Sales keeps the annotation's id, one sent there reserves
its id before it is sent (so a lost answer or a crash resends the same one, never a
second), and a run skips every annotation whose id it knows or that the integration
user wrote.
"""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select, update

from domain.sales.integration import Coupling, DataverseConnection
from domain.sales.models import DocumentType, SalesNote, table
from domain.sales.outcome import Counters, Outcome
from jobs.dataverse.client import is_deleted, parse_datetime
from jobs.sales import delta, rereads, writes
from jobs.sales.books import Books, Result
from jobs.sales.context import SyncContext
from jobs.sales.couplings import by_dataverse
from jobs.sales.mapping import Mapping, reloaded
from runtime.logs import get_logger

log = get_logger("sales.sync")
N, C = table(SalesNote), table(Coupling)
DC = table(DataverseConnection)
ORDERS = "salesorders"
ATTRS = [
    "annotationid",
    "notetext",
    "subject",
    "_objectid_value",
    "objecttypecode",
    "_modifiedby_value",
    "_createdby_value",
    "createdon",
    "modifiedon",
]


class OrderNotes:
    def __init__(self, ctx: SyncContext, mapping: Mapping, books: Books) -> None:
        self.ctx, self.mapping, self.books = ctx, mapping, books

    def run(self) -> Counters:
        counters = Counters()
        with self.ctx.db.connect() as conn:
            switched = conn.execute(select(DC.c.sales_order_integration)).scalar_one_or_none()
        if not switched:
            return counters
        pulled, settled = self._pull()
        pushed = self._push()
        results = pulled + pushed
        if any(r.outcome == Outcome.MODIFIED for r in pushed):
            # The notes sent come back through change tracking: read them now, so the
            # next run reads only what others wrote.
            self.mapping = reloaded(self.ctx.db, self.mapping)
            more, also_settled = self._pull(read_waiting=False)
            results += more
            settled += also_settled
        self.books.record(results, rows_read=settled)
        for r in results:
            counters.count(r.outcome)
        return counters

    def _pull(self, read_waiting: bool = True) -> tuple[list[Result], list[str]]:
        """Notes written in Sales on coupled orders since the last read. A note on an
        order that is not here yet (its intake failed) waits for it: read again by later
        runs (jobs.sales.rereads) until its order comes (`read_waiting`: not by a second
        read in the same run)."""
        read = delta.read_changes(self.ctx.client, self.mapping, ATTRS)
        rows = [r for r in read.rows if not is_deleted(r)]  # a deleted note stays here
        waiting = rereads.waiting(self.ctx.db, self.mapping)
        seen = {str(r["annotationid"]).lower() for r in rows}
        gone: list[str] = []
        again = sorted(set(waiting) - seen) if read_waiting else []
        for found, missing in rereads.read_again(self.ctx.client, "annotations", ATTRS, again):
            rows += found
            gone += missing
        with self.ctx.db.connect() as conn:
            known = set(
                conn.execute(
                    select(N.c.dataverse_id).where(
                        N.c.dataverse_id.in_([str(r["annotationid"]) for r in rows])
                    )
                ).scalars()
            )
            regarding = {str(r.get("_objectid_value") or "") for r in rows}
            orders = {
                row_id: str(c.local_id)
                for (_, row_id), c in by_dataverse(conn, {ORDERS: regarding}).items()
                if c.local_table == "sales_headers"
            }
        new = [
            r
            for r in rows
            if r.get("objecttypecode") == "salesorder"
            and str(r["annotationid"]) not in known
            and r.get("_createdby_value") != self.ctx.integration_user_id  # ours: not back
        ]
        fresh = [r for r in new if str(r.get("_objectid_value")) in orders]
        early = [
            Result("", Outcome.FAILED,
                   f"its order (salesorders({r.get('_objectid_value')})) is not here yet; the "
                   "note waits for it", str(r["annotationid"]), retry=False)
            for r in new if str(r.get("_objectid_value")) not in orders
        ]  # fmt: skip
        rereads.no_news(early, waiting)
        read_ids = [*seen, *(str(r["annotationid"]).lower() for r in rows), *gone]
        settled = [i for i in dict.fromkeys(read_ids) if i in waiting]
        if fresh:
            with self.ctx.db.begin() as conn:
                conn.execute(
                    N.insert(),
                    [
                        {
                            "document_type": DocumentType.ORDER,
                            "document_no": orders[str(r["_objectid_value"])],
                            "text": str(r.get("notetext") or r.get("subject") or ""),
                            "created_by": "Dynamics 365 Sales",
                            "created_at": parse_datetime(r.get("createdon")) or self.ctx.now(),
                            "dataverse_id": str(r["annotationid"]),
                            "in_dataverse_at": self.ctx.now(),
                        }
                        for r in fresh
                    ],
                )
        results = early + [
            Result(
                orders[str(r["_objectid_value"])],
                Outcome.INSERTED,
                dataverse_id=str(r["annotationid"]),
            )
            for r in fresh
        ]
        delta.save(self.ctx.db, self.mapping, read)
        return results, settled

    def _push(self) -> list[Result]:
        """Notes written here on coupled orders that Sales does not have for sure: each
        gets its annotation id before it is sent, so a resend is the same note."""
        with self.ctx.db.begin() as conn:
            on_coupled_order = C.c.local_table == "sales_headers", C.c.dataverse_table == ORDERS
            waiting = conn.execute(
                select(N.c.id, N.c.dataverse_id, C.c.dataverse_id.label("order_id"))
                .join(C, C.c.local_id == N.c.document_no)
                .where(
                    *on_coupled_order,
                    N.c.document_type == DocumentType.ORDER,
                    N.c.in_dataverse_at.is_(None),
                )
            ).all()
            order_ids = {n.id: str(n.order_id) for n in waiting}
            unreserved = [{"b_id": n.id, "b_row": str(uuid.uuid4())} for n in waiting
                          if n.dataverse_id is None]  # fmt: skip
            if unreserved:
                conn.execute(
                    update(N).where(N.c.id == bindparam("b_id"))
                    .values(dataverse_id=bindparam("b_row")),
                    unreserved,
                )  # fmt: skip
            notes = conn.execute(select(N).where(N.c.id.in_([n.id for n in waiting]))).all()
        bodies = {
            str(note.dataverse_id): {
                "subject": f"Note by {note.created_by or 'Business Central'}"[:500],
                "notetext": note.text,
                "objectid_salesorder@odata.bind": f"/{ORDERS}({order_ids[note.id]})",
            }
            for note in notes
        }
        written = writes.create_all(self.ctx.client, "annotations", bodies)  # a chunk a request
        results, sent = [], []
        for note in notes:
            error = written[str(note.dataverse_id)].error
            if error is not None:
                reason = f"note {note.id}: {error}"
                results.append(Result(note.document_no, Outcome.FAILED, reason, retry=False))
                continue
            sent.append(note.id)
            results.append(
                Result(note.document_no, Outcome.MODIFIED, dataverse_id=str(note.dataverse_id))
            )
        if sent:  # Sales has them for sure now
            with self.ctx.db.begin() as conn:
                conn.execute(
                    update(N).where(N.c.id.in_(sent)).values(in_dataverse_at=self.ctx.now())
                )
        return results
