"""One Microsoft Graph HTTP client for every job that talks to Graph (the mail connectors,
the shared mailbox reader): the app-only bearer token with one fresh token after a 401,
throttling (429 with Retry-After) and server errors retried in place a few times, and
Graph's own error code and message. Callers turn the errors below into their own."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from jobs.identity import ClientCredentialsTokens, SignInError
from runtime.logs import get_logger

log = get_logger("graph")


class GraphError(Exception):
    """A Graph request did not succeed."""


class GraphSignInError(GraphError):
    """No token: the app registration, its secret or its consent is wrong."""


class GraphUnreachable(GraphError):
    def __init__(self, message: str, maybe_done: bool) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done  # sent, but no answer came: it may have taken effect


class GraphRefused(GraphError):
    def __init__(
        self, status: int, text: str, *, transient: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(f"Graph {status}: {text}")
        self.status, self.text = status, text
        self.transient = transient  # throttled or a server error: worth trying later
        self.retry_after = retry_after


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def graph_error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{error.get('code', 'unknown')}: {error.get('message', '')}"
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


class GraphClient:
    def __init__(
        self,
        tokens: ClientCredentialsTokens,
        *,
        verify: str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
        max_tries: int = 4,
        max_wait_seconds: float = 60.0,
        headers: Mapping[str, str] | None = None,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.tokens, self.sleep = tokens, sleep
        self.max_tries, self.max_wait_seconds = max_tries, max_wait_seconds
        self.headers = dict(headers or {})  # sent with every authorized request
        self.log_fields = dict(log_fields or {})
        tls: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self.client = httpx.Client(verify=tls, timeout=60)
        self.token: str | None = None
        self.requests = 0  # sent, retries included

    def close(self) -> None:
        self.client.close()

    def bearer(self, refresh: bool = False) -> str:
        if self.token is None or refresh:
            try:
                self.token = self.tokens.token(refresh=refresh).reveal()
            except SignInError as exc:
                raise GraphSignInError(str(exc)) from None
        return self.token

    def _backoff(self, attempt: int) -> float:
        return min(2.0**attempt, self.max_wait_seconds)

    def call(
        self,
        method: str,
        url: str,
        *,
        authorize: bool = True,
        idempotent: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The response of a request Graph accepted (status below 400).

        `authorize=False` for pre-authorized URLs (upload sessions). A request that is not
        `idempotent` is not sent again once it may have reached Graph."""
        refreshed = False
        status, text, wait = 0, "no answer", None
        for attempt in range(1, self.max_tries + 1):
            sent = dict(headers or {})
            if authorize:
                sent |= self.headers | {"Authorization": f"Bearer {self.bearer()}"}
            self.requests += 1
            try:
                response = self.client.request(method, url, headers=sent, **kwargs)
            except httpx.TransportError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # no retry makes it trusted
                    raise GraphUnreachable(f"Graph not trusted: {exc}", False) from None
                if not idempotent and not isinstance(exc, httpx.ConnectError):
                    raise GraphUnreachable(f"no answer from Graph: {exc}", True) from None
                if attempt == self.max_tries:
                    raise GraphUnreachable(f"Graph unreachable: {exc}", False) from None
                self.sleep(self._backoff(attempt))
                continue
            if response.status_code < 400:
                return response
            status, text = response.status_code, graph_error_text(response)
            if status == 401 and authorize and not refreshed:
                refreshed = True
                self.bearer(refresh=True)
                continue
            if not _transient(status):
                raise GraphRefused(status, text, transient=False)
            wait = retry_after_seconds(response) or self._backoff(attempt)
            log.warning(
                "graph.throttled",
                status=status,
                retry_after=wait,
                attempt=attempt,
                **self.log_fields,
            )
            if attempt == self.max_tries or wait > self.max_wait_seconds:
                break
            self.sleep(wait)
        raise GraphRefused(status, text, transient=True, retry_after=wait)
