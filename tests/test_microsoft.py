"""The one Microsoft layer (`jobs.microsoft`) held against Microsoft's documentation.

Two kinds of test: a documented sample answer fed to the client verbatim through
httpx's MockTransport (the page's URL beside it), and the emulator in `sandbox/` given
the same situation. The emulators are witnesses: they follow the pages, not the client.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.dataverse.batch import BatchOperation, build_changeset
from jobs.dataverse.client import DataverseClient, DataverseError
from jobs.email_logging.graph import GraphSharedMailbox
from jobs.microsoft.http import tls
from jobs.microsoft.retry import retry_after
from runtime.secrets import Secret
from tests.email_logging_fixtures import MAILBOX, MailSandbox, start

ROOT = Path(__file__).resolve().parent.parent
GRAPH = "https://graph.microsoft.com/v1.0"


class FixedTokens:
    def token(self, refresh: bool = False) -> Secret:
        return Secret("token")


def mocked(client: Any, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    """Answer the client's requests with `handler` (a documented sample) instead of a server."""
    client.http = httpx.Client(
        transport=httpx.MockTransport(handler), base_url=client.http.base_url
    )


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[MailSandbox]:
    yield from start(tmp_path)


# -- Retry-After, both forms ------------------------------------------------------------------
def test_retry_after_reads_seconds_and_an_http_date() -> None:
    # https://www.rfc-editor.org/rfc/rfc9110#field.retry-after, the two examples verbatim:
    #   Retry-After: Fri, 31 Dec 1999 23:59:59 GMT
    #   Retry-After: 120
    assert retry_after("120") == 120.0
    now = datetime(1999, 12, 31, 23, 59, 0, tzinfo=UTC)
    assert retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now=now) == 59.0
    assert retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now=now + timedelta(hours=1)) == 0.0
    assert retry_after(None) is None
    assert retry_after("soon") is None and retry_after("-5") is None and retry_after("nan") is None


@given(st.integers(min_value=0, max_value=10**9))
def test_retry_after_seconds_round_trip(seconds: int) -> None:
    assert retry_after(str(seconds)) == seconds


@given(st.integers(min_value=0, max_value=10**7))
def test_retry_after_dates_round_trip(seconds: int) -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert retry_after(format_datetime(now + timedelta(seconds=seconds), usegmt=True), now) == (
        seconds
    )


@given(st.text(max_size=60))
def test_retry_after_never_raises_and_never_says_negative(value: str) -> None:
    wait = retry_after(value)
    assert wait is None or wait >= 0


# -- Graph: throttling inside a JSON batch ----------------------------------------------------
# https://learn.microsoft.com/en-us/graph/throttling (sample response of a throttled request)
THROTTLED_BODY = {
    "error": {
        "code": "TooManyRequests",
        "innerError": {
            "code": "429",
            "date": "2020-08-18T12:51:51",
            "message": "Please retry after",
            "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2",
            "status": "429",
        },
        "message": "Please retry again later.",
    }
}


def test_a_batch_with_throttled_moves_sends_exactly_those_again_after_their_retry_after() -> None:
    # https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching: requests in
    # a batch are evaluated individually; a throttled one answers 429 with its own
    # Retry-After while the batch answers 200; retry the failed ones after the longest
    # Retry-After. https://learn.microsoft.com/en-us/graph/json-batching: a request whose
    # dependency failed answers 424 Failed Dependency.
    sent: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        ids = [r["id"] for r in json.loads(request.content)["requests"]]
        sent.append(ids)
        if len(sent) == 1:
            return httpx.Response(
                200,
                json={
                    "responses": [
                        {"id": "0", "status": 201, "body": {"webLink": "https://outlook/0"}},
                        {
                            "id": "1",
                            "status": 429,
                            "headers": {"Retry-After": "10"},
                            "body": THROTTLED_BODY,
                        },
                        {
                            "id": "2",
                            "status": 424,
                            "body": {"error": {"code": "FailedDependency", "message": ""}},
                        },
                    ]
                },
            )
        return httpx.Response(
            200,
            json={
                "responses": [
                    {"id": i, "status": 201, "body": {"webLink": f"https://outlook/{i}"}}
                    for i in ids
                ]
            },
        )

    waits: list[float] = []
    box = GraphSharedMailbox(MAILBOX, FixedTokens(), graph_url=GRAPH, sleep=waits.append)
    mocked(box.graph, answer)
    moved = box.move(["a", "b", "c"])
    assert sent == [["0", "1", "2"], ["1", "2"]]
    assert waits == [10.0]
    assert moved.failed == {} and moved.links == {
        "a": "https://outlook/0",
        "b": "https://outlook/1",
        "c": "https://outlook/2",
    }


