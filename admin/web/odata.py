"""The item availability web service: the read-only OData v4 feed Dynamics 365 Sales
reads to show what is in stock (Business Central's "Item Availability Web Service").

`/ODataV4/ItemAvailability` lists items with their inventory and unit and takes
`$filter` (the OData grammar, parsed by odata-query), `$select`, `$orderby`, `$top`,
`$skip`, `$count` and server-driven paging (`Prefer: odata.maxpagesize`,
`@odata.nextLink`); `/ODataV4/$metadata` describes it. Callers authenticate as in
Business Central: HTTP Basic with a user name and that user's web service access key
(`jobqueue users web-service-key NAME`; stored hashed). Served by the web process,
or alone by `jobqueue item-availability`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from odata_query import ast as odata_ast
from odata_query import exceptions as odata_errors
from odata_query.grammar import ODataLexer, ODataParser
from odata_query.sqlalchemy.core import AstToSqlAlchemyCoreVisitor
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from domain.sales.models import Item, table
from domain.users.accounts import user_for_web_service_key

ENTITY = "ItemAvailability"
NAMESPACE = "jobqueue"
DEFAULT_PAGE, MAX_PAGE = 100, 1000
_ITEMS = table(Item)
# The entity's properties (Business Central's field names) and the columns behind them.
PROPERTIES = {
    "No": (_ITEMS.c.no, "Edm.String"),
    "Description": (_ITEMS.c.description, "Edm.String"),
    "Base_Unit_of_Measure": (_ITEMS.c.base_unit_of_measure, "Edm.String"),
    "Inventory": (_ITEMS.c.inventory, "Edm.Decimal"),
    "Unit_Price": (_ITEMS.c.unit_price, "Edm.Decimal"),
}
# A relation with the properties as its column names, for $filter and $orderby.
FEED = (
    select(*[column.label(name) for name, (column, _type) in PROPERTIES.items()])
    .where(_ITEMS.c.blocked.is_(False))
    .subquery("item_availability")
)


class ODataError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="jobqueue OData"'} if self.status == 401 else {}
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, self.status, headers=headers)


def metadata() -> str:
    props = "".join(
        f'<Property Name="{name}" Type="{kind}"' + (' Nullable="false"/>' if name == "No" else "/>")
        for name, (_column, kind) in PROPERTIES.items()
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">'
        f'<edmx:DataServices><Schema Namespace="{NAMESPACE}" '
        'xmlns="http://docs.oasis-open.org/odata/ns/edm">'
        f'<EntityType Name="{ENTITY}"><Key><PropertyRef Name="No"/></Key>{props}</EntityType>'
        f'<EntityContainer Name="Default"><EntitySet Name="{ENTITY}" '
        f'EntityType="{NAMESPACE}.{ENTITY}"/></EntityContainer>'
        "</Schema></edmx:DataServices></edmx:Edmx>"
    )


def _whole(name: str, text: str | None, default: int | None = None) -> int | None:
    if text is None:
        return default
    if not text.isdigit() or len(text) > 9:
        raise ODataError(400, "BadRequest", f"{name} must be a whole number of at least 0")
    return int(text)


def _select(text: str | None) -> list[str]:
    if not text:
        return list(PROPERTIES)
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ODataError(400, "BadRequest", f"$select: no property {unknown[0]!r} on {ENTITY}")
    return names


def _orderby(text: str | None) -> list[Any]:
    order = []
    for part in (text or "No asc").split(","):
        name, _, direction = part.strip().partition(" ")
        direction = direction.strip().lower() or "asc"
        if name not in PROPERTIES or direction not in ("asc", "desc"):
            raise ODataError(
                400, "BadRequest", f"$orderby: {part.strip()!r} is not a property and asc or desc"
            )
        column = FEED.c[name]
        order.append(column.asc() if direction == "asc" else column.desc())
    order.append(FEED.c.No.asc())  # a unique last key: pages neither repeat nor skip rows
    return order


def _navigates(node: Any) -> bool:
    """Whether the expression walks a navigation property (`a/b`) or a collection
    (`any`/`all`): this entity has neither, so such a filter is refused up front."""
    if isinstance(node, odata_ast.Attribute | odata_ast.CollectionLambda):
        return True
    if isinstance(node, list | tuple):
        return any(_navigates(item) for item in node)
    if dataclasses.is_dataclass(node):
        return any(_navigates(getattr(node, f.name)) for f in dataclasses.fields(node))
    return False


def _where(text: str | None) -> Any:
    if not text:
        return None
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(text))
        if _navigates(tree):
            raise ODataError(400, "BadRequest", f"$filter: {ENTITY} has no navigation properties")
        return AstToSqlAlchemyCoreVisitor(FEED).visit(tree)  # type: ignore[arg-type]
    except odata_errors.ODataException as exc:
        raise ODataError(400, "BadRequest", f"$filter: {exc}") from None
    except (TypeError, ValueError) as exc:  # a comparison the column cannot take
        raise ODataError(400, "BadRequest", f"$filter: {exc}") from None


def _page_size(request: Request) -> int:
    for preference in request.headers.get("prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            return max(1, min(MAX_PAGE, int(value)))
    return DEFAULT_PAGE


def _row(row: Any, names: list[str]) -> dict[str, Any]:
    return {n: float(row[n]) if isinstance(row[n], Decimal) else row[n] for n in names}


def odata_router(sessions: sessionmaker[Session]) -> APIRouter:
    router = APIRouter(prefix="/ODataV4", include_in_schema=False)

    def caller(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            name, _, key = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, key = "", ""
        if scheme.lower() != "basic" or not name or not key:
            raise ODataError(
                401, "Unauthorized", "sign in with a user name and web service access key"
            )
        with sessions.begin() as session:
            if user_for_web_service_key(session, name, key) is None:
                raise ODataError(
                    401, "Unauthorized", "the user name or web service access key is wrong"
                )

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/ODataV4/"

    @router.get("/")
    def service(request: Request) -> Response:
        caller(request)
        sets = [{"name": ENTITY, "kind": "EntitySet", "url": ENTITY}]
        return JSONResponse({"@odata.context": f"{base(request)}$metadata", "value": sets})

    @router.get("/$metadata")
    def schema(request: Request) -> Response:
        caller(request)
        return Response(metadata(), media_type="application/xml")

    @router.get(f"/{ENTITY}")
    def feed(request: Request) -> Response:
        caller(request)
        return JSONResponse(_feed(request), headers={"OData-Version": "4.0"})

    @router.get(f"/{ENTITY}('{{no}}')")
    def one(request: Request, no: str) -> Response:
        caller(request)
        names = _select(request.query_params.get("$select"))
        with sessions() as session:
            row = session.execute(select(FEED).where(FEED.c.No == no)).mappings().first()
        if row is None:
            raise ODataError(404, "NotFound", f"no {ENTITY} with No {no!r}")
        context = {"@odata.context": f"{base(request)}$metadata#{ENTITY}/$entity"}
        return JSONResponse(context | _row(row, names), headers={"OData-Version": "4.0"})

    def _feed(request: Request) -> dict[str, Any]:
        params = request.query_params
        names = _select(params.get("$select"))
        where = _where(params.get("$filter"))
        order = _orderby(params.get("$orderby"))
        top = _whole("$top", params.get("$top"))
        skip = _whole("$skip", params.get("$skip"), 0) or 0
        offset = _whole("$skiptoken", params.get("$skiptoken"), skip) or 0
        size = _page_size(request)
        if top is not None:
            size = min(size, max(0, top - (offset - skip)))
        query = select(FEED)
        if where is not None:
            query = query.where(where)
        with sessions() as session:
            rows = (
                session.execute(query.order_by(*order).offset(offset).limit(size + 1))
                .mappings()
                .all()
            )
            count = (
                session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
                if params.get("$count", "").lower() == "true"
                else None
            )
        body: dict[str, Any] = {"@odata.context": f"{base(request)}$metadata#{ENTITY}"}
        if count is not None:
            body["@odata.count"] = count
        body["value"] = [_row(r, names) for r in rows[:size]]
        more = len(rows) > size and (top is None or offset + size - skip < top)
        if more:
            kept = {k: v for k, v in params.items() if k != "$skiptoken"}
            body["@odata.nextLink"] = (
                f"{base(request)}{ENTITY}?{urlencode(kept | {'$skiptoken': str(offset + size)})}"
            )
        return body

    return router


def install(app: FastAPI, sessions: sessionmaker[Session]) -> None:
    """Serve the web service from `app`, its errors as OData error bodies."""

    async def odata_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ODataError)
        return exc.response()

    app.add_exception_handler(ODataError, odata_error)
    app.include_router(odata_router(sessions))


def odata_app(sessions: sessionmaker[Session]) -> FastAPI:
    """The web service alone, for a deployment without the console."""
    app = FastAPI(title="jobqueue item availability", docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    install(app, sessions)
    return app
