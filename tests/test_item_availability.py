"""Issue 18, point 5: the item availability web service. An OData v4 client reads
`ItemAvailability` with `$filter`, `$select`, `$top`, `$count` and server-driven paging;
a wrong or rotated web service access key is refused."""

from __future__ import annotations

import base64
from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from admin.web.odata import odata_app
from domain.clock import utcnow
from domain.users.accounts import add_user, change_web_service_key
from domain.users.models import Role
from jobs.sales.data_import import import_rows
from runtime.settings import Settings

FEED = "/ODataV4/ItemAvailability"


def basic(name: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{key}".encode()).decode()}


@pytest.fixture
def service(settings: Settings, sessions: Any) -> tuple[TestClient, dict[str, str]]:
    rows = [{"no": f"I{n:05d}", "description": f"Item {n}", "base_unit_of_measure": "PCS",
             "inventory": n % 20, "blocked": n == 7} for n in range(250)]  # fmt: skip
    with sessions.begin() as session:
        import_rows(session, "items", list(enumerate(rows, start=1)), user="A", tz=settings.tz)
        add_user(session, "SALES", Role.VIEWER, "a long password", utcnow())
        key = change_web_service_key(session, "SALES")
    return TestClient(odata_app(sessions)), basic("SALES", key)


def read_all(client: TestClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """What an OData client does: follow @odata.nextLink until there is none."""
    rows: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        answer = client.get(next_url, headers=headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows += body["value"]
        next_url = body.get("@odata.nextLink")
    return rows


def test_a_client_pages_through_the_feed_with_filter_and_select(
    service: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = service
    paged = auth | {"Prefer": "odata.maxpagesize=40"}
    everything = read_all(client, FEED, paged)
    assert len(everything) == 249  # the blocked item is not offered
    assert [r["No"] for r in everything] == sorted(r["No"] for r in everything)
    assert len({r["No"] for r in everything}) == 249  # no page repeats a row
    wanted = "Inventory ge 15 and startswith(No,'I001')"
    rows = read_all(client, f"{FEED}?$filter={wanted}&$select=No,Inventory", paged)
    assert rows and all(set(r) == {"No", "Inventory"} for r in rows)
    expected = [f"I{n:05d}" for n in range(100, 200) if n % 20 >= 15]
    assert [r["No"] for r in rows] == expected
    assert all(r["Inventory"] >= 15 for r in rows)
    top = client.get(f"{FEED}?$top=55&$skip=10&$count=true&$orderby=Inventory desc",
                     headers=paged).json()  # fmt: skip
    assert top["@odata.count"] == 249 and len(top["value"]) == 40
    rest = read_all(client, top["@odata.nextLink"], paged)
    assert len(rest) == 15  # $top is kept across pages
    one = client.get(f"{FEED}('I00003')", headers=auth).json()
    assert (one["No"], one["Inventory"], one["Base_Unit_of_Measure"]) == ("I00003", 3.0, "PCS")


def test_bad_queries_are_odata_errors_naming_the_option(
    service: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = service
    for query, words in (("$filter=Colour eq 'red'", "$filter"), ("$select=Price", "Price"),
                         ("$top=-1", "$top"), ("$orderby=No sideways", "$orderby"),
                         ("$filter=No eq", "$filter"),
                         ("$filter=Unit/Code eq 'PCS'", "no navigation properties"),
                         ("$filter=Lines/any(x: x/Qty gt 1)", "no navigation properties"),
                         ):  # fmt: skip
        answer = client.get(f"{FEED}?{query}", headers=auth)
        assert answer.status_code == 400, query
        assert words in answer.json()["error"]["message"]
    assert client.get(f"{FEED}('NOPE')", headers=auth).status_code == 404


def test_a_wrong_or_rotated_key_is_refused(
    service: tuple[TestClient, dict[str, str]], sessions: Any
) -> None:
    client, auth = service
    refused = client.get(FEED)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get(FEED, headers=basic("SALES", "guess")).status_code == 401
    assert client.get(FEED, headers=basic("NOBODY", "guess")).status_code == 401
    assert client.get(FEED, headers={"Authorization": "Basic !!!"}).status_code == 401
    with sessions.begin() as session:
        new_key = change_web_service_key(session, "SALES")
    assert client.get(FEED, headers=auth).status_code == 401  # the old key no longer works
    assert client.get(FEED, headers=basic("SALES", new_key)).status_code == 200


def test_the_metadata_document_describes_the_entity(
    service: tuple[TestClient, dict[str, str]],
) -> None:
    client, auth = service
    xml = client.get("/ODataV4/$metadata", headers=auth).text
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    entity = ElementTree.fromstring(xml).find(".//edm:EntityType[@Name='ItemAvailability']", ns)
    assert entity is not None
    names = [p.get("Name") for p in entity.findall("edm:Property", ns)]
    assert names == ["No", "Description", "Base_Unit_of_Measure", "Inventory", "Unit_Price"]


def test_the_web_process_serves_it_too(
    settings: Settings, engine: Any, service: tuple[TestClient, dict[str, str]]
) -> None:
    from admin.web.app import create_web_app

    _alone, auth = service
    console = TestClient(create_web_app(settings, engine))
    answer = console.get(f"{FEED}?$top=2&$select=No", headers=auth)
    assert answer.status_code == 200 and answer.json()["value"] == [
        {"No": "I00000"},
        {"No": "I00001"},
    ]