def test_the_emulator_throttles_inside_a_batch_and_the_mailbox_loses_no_move(
    mail: MailSandbox,
) -> None:
    ids = [
        mail.graph.deliver(MAILBOX, sender="jo@cronus.example", subject=f"m{n}")["id"]
        for n in range(5)
    ]
    mail.graph.inject(r"/messages/[^/]+/move$", 429, retry_after=3, times=2)
    waits: list[float] = []
    box = mail.graph_mailbox(sleep=waits.append)
    moved = box.move(ids)
    box.close()
    assert moved.failed == {} and set(moved.links) == set(ids)
    assert box.requests == 2 and waits == [3.0]  # one extra $batch, for the two throttled
    assert not mail.graph.mailboxes[MAILBOX].messages("inbox")


def test_the_emulator_fails_a_request_whose_dependency_failed_with_424(
    mail: MailSandbox,
) -> None:
    first = mail.graph.deliver(MAILBOX, sender="jo@cronus.example")["id"]
    second = mail.graph.deliver(MAILBOX, sender="jo@cronus.example")["id"]
    mail.graph.inject(rf"/messages/{first}/move$", 429, retry_after=1)
    token = mail.tokens().token().reveal()

    def move(key: str, item: str, depends: list[str]) -> dict[str, Any]:
        return {
            "id": key,
            "method": "POST",
            "url": f"/users/{MAILBOX}/messages/{item}/move",
            "headers": {"Content-Type": "application/json"},
            "body": {"destinationId": "archive"},
            "dependsOn": depends,
        }

    with httpx.Client(verify=tls(mail.bundle)) as http:
        answer = http.post(
            f"{mail.graph.graph_url}/$batch",
            headers={"Authorization": f"Bearer {token}"},
            json={"requests": [move("1", first, []), move("2", second, ["1"])]},
        )
    assert answer.status_code == 200
    statuses = {r["id"]: r for r in answer.json()["responses"]}
    assert statuses["1"]["status"] == 429 and statuses["1"]["headers"]["Retry-After"] == "1"
    assert statuses["2"]["status"] == 424
    assert len(mail.graph.mailboxes[MAILBOX].messages("inbox")) == 2  # neither ran


# -- Paging: follow the service's next link ---------------------------------------------------
def test_the_message_list_follows_odata_next_link_verbatim() -> None:
    # https://learn.microsoft.com/en-us/graph/api/user-list-messages: "Don't try to extract
    # the $skip value from the @odata.nextLink URL to manipulate responses."
    next_link = f"{GRAPH}/users/{MAILBOX}/mailFolders/inbox/messages?%24skiptoken=AQ2Bz4vW9"
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        message = {"id": f"m{len(seen)}", "internetMessageId": f"<{len(seen)}@x>"}
        body: dict[str, Any] = {"value": [message]}
        if len(seen) == 1:
            body["@odata.nextLink"] = next_link
        return httpx.Response(200, json=body)

    box = GraphSharedMailbox(MAILBOX, FixedTokens(), graph_url=GRAPH)
    mocked(box.graph, answer)
    pages = list(box.pages(1))
    assert [[f.item_id for f in page] for page in pages] == [["m1"], ["m2"]]
    assert seen[1] == next_link and "%24skip=" not in seen[0] and "$skip=" not in seen[0]


def test_dataverse_queries_end_their_order_with_the_primary_key_and_follow_next_link() -> None:
    # https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query/page-results:
    # sort on a unique column last, or rows can repeat or go missing across pages; use the
    # @odata.nextLink as given.
    seen: list[httpx.URL] = []
    next_link = "https://org.crm.dynamics.com/api/data/v9.2/accounts?$select=name&$skiptoken=%3Ccookie%20pagenumber=%222%22%20/%3E"

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        body: dict[str, Any] = {"value": [{"accountid": str(len(seen)), "name": "x"}]}
        if len(seen) == 1:
            body["@odata.nextLink"] = next_link
        return httpx.Response(200, json=body)

    client = DataverseClient("https://org.crm.dynamics.com", FixedTokens())
    mocked(client._http, answer)
    rows = list(client.query("accounts", ["name"], key="accountid"))
    assert [r["accountid"] for r in rows] == ["1", "2"]
    assert seen[0].params["$orderby"] == "modifiedon asc,accountid asc"
    assert str(seen[1]) == next_link


