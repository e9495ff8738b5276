"""A Dataverse Web API client (httpx) for the sync jobs.

Tokens come from MSAL (client credentials for `<environment URL>/.default`, cached,
renewed before expiry, and once after a 401). Service protection limits are honoured:
a 429 waits for its Retry-After and goes on, a 5xx or a broken connection is retried
with backoff. Creates are idempotent: the caller chooses the row id and the create is
an upsert that refuses to update (`If-None-Match: *`), so repeating a create whose
answer was lost finds the row instead of making a second one. Updates carry the
row's ETag in `If-Match`, so a row changed in Dataverse since is refused (412), not
overwritten. Error bodies become clear messages; the token never appears in one.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from jobs.dataverse.batch import BatchOperation, build_changeset, parse_batch_response
from jobs.identity import SignInError
from runtime.logs import get_logger
from runtime.secrets import Secret

log = get_logger("dataverse")
API = "api/data/v9.2"
MAX_TRIES = 6
MAX_RETRY_AFTER = 300.0  # longer waits give the run back to the queue instead


class TokenSource(Protocol):
    def token(self, refresh: bool = False) -> Secret: ...


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


def _error_message(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "")), str(error.get("message", "")).strip()
    except (ValueError, AttributeError):
        text = response.text.strip().replace("\n", " ")[:200]
        return "", text or response.reason_phrase


def raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    code, message = _error_message(response)
    text = f"{what}: Dataverse answered {response.status_code}"
    text += f" {code}: {message}" if code else f": {message}"
    kind = {412: PreconditionFailed, 404: NotFound}.get(response.status_code, DataverseError)
    raise kind(text, response.status_code, code)


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
        self.tokens = tokens
        self.sleep = sleep
        self._token: str | None = None
        self.requests = 0
        self._http = httpx.Client(
            base_url=self.api,
            verify=ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify,
            timeout=timeout,
            headers={
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "Accept": "application/json",
            },
        )

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
        orderby: str = "modifiedon asc",
        page_size: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every matching row, following @odata.nextLink page by page."""
        params = {"$select": ",".join(select), "$orderby": orderby}
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
    def _bearer(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            self._token = self.tokens.token(refresh=refresh).reveal()
        return self._token

    def _call(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        refreshed = False
        headers = dict(kwargs.pop("headers", None) or {})
        last = ""
        for attempt in range(1, MAX_TRIES + 1):
            try:
                headers["Authorization"] = f"Bearer {self._bearer()}"
            except SignInError as exc:
                raise DataverseError(f"{what}: {exc}") from None
            self.requests += 1
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                if "CERTIFICATE_VERIFY_FAILED" in last:  # no retry fixes trust
                    raise DataverseError(f"{what}: {last}") from None
                self._backoff(what, attempt, None, last)
                continue
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = True
                self._bearer(refresh=True)
                continue
            if status == 429 or status >= 500:
                code, message = _error_message(response)
                last = f"{status} {code}: {message}".strip()
                self._backoff(what, attempt, response.headers.get("Retry-After"), last)
                continue
            raise_for(response, what)
            return response
        raise DataverseError(f"{what}: gave up after {MAX_TRIES} tries; last answer {last}")

    def _backoff(self, what: str, attempt: int, retry_after: str | None, reason: str) -> None:
        if attempt == MAX_TRIES:
            return
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        if wait is None:
            wait = min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
        if wait > MAX_RETRY_AFTER:
            raise DataverseError(f"{what}: throttled for {wait:.0f} s ({reason})")
        log.warning(
            "dataverse.retry", what=what, attempt=attempt, wait_s=round(wait, 2), reason=reason
        )
        self.sleep(wait)
