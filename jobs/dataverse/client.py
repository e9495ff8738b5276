"""A Dataverse Web API client (httpx) for the sync jobs.

Requests go through `jobs.microsoft` (tokens from MSAL for `<environment URL>/.default`,
renewed once after a 401; the one retry policy: service protection limits' 429 waits
for its Retry-After, 503/504 and broken connections back off). Creates are
idempotent: the caller chooses the row id and the create is an upsert that refuses
to update (`If-None-Match: *`), so repeating a create whose answer was lost finds
the row instead of making a second one. Updates carry the
row's ETag in `If-Match`, so a row changed in Dataverse since is refused (412), not
overwritten. Error bodies become clear messages; the token never appears in one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from jobs.dataverse.batch import (
    BatchItem,
    BatchResponse,
    build_batch,
    parse_batch_items,
    parse_batch_response,
)
from jobs.microsoft.client import (
    MicrosoftClient,
    MicrosoftError,
    Refused,
    SignInFailed,
    TokenSource,
    Unreachable,
    error_of,
)
from jobs.microsoft.retry import RetryPolicy

API = "api/data/v9.2"
# "Use bulk operation messages" and "Execute batch operations": up to 1,000 records per
# bulk message and 1,000 requests per $batch.
MAX_PER_REQUEST = 1000
# Service protection limits ask for waits of up to five minutes; longer ones give the
# run back to the queue instead of holding a worker thread.
POLICY = RetryPolicy(max_tries=6, max_wait=300.0)


class DataverseError(RuntimeError):
    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


class PreconditionFailed(DataverseError):
    """412: the row changed since its ETag (update) or exists already (create)."""


class NotFound(DataverseError):
    """404: the row is gone."""


class MalformedResponse(DataverseError):
    """The service answered with something that is not the documented shape."""


class NotSupported(DataverseError):
    """The table does not support this bulk operation message."""


class NotTracked(DataverseError):
    """The table does not track changes (the service did not apply the preference)."""


class DeltaRefused(DataverseError):
    """A delta link was refused (the token expired, or change tracking was switched
    off): the caller reads everything again."""


@dataclass(frozen=True)
class Answer:
    """One request's answer inside a $batch: its JSON, or the error it failed with (a
    failed change set's error for each of its requests)."""

    status: int
    data: dict[str, Any]
    error: DataverseError | None = None


@dataclass
class Changes:
    """A change-tracking read: changed rows and deleted row ids as they are read; the
    delta link for the next read once the last page is read (None: the table does not
    track changes)."""

    rows: Iterator[dict[str, Any]]
    delta_link: str | None = None


def logical_name(entity_set: str) -> str:
    """The table's logical name ("products" -> "product", "opportunities" ->
    "opportunity", "transactioncurrencies" -> "transactioncurrency"), for `@odata.type`
    and the primary key's name."""
    if entity_set.endswith("ies"):
        return entity_set[:-3] + "y"
    return entity_set.removesuffix("s")


def primary_key(entity_set: str) -> str:
    return f"{logical_name(entity_set)}id"


def is_deleted(row: dict[str, Any]) -> bool:
    return str(row.get("@odata.context", "")).endswith("/$deletedEntity")


@dataclass(frozen=True)
class Written:
    id: str
    etag: str | None
    modifiedon: datetime | None


def parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def raise_for(response: httpx.Response, what: str) -> None:
    """The error of an answer as the exception a caller can act on; a `$batch` refused as
    a whole (400 without continue-on-error) by the error of the request that failed."""
    if response.status_code < 400:
        return
    status, (code, message) = response.status_code, error_of(response)
    inner = _failed_batch_part(response)
    if inner is not None:
        status, (code, message) = inner.status_code, error_of(inner)
    text = f"{what}: Dataverse answered {status}"
    text += f" {code}: {message}" if code else f": {message}"
    kind = {412: PreconditionFailed, 404: NotFound}.get(status, DataverseError)
    raise kind(text, status, code)