# -- Dataverse: a $batch refused as a whole names the failed request's error ------------------
def test_a_batch_refused_without_continue_on_error_names_the_inner_error() -> None:
    # https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api#handling-errors:
    # without Prefer: odata.continue-on-error the batch stops at the first error and
    # answers 400, its body holding the failed request's answer.
    boundary = "batchresponse_c1bd45c1-dd81-470d-b897-e965846aad2f"
    body = (
        f"--{boundary}\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\n"
        "OData-Version: 4.0\r\n\r\n"
        '{"error":{"code":"0x80060891","message":"A record with the specified key values '
        'does not exist in account entity"}}\r\n'
        f"--{boundary}--\r\n"
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400,
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
            content=body.encode(),
        )

    client = DataverseClient("https://org.crm.dynamics.com", FixedTokens())
    mocked(client._http, answer)
    operation = BatchOperation("PATCH", "https://org.crm.dynamics.com/api/data/v9.2/accounts(1)")
    with pytest.raises(DataverseError) as raised:
        client.batch([[operation]], "posting invoice 103001")
    assert raised.value.status == 400 and raised.value.code == "0x80060891"
    assert str(raised.value) == (
        "posting invoice 103001: Dataverse answered 400 0x80060891: A record with the "
        "specified key values does not exist in account entity"
    )
    assert "batchresponse" not in str(raised.value)


def _dataverse_token(sandbox: Any) -> str:
    from jobs.microsoft.identity import ClientCredentialsTokens
    from tests.sales_fixtures import CLIENT_ID, SECRET, TENANT

    return (
        ClientCredentialsTokens(
            TENANT,
            CLIENT_ID,
            Secret(SECRET),
            scope=f"{sandbox.dataverse.url}/.default",
            authority_host=sandbox.identity.base,
            verify=sandbox.bundle,
        )
        .token()
        .reveal()
    )


@pytest.fixture
def dataverse(tmp_path: Path) -> Iterator[Any]:
    from tests.sales_fixtures import start as start_dataverse

    yield from start_dataverse(tmp_path)


def test_the_emulator_answers_a_failed_change_set_without_continue_on_error_with_400(
    dataverse: Any,
) -> None:
    api = f"{dataverse.dataverse.url}/api/data/v9.2"
    missing = "00000000-0000-4000-8000-000000000099"
    content_type, body = build_changeset(
        [
            BatchOperation("POST", f"{api}/accounts", {"name": "Fabrikam"}),
            BatchOperation("PATCH", f"{api}/accounts({missing})", {"name": "x"}, {"If-Match": "*"}),
        ]
    )
    with httpx.Client(verify=tls(dataverse.bundle)) as http:
        answer = http.post(
            f"{api}/$batch",
            headers={
                "Authorization": f"Bearer {_dataverse_token(dataverse)}",
                "Content-Type": content_type,
            },
            content=body,
        )
    assert answer.status_code == 400
    assert "Does Not Exist" in answer.text and not dataverse.dataverse.rows("accounts")


def test_the_emulator_refuses_a_create_of_an_existing_row_as_documented(dataverse: Any) -> None:
    # https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/perform-conditional-operations-using-web-api#prevent-update-in-upsert
    api = f"{dataverse.dataverse.url}/api/data/v9.2"
    row = "00000000-0000-4000-8000-000000000042"
    headers = {"Authorization": f"Bearer {_dataverse_token(dataverse)}", "If-None-Match": "*"}
    with httpx.Client(verify=tls(dataverse.bundle)) as http:
        created = http.patch(f"{api}/accounts({row})", headers=headers, json={"name": "A"})
        again = http.patch(f"{api}/accounts({row})", headers=headers, json={"name": "B"})
    assert created.status_code == 204
    assert again.status_code == 412
    assert again.json() == {
        "error": {"code": "", "message": "A record with matching key values already exists."}
    }


