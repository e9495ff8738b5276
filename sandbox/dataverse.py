"""A local Dataverse Web API (v9.2) over HTTPS, answering the requests the sync jobs
make with the documented shapes: entity sets with `@odata.etag`, `modifiedon`
(to the second, as Dataverse keeps it), `_modifiedby_value`, lookups set through
`@odata.bind` and read back as `_<name>_value`; `$select`, `$filter`, `$orderby`,
paging by `Prefer: odata.maxpagesize` and `@odata.nextLink`; upsert with
`If-None-Match: *`, optimistic concurrency with `If-Match`; `$batch` with atomic
change sets; the bulk operation messages `CreateMultiple`, `UpdateMultiple` and
`UpsertMultiple` (standard tables: all records or none); the organization and its base
currency (`organizations`, `transactioncurrencies`); change tracking
(`Prefer: odata.track-changes`, `@odata.deltaLink`, `$deletedEntity`); `WhoAmI`;
error JSON `{"error": {"code", "message"}}`.

Tokens are checked against the identity platform emulator (`sandbox.identity`) for
the audience of this environment's URL. Switches inject
429 with Retry-After, 5xx (before or after the request took effect), malformed
answers and expired tokens. `edit` changes a row as a person in Dataverse would.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from werkzeug.routing import Map, Rule

from sandbox.https import Fault, HttpsEmulator, Request, Response
from sandbox.identity import IdentityEmulator

API = "/api/data/v9.2/"
KEYS = {
    "uomschedules": "uomscheduleid",
    "uoms": "uomid",
    "products": "productid",
    "pricelevels": "pricelevelid",
    "productpricelevels": "productpricelevelid",
    "invoices": "invoiceid",
    "invoicedetails": "invoicedetailid",
    "accounts": "accountid",
    "contacts": "contactid",
    "opportunities": "opportunityid",
    "salesorders": "salesorderid",
    "salesorderdetails": "salesorderdetailid",
    "quotes": "quoteid",
    "quotedetails": "quotedetailid",
    "annotations": "annotationid",
    "systemusers": "systemuserid",
    "transactioncurrencies": "transactioncurrencyid",
    "organizations": "organizationid",
}
LOGICAL = {s: k.removesuffix("id") for s, k in KEYS.items()}
SETS = ", ".join(KEYS)
REQUIRED = {
    "uomschedules": ["name", "baseuomname"],
    "products": ["name", "productnumber", "_defaultuomscheduleid_value", "_defaultuomid_value"],
    # The table reference marks a price list's and an invoice's currency ApplicationRequired.
    "pricelevels": ["name", "_transactioncurrencyid_value"],
    "productpricelevels": ["_pricelevelid_value", "_productid_value", "_uomid_value"],
    "invoices": [
        "name",
        "_customerid_value",
        "_pricelevelid_value",
        "_transactioncurrencyid_value",
    ],
    "invoicedetails": ["_invoiceid_value", "quantity"],
    "accounts": ["name"],
    "contacts": ["lastname"],
    "opportunities": ["name"],
    "salesorders": ["name", "_customerid_value", "_pricelevelid_value"],
    "salesorderdetails": ["_salesorderid_value", "quantity"],
    "quotes": ["name", "_customerid_value", "_pricelevelid_value"],
    "quotedetails": ["_quoteid_value", "quantity"],
    "transactioncurrencies": [
        "currencyname",
        "isocurrencycode",
        "currencysymbol",
        "exchangerate",
        "currencyprecision",
    ],
}
UNIQUE = {"products": "productnumber", "uomschedules": "name", "pricelevels": "name",
          "transactioncurrencies": "isocurrencycode"}  # fmt: skip
# Attributes the table reference marks "valid for create: no": ignored on create. The
# product's default price list (pricelevelid) is set by an update.
NOT_FOR_CREATE = {"products": {"pricelevelid@odata.bind"}}
# Navigation properties whose lookup column has another name.
NAVIGATION = {"customerid_account": "customerid", "parentcustomerid_account": "parentcustomerid",
              "objectid_salesorder": "objectid", "objectid_quote": "objectid"}  # fmt: skip
GUID = r"[0-9a-fA-F-]{36}"
BULK_MESSAGES = "CreateMultiple, UpdateMultiple, UpsertMultiple"
# Tables without the bulk messages ("not all tables support them": the emulator's choice,
# so the client's fallback to $batch is exercised by the invoice sync).
NO_BULK = {"invoices", "invoicedetails", "systemusers", "organizations", "annotations"}
EXPIRED_TOKEN = (
    "0x80044352",
    "Version stamp associated with the client has expired. Please perform a full sync.",
)


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Response:
        return self.status, {}, {"error": {"code": self.code, "message": self.message}}


def _literal(text: str) -> Any:
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", text):
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    if re.fullmatch(GUID, text):
        return text.lower()
    try:
        return Decimal(text)
    except ArithmeticError:
        raise ODataError(400, "0x80060888", f"Syntax error at '{text}' in $filter") from None


_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w]*)\s+(eq|ne|gt|ge|lt|le)\s+(.+?)\s*$")
Clause = tuple[str, str, Any]


def parse_filter(text: str) -> list[list[Clause]]:
    """`a op literal and (b op literal or b op literal) ...`: the subset the sync jobs use
    ("Filter rows": comparison and logical operators, parentheses to group). Each item
    is an `or` group; a row matches when every group has a clause it matches."""
    groups = []
    for part in re.split(r"\s+and\s+", text.strip()) if text.strip() else []:
        group = []
        for alternative in re.split(r"\s+or\s+", part.strip().removeprefix("(").removesuffix(")")):
            match = _CLAUSE.match(alternative.strip("() "))
            if match is None:
                raise ODataError(
                    400, "0x80060888", f"Syntax error in $filter near '{alternative[:40]}'"
                )
            group.append((match.group(1), match.group(2), _literal(match.group(3))))
        groups.append(group)
    return groups


def _comparable(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]+Z", value):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    if isinstance(value, str):
        return value.lower()
    return value


def _holds(row: dict[str, Any], clause: Clause) -> bool:
    name, op, wanted = clause
    value, target = _comparable(row.get(name)), _comparable(wanted)
    if op in ("eq", "ne"):
        return bool((value == target) == (op == "eq"))
    if value is None or target is None:
        return False
    compared: bool = {"gt": value > target, "ge": value >= target, "lt": value < target}.get(
        op, value <= target
    )
    return compared


def _matches(row: dict[str, Any], groups: list[list[Clause]]) -> bool:
    return all(any(_holds(row, clause) for clause in group) for group in groups)


class DataverseEmulator(HttpsEmulator):
    def __init__(self, folder: Path, identity: IdentityEmulator, client_id: str) -> None:
        super().__init__(folder, "dataverse")
        self.identity = identity
        self.url = self.base
        identity.resources.add(self.url)
        self.tables: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in KEYS}
        self.version = 1000
        self.clock_override: datetime | None = None
        self.integration_user = str(uuid.uuid4())
        self.administrator = str(uuid.uuid4())  # who adds users "in Dataverse"
        # Change tracking: deletions by version; tables with it off; tokens older than
        # `token_floor` have expired (the retention period has passed).
        self.deletions: list[tuple[int, str, str]] = []
        # Writes inside a change set or bulk message, to undo them when one fails; and
        # the unique values per table (as the service's unique index would keep them).
        self._journal: list[tuple[str, str, dict[str, Any] | None]] | None = None
        self._unique: dict[str, dict[str, str]] = {name: {} for name in UNIQUE}
        self.untracked: set[str] = set()
        self.token_floor = 0
        self.tables["systemusers"][self.integration_user] = self._stamp(
            "systemusers",
            {
                "systemuserid": self.integration_user,
                "fullname": "# Business Central Integration",
                "applicationid": client_id,
                "internalemailaddress": "",
                "isdisabled": False,
            },
            self.integration_user,
            created=True,
        )
        # The organization and its base currency, set when the environment was made.
        self.base_currency = str(uuid.uuid4())
        self._store("transactioncurrencies", self.base_currency, self._stamp(
            "transactioncurrencies",
            {"transactioncurrencyid": self.base_currency, "currencyname": "Euro",
             "isocurrencycode": "EUR", "currencysymbol": "€", "exchangerate": 1.0,
             "currencyprecision": 2},
            self.administrator, created=True))  # fmt: skip
        self.organization = str(uuid.uuid4())
        self._store("organizations", self.organization, self._stamp(
            "organizations",
            {"organizationid": self.organization, "name": "CRONUS",
             "_basecurrencyid_value": self.base_currency},
            self.administrator, created=True))  # fmt: skip

    def __enter__(self) -> DataverseEmulator:
        super().__enter__()
        return self

    # -- switches --------------------------------------------------------------------------
    def inject(
        self,
        path: str,
        status: int,
        *,
        retry_after: int | None = None,
        times: int = 1,
        method: str | None = None,
        after: bool = False,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 429:
            body = {
                "error": {
                    "code": "0x80072322",
                    "message": "Number of requests exceeded the limit of 6000 over time "
                    "window of 300 seconds.",
                }
            }
        else:
            body = {
                "error": {
                    "code": "0x80040216",
                    "message": f"An unexpected error occurred ({status}).",
                }
            }
        self.add_fault(Fault(re.compile(path), status, headers, body, times, method, after))

    def malform(self, path: str, *, times: int = 1, method: str | None = None) -> None:
        """Answer 200 with an HTML page instead of JSON, as a misbehaving proxy would."""
        self.add_fault(
            Fault(
                re.compile(path),
                200,
                {"Content-Type": "text/html"},
                b"<html><body>Service temporarily unavailable</body></html>",
                times,
                method,
            )
        )

    def expire_tokens(self) -> None:
        self.identity.expire_tokens()

    def add_user(self, fullname: str, email: str) -> str:
        user = str(uuid.uuid4())
        with self.lock:
            self.tables["systemusers"][user] = self._stamp(
                "systemusers",
                {
                    "systemuserid": user,
                    "fullname": fullname,
                    "internalemailaddress": email,
                    "isdisabled": False,
                },
                self.administrator,
                created=True,
            )
        return user

    def add(self, entity_set: str, values: dict[str, Any]) -> str:
        """A row made in Dataverse by a person (the administrator); returns its id."""
        row_id = str(uuid.uuid4())
        with self.lock:
            self._create(entity_set, row_id, values, self.administrator)
        return row_id

    def edit(self, entity_set: str, row_id: str, changes: dict[str, Any], by: str) -> None:
        """A change made in Dataverse by the user `by` (a person, or the integration user)."""
        with self.lock:
            row = dict(self.tables[entity_set][row_id])
            row.update(changes)
            self._store(entity_set, row_id, self._stamp(entity_set, row, by))

    def _store(self, entity_set: str, row_id: str, row: dict[str, Any]) -> None:
        table = self.tables[entity_set]
        self._forget(entity_set, row_id)
        if self._journal is not None:
            self._journal.append((entity_set, row_id, table.get(row_id)))
        table[row_id] = row
        if entity_set in UNIQUE:
            self._unique[entity_set][str(row.get(UNIQUE[entity_set])).lower()] = row_id

    def _forget(self, entity_set: str, row_id: str) -> None:
        old = self.tables[entity_set].get(row_id)
        if old is not None and entity_set in UNIQUE:
            self._unique[entity_set].pop(str(old.get(UNIQUE[entity_set])).lower(), None)

    def _remove(self, entity_set: str, row_id: str) -> None:
        self._forget(entity_set, row_id)
        if self._journal is not None:
            self._journal.append((entity_set, row_id, self.tables[entity_set][row_id]))
        del self.tables[entity_set][row_id]
        self.version += 1
        self.deletions.append((self.version, entity_set, row_id))

    def _all_or_nothing(self) -> Any:
        """Journals writes until `_settle(journal, ok)` keeps or undoes them."""
        self._journal = []
        return self._journal

    def _settle(self, journal: list[tuple[str, str, dict[str, Any] | None]], ok: bool) -> None:
        self._journal = None
        if ok:
            return
        for entity_set, row_id, old in reversed(journal):
            self._forget(entity_set, row_id)
            if old is None:
                self.tables[entity_set].pop(row_id, None)
            else:
                self.tables[entity_set][row_id] = old
                if entity_set in UNIQUE:
                    value = str(old.get(UNIQUE[entity_set])).lower()
                    self._unique[entity_set][value] = row_id

    def delete(self, entity_set: str, row_id: str) -> None:
        """A row deleted in Dataverse by a person."""
        with self.lock:
            self._remove(entity_set, row_id)

    def expire_delta_tokens(self) -> None:
        """Every delta token handed out so far is past its retention period."""
        with self.lock:
            self.token_floor = self.version + 1

    def rows(self, entity_set: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables[entity_set].values()]

    # -- rows ------------------------------------------------------------------------------
    def _now(self) -> datetime:
        now = self.clock_override or datetime.now(UTC)
        return now.replace(microsecond=0)

    def _stamp(
        self, entity_set: str, row: dict[str, Any], user: str, *, created: bool = False
    ) -> dict[str, Any]:
        self.version += 1
        now = self._now().strftime("%Y-%m-%dT%H:%M:%SZ")
        row["versionnumber"] = self.version
        row["@odata.etag"] = f'W/"{self.version}"'
        row["modifiedon"] = now
        row["_modifiedby_value"] = user
        if created:
            row["createdon"] = now
            row["_createdby_value"] = user
            row.setdefault("statecode", 0)
            row.setdefault("_ownerid_value", user)
        return row

    def _apply(self, entity_set: str, row: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key.endswith("@odata.bind"):
                nav = key.removesuffix("@odata.bind")
                column = f"_{NAVIGATION.get(nav, nav)}_value"
                if value is None:
                    row[column] = None
                    continue
                match = re.fullmatch(
                    rf"/?(\w+)\(({GUID})\)", str(value).replace(self.url + API, "")
                )
                if match is None or match.group(1) not in KEYS:
                    raise ODataError(
                        400,
                        "0x80048d19",
                        f"Error identified in Payload provided by the user for "
                        f"Entity :'{LOGICAL[entity_set]}': invalid reference {value!r} for {nav}",
                    )
                target_set, target = match.group(1), match.group(2).lower()
                if target not in self.tables[target_set]:
                    raise ODataError(
                        400,
                        "0x80040217",
                        f"{LOGICAL[target_set]} With Id = {target} Does Not Exist",
                    )
                row[column] = target
                if nav.startswith("objectid_"):  # a note's regarding row: its table's name
                    row["objecttypecode"] = LOGICAL[target_set]
            elif key.startswith("@") or key.startswith("_") or key in ("modifiedon", "createdon"):
                raise ODataError(400, "0x80060888", f"The property '{key}' cannot be set")
            else:
                row[key] = value

    def _check(self, entity_set: str, row: dict[str, Any], row_id: str) -> None:
        missing = [a for a in REQUIRED.get(entity_set, []) if row.get(a) in (None, "")]
        if entity_set == "invoicedetails" and not (
            row.get("_productid_value") or row.get("productdescription")
        ):
            missing.append("productid or productdescription")
        if missing:
            raise ODataError(
                400,
                "0x80040200",
                f"{LOGICAL[entity_set]}: required attribute {missing[0]} is missing",
            )
        unique = UNIQUE.get(entity_set)
        if unique:
            other_id = self._unique[entity_set].get(str(row.get(unique)).lower())
            if other_id is not None and other_id != row_id:
                raise ODataError(
                    400,
                    "0x80040237",
                    f"A {LOGICAL[entity_set]} with {unique} '{row.get(unique)}' already exists.",
                )

    def _create(
        self, entity_set: str, row_id: str, body: dict[str, Any], user: str
    ) -> dict[str, Any]:
        row: dict[str, Any] = {KEYS[entity_set]: row_id}
        if "_ownerid_value" not in row and "ownerid@odata.bind" not in body:
            row["_ownerid_value"] = user
        ignored = NOT_FOR_CREATE.get(entity_set, set())
        self._apply(entity_set, row, {k: v for k, v in body.items() if k not in ignored})
        self._check(entity_set, row, row_id)
        if entity_set == "invoicedetails" and row.get("priceperunit") is not None:
            row["extendedamount"] = float(
                Decimal(str(row["priceperunit"])) * Decimal(str(row["quantity"]))
            )
        self._store(entity_set, row_id, self._stamp(entity_set, row, user, created=True))
        if entity_set == "uomschedules":  # the base unit comes with its group
            unit = str(uuid.uuid4())
            self._store(
                "uoms",
                unit,
                self._stamp(
                    "uoms",
                    {
                        "uomid": unit,
                        "name": row["baseuomname"],
                        "_uomscheduleid_value": row_id,
                        "_baseuom_value": unit,
                        "quantity": 1,
                        "isschedulebase": True,
                    },
                    user,
                    created=True,
                ),
            )
        return row

    # -- routing ---------------------------------------------------------------------------
    routes = Map(
        [
            Rule(f"{API}WhoAmI", endpoint="who_am_i", methods=["GET"]),
            Rule(f"{API}$batch", endpoint="batch", methods=["POST"]),
            Rule(
                f"{API}<any({SETS}):entity_set>/Microsoft.Dynamics.CRM."
                f"<any({BULK_MESSAGES}):message>",
                endpoint="bulk",
                methods=["POST"],
            ),
            Rule(f"{API}<any({SETS}):entity_set>", endpoint="entity_set", methods=["GET", "POST"]),
            Rule(
                f"{API}<any({SETS}):entity_set>(<uuid:row_id>)",
                endpoint="row",
                methods=["GET", "PATCH", "DELETE"],
            ),
        ],
        strict_slashes=False,
    )

    def route(self, request: Request) -> Response:
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        if request.path.startswith(API) and not self.identity.token_valid(token, self.url):
            return (
                401,
                {"WWW-Authenticate": f"Bearer authorization_uri={self.identity.authority}"},
                None,
            )
        return self._serve(request, self.integration_user)

    def _serve(self, request: Request, user: str) -> Response:
        with self.lock:
            try:
                return self.dispatch(request, user=user)
            except ODataError as exc:
                return exc.response()

    def unrouted(self, request: Request, status: int) -> Response:
        rest = request.path.removeprefix(API)
        if status == 405:
            raise ODataError(405, "0x80060888", f"{request.method} is not allowed on {rest}")
        raise ODataError(404, "0x8006088a", f"Resource not found for the segment '{rest}'.")

    def who_am_i(self, request: Request, user: str) -> Response:
        return (
            200,
            {},
            {
                "@odata.context": f"{self.url}{API}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": "00000000-0000-0000-0000-00000000b001",
                "UserId": user,
                "OrganizationId": "00000000-0000-0000-0000-00000000c001",
            },
        )

    def entity_set(self, request: Request, user: str, entity_set: str) -> Response:
        if request.method == "GET":
            return self._query(entity_set, request)
        row = self._create(entity_set, str(uuid.uuid4()), request.json(), user)
        return self._written(entity_set, row, request, 201)

    def row(self, request: Request, user: str, entity_set: str, row_id: uuid.UUID) -> Response:
        return self._row(request, user, entity_set, str(row_id))

    def _row(self, request: Request, user: str, entity_set: str, row_id: str) -> Response:
        table = self.tables[entity_set]
        existing = table.get(row_id)
        if request.method == "GET":
            if existing is None:
                raise self._missing(entity_set, row_id)
            return 200, {}, self._project(existing, request.query.get("$select"))
        if request.method == "DELETE":
            if existing is None:
                raise self._missing(entity_set, row_id)
            self._remove(entity_set, row_id)
            return 204, {}, None
        if request.method != "PATCH":
            raise ODataError(405, "0x80060888", f"{request.method} is not allowed here")
        if_match = request.headers.get("If-Match")
        if_none_match = request.headers.get("If-None-Match")
        if existing is None:
            if if_match:
                raise self._missing(entity_set, row_id)
            row = self._create(entity_set, row_id, request.json(), user)
            return self._written(entity_set, row, request, 201)
        if if_none_match == "*":  # "Prevent update in upsert": this answer, empty code and all
            raise ODataError(412, "", "A record with matching key values already exists.")
        if if_match and if_match != "*" and if_match != existing["@odata.etag"]:
            raise ODataError(
                412,
                "0x80060882",
                "The version of the existing record doesn't match the RowVersion property "
                "provided.",
            )
        candidate = dict(existing)
        self._apply(entity_set, candidate, request.json())
        self._check(entity_set, candidate, row_id)
        self._store(entity_set, row_id, self._stamp(entity_set, candidate, user))
        return self._written(entity_set, candidate, request, 200)

    def _missing(self, entity_set: str, row_id: str) -> ODataError:
        return ODataError(
            404, "0x80040217", f"{LOGICAL[entity_set]} With Id = {row_id} Does Not Exist"
        )

    def _written(
        self, entity_set: str, row: dict[str, Any], request: Request, status: int
    ) -> Response:
        location = {"OData-EntityId": f"{self.url}{API}{entity_set}({row[KEYS[entity_set]]})"}
        if "return=representation" in str(request.headers.get("Prefer", "")):
            return status, location, self._project(row, request.query.get("$select"))
        return 204, location, None

    @staticmethod
    def _project(row: dict[str, Any], select: str | None) -> dict[str, Any]:
        """$select, plus what Dataverse always returns: the ETag and the row's key."""
        if not select:
            return dict(row)
        out = {name.strip(): row.get(name.strip()) for name in select.split(",") if name.strip()}
        out["@odata.etag"] = row["@odata.etag"]
        out.update({k: row[k] for k in KEYS.values() if k in row and k not in out})
        return out

    def _query(self, entity_set: str, request: Request) -> Response:
        prefer = str(request.headers.get("Prefer", ""))
        if "odata.track-changes" in prefer and entity_set not in self.untracked:
            return self._changes(entity_set, request)
        clauses = parse_filter(request.query.get("$filter", ""))
        rows = [r for r in self.tables[entity_set].values() if _matches(r, clauses)]
        for part in reversed(
            [p.strip() for p in request.query.get("$orderby", "").split(",") if p.strip()]
        ):
            name, _, order = part.partition(" ")
            rows.sort(
                key=lambda r: (r.get(name) is None, _comparable(r.get(name)), r["versionnumber"]),
                reverse=order.strip() == "desc",
            )
        prefer = str(request.headers.get("Prefer", ""))
        size_match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        size = int(size_match.group(1)) if size_match else 5000
        skip = int(request.query.get("$skiptoken", "0") or 0)
        page = rows[skip : skip + size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.url}{API}$metadata#{entity_set}",
            "value": [self._project(r, request.query.get("$select")) for r in page],
        }
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if size_match else {}
        if skip + size < len(rows):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(skip + size)
            body["@odata.nextLink"] = f"{self.url}{API}{entity_set}?{urlencode(query)}"
        return 200, headers, body

    def _changes(self, entity_set: str, request: Request) -> Response:
        """A change-tracking read: every row (no token), or the rows changed and the rows
        deleted since the token's version, oldest first; the last page carries the delta
        link. "Use change tracking": only $select goes with it."""
        if "$filter" in request.query or "$orderby" in request.query:
            raise ODataError(
                400, "0x80060888", "$filter and $orderby are not supported with change tracking"
            )
        token = request.query.get("$deltatoken", "")
        since = 0
        if token:
            since = int(token.partition("!")[0] or 0)
            if since < self.token_floor:
                raise ODataError(400, *EXPIRED_TOKEN)
        changed: list[tuple[int, dict[str, Any]]] = [
            (int(r["versionnumber"]), self._project(r, request.query.get("$select")))
            for r in self.tables[entity_set].values()
            if int(r["versionnumber"]) > since
        ]
        if token:  # a first read lists what exists; later ones what went away too
            changed += [
                (
                    version,
                    {
                        "@odata.context": f"{self.url}{API}$metadata#{entity_set}/$deletedEntity",
                        "id": row_id,
                        "reason": "deleted",
                    },
                )
                for version, table, row_id in self.deletions
                if table == entity_set and version > since
            ]
        changed.sort(key=lambda pair: pair[0])
        size_match = re.search(r"odata\.maxpagesize=(\d+)", str(request.headers.get("Prefer")))
        size = int(size_match.group(1)) if size_match else 5000
        skip = int(request.query.get("$skiptoken", "0") or 0)
        body: dict[str, Any] = {
            "@odata.context": f"{self.url}{API}$metadata#{entity_set}/$delta",
            "value": [row for _, row in changed[skip : skip + size]],
        }
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        if skip + size < len(changed):
            query["$skiptoken"] = str(skip + size)
            body["@odata.nextLink"] = f"{self.url}{API}{entity_set}?{urlencode(query)}"
        else:
            stamp = self._now().strftime("%m/%d/%Y %H:%M:%S")
            query["$deltatoken"] = f"{self.version}!{stamp}"
            body["@odata.deltaLink"] = f"{self.url}{API}{entity_set}?{urlencode(query)}"
        return 200, {"Preference-Applied": "odata.track-changes"}, body

    def bulk(self, request: Request, user: str, entity_set: str, message: str) -> Response:
        """CreateMultiple / UpdateMultiple / UpsertMultiple on a standard table: every
        record or none (the first error is the answer)."""
        if entity_set in NO_BULK:
            raise ODataError(
                404,
                "0x8006088a",
                f"Resource not found for the segment 'Microsoft.Dynamics.CRM.{message}'.",
            )
        targets = request.json().get("Targets")
        if not isinstance(targets, list) or not targets:
            raise ODataError(400, "0x80040203", "Targets must be a non-empty collection.")
        key, wanted_type = KEYS[entity_set], f"Microsoft.Dynamics.CRM.{LOGICAL[entity_set]}"
        journal = self._all_or_nothing()
        ids: list[str] = []
        try:
            for target in targets:
                if target.get("@odata.type") != wanted_type:
                    raise ODataError(
                        400, "0x80048d19", f"Every target needs @odata.type {wanted_type}."
                    )
                body = {k: v for k, v in target.items() if k not in ("@odata.type", key)}
                row_id = str(target.get(key) or "").lower() or str(uuid.uuid4())
                existing = self.tables[entity_set].get(row_id)
                if message == "CreateMultiple" and existing is not None:
                    raise ODataError(400, "0x80040237", "Cannot insert duplicate key.")
                if message == "UpdateMultiple" and existing is None:
                    raise self._missing(entity_set, row_id)
                if existing is None:
                    self._create(entity_set, row_id, body, user)
                else:
                    candidate = dict(existing)
                    self._apply(entity_set, candidate, body)
                    self._check(entity_set, candidate, row_id)
                    self._store(entity_set, row_id, self._stamp(entity_set, candidate, user))
                ids.append(row_id)
        except ODataError:
            self._settle(journal, ok=False)
            raise
        self._settle(journal, ok=True)
        if message == "CreateMultiple":
            context = f"{self.url}{API}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"
            return 200, {}, {"@odata.context": context, "Ids": ids}
        return 204, {}, None

    def batch(self, request: Request, user: str) -> Response:
        content_type = str(request.headers.get("Content-Type", ""))
        message = BytesParser(policy=compat32).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        )
        if not message.is_multipart():
            raise ODataError(400, "0x80060891", "The batch request must be multipart/mixed.")
        boundary = f"batchresponse_{uuid.uuid4()}"
        go_on = "odata.continue-on-error" in str(request.headers.get("Prefer", ""))
        out: list[str] = []
        failed = False
        for part in _parts(message):
            if part.get_content_type() == "multipart/mixed":
                text, ok = self._changeset(_parts(part), user)
            else:
                answer = self._sub_request(part, user)
                text, ok = self._part(answer), answer[0][0] < 400
            out.append(text)
            if not ok:
                failed = True
                if not go_on:  # "Handling errors": the batch stops at the first error
                    break
        body = "".join(f"--{boundary}\r\n{p}\r\n" for p in out) + f"--{boundary}--\r\n"
        status = 400 if failed and not go_on else 200
        return status, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, body.encode()

    def _sub_request(self, part: Any, user: str) -> tuple[Response, str]:
        start, headers, body = _http_request(part.get_payload(decode=True))
        method, url, _ = start.split(" ", 2)
        path = url.replace(self.url, "")
        path, _, query_text = path.partition("?")
        from urllib.parse import parse_qs

        query = {k: v[0] for k, v in parse_qs(query_text).items()}
        content_id = str(part.get("Content-ID", ""))

        class _Headers(dict[str, str]):
            def get(self, key: str, default: Any = None) -> Any:
                return super().get(key.lower(), default)

        sub = Request(method, path, query, _Headers(headers), body)
        try:
            return self._serve(sub, user), content_id
        except ODataError as exc:
            return exc.response(), content_id

    def _changeset(self, parts: list[Any], user: str) -> tuple[str, bool]:
        """A change set's answer, and whether it took effect (all of it or nothing)."""
        journal = self._all_or_nothing()
        answers = [self._sub_request(p, user) for p in parts]
        failed = next((a for a in answers if a[0][0] >= 400), None)
        self._settle(journal, ok=failed is None)
        if failed is not None:
            return self._part(failed), False
        boundary = f"changesetresponse_{uuid.uuid4()}"
        inner = "".join(f"--{boundary}\r\n{self._part(a)}\r\n" for a in answers)
        text = f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n{inner}--{boundary}--"
        return text, True

    @staticmethod
    def _part(answer: tuple[Response, str]) -> str:
        (status, headers, payload), content_id = answer
        reason = {
            200: "OK",
            201: "Created",
            204: "No Content",
            400: "Bad Request",
            404: "Not Found",
            412: "Precondition Failed",
        }.get(status, "Error")
        lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
        if content_id:
            lines.append(f"Content-ID: {content_id}")
        lines += ["", f"HTTP/1.1 {status} {reason}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        data = "" if payload is None else json.dumps(payload, default=str)
        if payload is not None:
            lines.append("Content-Type: application/json; odata.metadata=minimal")
        lines += ["", data]
        return "\r\n".join(lines)


def _parts(message: Message) -> list[Message]:
    return [p for p in message.get_payload() if isinstance(p, Message)]


def _http_request(raw: Any) -> tuple[str, dict[str, str], bytes]:
    """The request line, headers (lower-case names) and body of one application/http
    part, read with the standard library's HTTP header parser."""
    if not isinstance(raw, bytes):
        raise ODataError(400, "0x80060891", "A batch part has no request.")
    start, _, rest = raw.lstrip().partition(b"\n")
    message = BytesParser(policy=compat32).parsebytes(rest)
    headers = {k.lower(): str(v) for k, v in message.items()}
    body = message.get_payload(decode=True)
    data = body.strip() if isinstance(body, bytes) else b""
    return start.decode("utf-8", "replace").strip(), headers, data