def _failed_batch_part(response: httpx.Response) -> httpx.Response | None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("multipart/mixed"):
        return None
    try:
        answers = parse_batch_response(content_type, response.content)
    except ValueError:
        return None
    failed = [a for a in answers if a.status >= 400]
    if not failed:
        return None
    return httpx.Response(failed[0].status, headers=failed[0].headers, content=failed[0].body)


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise MalformedResponse(
            f"{what}: Dataverse answered {response.status_code} with a body that is not "
            f"JSON ({kind}): {response.text[:80]!r}"
        ) from None
    if not isinstance(data, dict):
        raise MalformedResponse(f"{what}: Dataverse answered with JSON that is not an object")
    return data


def written(entity_set: str, row_id: str, data: dict[str, Any], what: str) -> Written:
    try:
        modified = parse_datetime(data.get("modifiedon"))
    except (TypeError, ValueError):
        raise MalformedResponse(
            f"{what}: modifiedon {data.get('modifiedon')!r} is no date"
        ) from None
    etag = data.get("@odata.etag")
    if etag is not None and not isinstance(etag, str):
        raise MalformedResponse(f"{what}: @odata.etag is not a string")
    return Written(row_id, etag, modified)


class DataverseClient:
    def __init__(
        self,
        url: str,
        tokens: TokenSource,
        *,
        verify: str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.api = f"{self.url}/{API}/"
        self._no_bulk: set[tuple[str, str]] = set()
        # The service's clock as of its last answer (its Date header): a lower bound for
        # the modification times of rows written after it, whatever this clock says.
        self.server_time: datetime | None = None
        self._http = MicrosoftClient(
            "Dataverse",
            tokens,
            verify=verify,
            base_url=self.api,
            headers={
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "Accept": "application/json",
            },
            policy=POLICY,
            sleep=sleep,
            timeout=timeout,
        )

    @property
    def requests(self) -> int:
        """Requests sent, retries included."""
        return self._http.requests

    @property
    def sleep(self) -> Callable[[float], None]:
        return self._http.sleep

    @sleep.setter
    def sleep(self, sleep: Callable[[float], None]) -> None:
        self._http.sleep = sleep

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------
    def whoami(self) -> str:
        data = _json(self._call("GET", "WhoAmI", what="WhoAmI"), "WhoAmI")
        user = data.get("UserId")
        if not isinstance(user, str):
            raise MalformedResponse("WhoAmI: the answer has no UserId")
        return user

    def base_currency(self) -> str:
        """The organization's base currency (`organization.basecurrencyid`): what a
        record in the local currency is priced in."""
        rows = self.query("organizations", ["_basecurrencyid_value"], key="organizationid",
                          orderby="name asc")  # fmt: skip
        for row in rows:
            currency = row.get("_basecurrencyid_value")
            if isinstance(currency, str) and currency:
                return currency
        raise MalformedResponse("reading organizations: no base currency")

    def query(
        self,
        entity_set: str,
        select: list[str],
        filter: str = "",
        *,
        key: str,
        orderby: str = "modifiedon asc",
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching row, following @odata.nextLink page by page. The table's
        primary key (`key`) is the last sort key: "Page results" warns that rows can
        repeat or go missing across pages when the order is not unique."""
        params = {"$select": ",".join(select), "$orderby": f"{orderby},{key} asc"}
        if filter:
            params["$filter"] = filter
        what = f"reading {entity_set}"
        url: str | None = entity_set
        request_params: dict[str, str] | None = params
        while url is not None:
            response = self._call(
                "GET",
                url,
                params=request_params,
                headers={"Prefer": f"odata.maxpagesize={page_size}"},
                what=what,
            )
            data = _json(response, what)
            rows = data.get("value")
            if not isinstance(rows, list):
                raise MalformedResponse(f"{what}: the answer has no 'value' list")
            yield from rows
            next_link = data.get("@odata.nextLink")
            url, request_params = (next_link, None) if isinstance(next_link, str) else (None, None)

    def get(self, entity_set: str, row_id: str, select: list[str]) -> dict[str, Any] | None:
        what = f"reading {entity_set}({row_id})"
        try:
            response = self._call(
                "GET", f"{entity_set}({row_id})", params={"$select": ",".join(select)}, what=what
            )
        except NotFound:
            return None
        return _json(response, what)

    # -- writing ---------------------------------------------------------------------------
    def create(self, entity_set: str, row_id: str, body: dict[str, Any]) -> Written:
        """Creates the row with the id the caller chose; if it exists already (an earlier
        attempt whose answer was lost), returns it as it is."""
        what = f"creating {entity_set}({row_id})"
        try:
            response = self._call(
                "PATCH",
                f"{entity_set}({row_id})",
                json=body,
                headers={"If-None-Match": "*", "Prefer": "return=representation"},
                what=what,
            )
        except PreconditionFailed:
            existing = self.get(entity_set, row_id, ["modifiedon"])
            if existing is None:
                raise
            return written(entity_set, row_id, existing, what)
        return written(entity_set, row_id, _json(response, what), what)

    def update(
        self, entity_set: str, row_id: str, body: dict[str, Any], etag: str | None
    ) -> Written:
        """Updates only the row as last seen (If-Match: its ETag); 412 if it changed since,
        404 if it is gone. Without an ETag it still never creates (If-Match: *)."""
        what = f"updating {entity_set}({row_id})"
        response = self._call(
            "PATCH",
            f"{entity_set}({row_id})",
            json=body,
            headers={"If-Match": etag or "*", "Prefer": "return=representation"},
            what=what,
        )
        return written(entity_set, row_id, _json(response, what), what)

    def bulk(self, entity_set: str, message: str, records: list[dict[str, Any]]) -> None:
        """`CreateMultiple`, `UpdateMultiple` or `UpsertMultiple` of up to 1,000 records
        (each with its primary key): all of them or none on a standard table. Raises
        NotSupported, remembered, when the table lacks the message."""
        if (entity_set, message) in self._no_bulk:
            raise NotSupported(f"{entity_set} does not support {message}")
        if len(records) > MAX_PER_REQUEST:
            raise ValueError(f"at most {MAX_PER_REQUEST} records per {message}")
        kind = f"Microsoft.Dynamics.CRM.{logical_name(entity_set)}"
        what = f"{message} of {len(records)} {entity_set}"
        try:
            response = self._call(
                "POST",
                f"{entity_set}/Microsoft.Dynamics.CRM.{message}",
                json={"Targets": [{"@odata.type": kind, **r} for r in records]},
                what=what,
            )
        except NotFound as exc:
            if f"Microsoft.Dynamics.CRM.{message}" in str(exc):
                self._no_bulk.add((entity_set, message))
                raise NotSupported(f"{entity_set} does not support {message}") from None
            raise
        if response.status_code != 204 and not (
            message == "CreateMultiple" and isinstance(_json(response, what).get("Ids"), list)
        ):  # the documented answers: 204, or CreateMultiple's Ids
            kind = response.headers.get("content-type", "no content type")
            raise MalformedResponse(
                f"{what}: Dataverse answered {response.status_code} ({kind}), not the "
                f"documented 204; whether it took effect is unknown: {response.text[:80]!r}"
            )

    def batch(
        self, items: list[BatchItem], what: str, names: list[str] | None = None
    ) -> list[Answer]:
        """Runs independent requests and change sets in one $batch with
        continue-on-error; returns one answer per request, in order. `names`: what
        each item is, for its error message (else `what`)."""
        count = sum(len(i) if isinstance(i, list) else 1 for i in items)
        if count > MAX_PER_REQUEST:
            raise ValueError(f"at most {MAX_PER_REQUEST} requests per $batch")
        content_type, body = build_batch(items)
        response = self._call(
            "POST",
            "$batch",
            content=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            what=what,
        )
        try:
            parsed = parse_batch_items(response.headers.get("content-type", ""), response.content)
        except ValueError as exc:
            raise MalformedResponse(f"{what}: {exc}") from None
        if len(parsed) != len(items):
            raise MalformedResponse(
                f"{what}: {len(items)} items in the batch, {len(parsed)} answers"
            )
        answers: list[Answer] = []
        for n, (item, got) in enumerate(zip(items, parsed, strict=True)):
            size = len(item) if isinstance(item, list) else 1
            parts = got if isinstance(got, list) else [got]
            name = names[n] if names else what
            if len(parts) == 1 and parts[0].status >= 400:
                answers += [_answer_of(parts[0], name)] * size
            elif len(parts) != size:
                raise MalformedResponse(
                    f"{what}: {size} requests in a change set, {len(parts)} answers"
                )
            else:
                answers += [_answer_of(part, name) for part in parts]
        return answers

    def changes(self, entity_set: str, select: list[str], delta_link: str | None) -> Changes:
        """Change tracking (`Prefer: odata.track-changes`): every row on a first read, then
        the rows changed and deleted since `delta_link`. Pages follow @odata.nextLink."""
        changes = Changes(iter(()))
        changes.rows = self._change_pages(entity_set, select, delta_link, changes)
        return changes

    def _change_pages(
        self, entity_set: str, select: list[str], delta_link: str | None, out: Changes
    ) -> Iterator[dict[str, Any]]:
        what = f"reading changes of {entity_set}"
        url: str | None = delta_link or entity_set
        params: dict[str, str] | None = None if delta_link else {"$select": ",".join(select)}
        headers = {"Prefer": "odata.track-changes,odata.maxpagesize=5000"}
        while url is not None:
            try:
                response = self._call("GET", url, params=params, headers=headers, what=what)
            except DataverseError as exc:
                if delta_link and 400 <= exc.status < 500 and exc.status not in (401, 403, 429):
                    raise DeltaRefused(str(exc), exc.status, exc.code) from None
                raise
            if "odata.track-changes" not in response.headers.get("preference-applied", ""):
                raise NotTracked(f"{entity_set} does not track changes")
            data = _json(response, what)
            rows = data.get("value")
            if not isinstance(rows, list):
                raise MalformedResponse(f"{what}: the answer has no 'value' list")
            yield from rows
            next_link, params = data.get("@odata.nextLink"), None
            url = next_link if isinstance(next_link, str) else None
            if url is None:
                link = data.get("@odata.deltaLink")
                out.delta_link = link if isinstance(link, str) else None

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except Refused as exc:
            if exc.transient:
                if exc.retry_after is not None and exc.retry_after > POLICY.max_wait:
                    raise DataverseError(
                        f"{what}: throttled for {exc.retry_after:.0f} s ({exc.text})",
                        exc.status,
                        exc.code,
                    ) from None
                raise DataverseError(
                    f"{what}: gave up after {POLICY.max_tries} tries; last answer "
                    f"{exc.status} {exc.text}",
                    exc.status,
                    exc.code,
                ) from None
            raise_for(exc.response, what)
            raise  # not reached: raise_for raises for every error status
        except (SignInFailed, Unreachable) as exc:
            raise DataverseError(f"{what}: {exc}") from None
        except MicrosoftError as exc:
            raise DataverseError(f"{what}: {exc}") from None
        date = response.headers.get("date")
        if date:  # a proxy's odd Date header: keep the last good one
            with suppress(TypeError, ValueError):
                self.server_time = parsedate_to_datetime(date).astimezone(UTC)
        return response


def _answer_of(part: BatchResponse, what: str) -> Answer:
    if part.status >= 400:
        try:
            raise_for(httpx.Response(part.status, content=part.body), what)
        except DataverseError as exc:
            return Answer(part.status, {}, exc)
    try:
        data = part.json() if part.body.strip() else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Answer(part.status, {}, MalformedResponse(f"{what}: an answer is not a JSON object"))
    return Answer(part.status, data)