def test_the_emulator_ignores_a_products_price_list_on_create(dataverse: Any) -> None:
    # https://learn.microsoft.com/en-us/power-apps/developer/data-platform/reference/entities/product#BKMK_PriceLevelId:
    # "Valid for Create: No"; set it with an update.
    api = f"{dataverse.dataverse.url}/api/data/v9.2"
    headers = {"Authorization": f"Bearer {_dataverse_token(dataverse)}"}
    with httpx.Client(verify=tls(dataverse.bundle)) as http:
        currency = f"/transactioncurrencies({dataverse.dataverse.base_currency})"
        body = {"name": "PL", "transactioncurrencyid@odata.bind": currency}
        level = http.post(f"{api}/pricelevels", headers=headers, json=body)
        level_id = level.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        group = http.post(
            f"{api}/uomschedules", headers=headers, json={"name": "PCS", "baseuomname": "PCS"}
        )
        group_id = group.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        unit = next(u for u in dataverse.dataverse.rows("uoms") if u["name"] == "PCS")
        product = {
            "name": "Bicycle",
            "productnumber": "1000",
            "defaultuomscheduleid@odata.bind": f"/uomschedules({group_id})",
            "defaultuomid@odata.bind": f"/uoms({unit['uomid']})",
            "pricelevelid@odata.bind": f"/pricelevels({level_id})",
        }
        created = http.post(f"{api}/products", headers=headers, json=product)
        product_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        assert dataverse.dataverse.tables["products"][product_id].get("_pricelevelid_value") is None
        http.patch(
            f"{api}/products({product_id})",
            headers=headers | {"If-Match": "*"},
            json={"pricelevelid@odata.bind": f"/pricelevels({level_id})"},
        )
    assert dataverse.dataverse.tables["products"][product_id]["_pricelevelid_value"] == level_id


# -- Upload sessions --------------------------------------------------------------------------
def _upload_url(mail: MailSandbox) -> tuple[str, str]:
    token = mail.tokens().token().reveal()
    user = f"{mail.graph.graph_url}/users/{MAILBOX}"
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=tls(mail.bundle)) as http:
        draft = http.post(f"{user}/messages", headers=auth, json={"subject": "big"}).json()
        session = http.post(
            f"{user}/messages/{draft['id']}/attachments/createUploadSession",
            headers=auth,
            json={"AttachmentItem": {"attachmentType": "file", "name": "a.bin", "size": 4}},
        ).json()
    return session["uploadUrl"], token


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/octet-stream", "Authorization": "Bearer t"}, 401),
        ({"Content-Type": "application/json"}, 400),
        ({"Content-Type": "application/octet-stream"}, 201),
    ],
)
def test_the_emulator_takes_upload_puts_only_as_documented(
    mail: MailSandbox, headers: dict[str, str], status: int
) -> None:
    # https://learn.microsoft.com/en-us/graph/outlook-large-attachments: "Don't specify an
    # Authorization request header"; Content-Type application/octet-stream, Content-Length,
    # Content-Range.
    url, _ = _upload_url(mail)
    with httpx.Client(verify=tls(mail.bundle)) as http:
        answer = http.put(url, headers=headers | {"Content-Range": "bytes 0-3/4"}, content=b"abcd")
    assert answer.status_code == status, answer.text


# -- EWS: app-only tokens act by impersonation ------------------------------------------------
def test_the_ews_emulator_refuses_an_app_only_request_without_impersonation(
    mail: MailSandbox,
) -> None:
    # https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/how-to-authenticate-an-ews-application-by-using-oauth
    from jobs.microsoft.identity import EXCHANGE_SCOPE

    token = mail.tokens(EXCHANGE_SCOPE).token().reveal()
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">'
        '<soap:Header><t:RequestServerVersion Version="Exchange2013"/></soap:Header>'
        "<soap:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>"
        '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox">'
        f"<t:Mailbox><t:EmailAddress>{MAILBOX}</t:EmailAddress></t:Mailbox>"
        "</t:DistinguishedFolderId></m:FolderIds></m:GetFolder></soap:Body></soap:Envelope>"
    )
    with httpx.Client(verify=tls(mail.bundle)) as http:
        answer = http.post(
            mail.ews.url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "text/xml"},
            content=envelope,
        )
    assert answer.status_code == 500
    assert "ErrorInvalidExchangeImpersonationHeaderData" in answer.text


def test_the_ews_mailbox_impersonates_with_an_app_only_token(mail: MailSandbox) -> None:
    box = mail.ews_mailbox()
    assert any("queue folder Inbox" in line for line in box.check())
    box.close()


# -- The emulators are witnesses --------------------------------------------------------------
def imports_of_project_code(source: str) -> list[str]:
    """Modules of the clients (`jobs`) an emulator's source imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [n for n in names if n == "jobs" or n.startswith("jobs.")]
    return found


def test_the_scan_finds_an_emulator_importing_a_client_parser() -> None:
    assert imports_of_project_code("from jobs.dataverse.batch import parse_http_message") == [
        "jobs.dataverse.batch"
    ]


@pytest.mark.parametrize("name", ["dataverse.py", "graph.py", "ews.py", "https.py", "identity.py"])
def test_no_emulator_imports_the_clients_code(name: str) -> None:
    path = ROOT / "sandbox" / name
    if name == "identity.py" and not path.exists():
        pytest.fail("the identity platform emulator belongs in sandbox/identity.py")
    assert imports_of_project_code(path.read_text()) == []
