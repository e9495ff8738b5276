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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from jobs.dataverse.batch import BatchOperation, build_changeset, parse_batch_response
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


@dataclass(frozen=True)
class Written:
    id: str
    etag: str | None
    modifiedon: datetime | None


def parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def odata_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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

    def changeset(self, operations: list[BatchOperation], what: str) -> list[int]:
        """Runs the operations in one $batch change set: all of them or none. Returns their
        statuses; a failed change set raises the error of the request that failed."""
        content_type, body = build_changeset(operations)
        response = self._call(
            "POST",
            "$batch",
            content=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            what=what,
        )
        try:
            answers = parse_batch_response(
                response.headers.get("content-type", ""), response.content
            )
        except ValueError as exc:
            raise MalformedResponse(f"{what}: {exc}") from None
        for answer in answers:
            if answer.status >= 400:
                fake = httpx.Response(answer.status, content=answer.body)
                raise_for(fake, what)
        if len(answers) != len(operations):
            raise MalformedResponse(
                f"{what}: {len(operations)} requests in the change set, {len(answers)} answers"
            )
        return [a.status for a in answers]

    # -- transport -------------------------------------------------------------------------
    def _call(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
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
