"""One client for every HTTP request to Microsoft (Graph, Dataverse): the app-only bearer
token with one fresh token after a 401, the retry policy of `jobs.microsoft.retry`, and
the service's own error code and message (`{"error": {"code", "message"}}`, the shape
Graph and the Dataverse Web API share). A request whose outcome is uncertain (sent,
no answer) is not repeated unless it is idempotent. Callers map the errors below to
their own types."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx

from jobs.microsoft.http import DEFAULT_TIMEOUT, http_client
from jobs.microsoft.identity import SignInError
from jobs.microsoft.retry import THROTTLED, UNCERTAIN, Retryable, RetryPolicy, retry_after
from runtime.logs import get_logger
from runtime.secrets import Secret

log = get_logger("microsoft")
DEFAULT_POLICY = RetryPolicy()


class TokenSource(Protocol):
    def token(self, refresh: bool = False) -> Secret: ...


class MicrosoftError(Exception):
    """A request to a Microsoft service did not succeed."""


class SignInFailed(MicrosoftError):
    """No token: the app registration, its secret or its consent is wrong."""


class Unreachable(MicrosoftError):
    def __init__(self, message: str, maybe_done: bool) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done  # sent, but no answer came: it may have taken effect


class Refused(MicrosoftError):
    """The service answered with an error status (after retries, if it was transient)."""

    def __init__(
        self,
        service: str,
        response: httpx.Response,
        *,
        transient: bool,
        retry_after: float | None = None,
    ) -> None:
        self.status = response.status_code
        self.code, self.message = error_of(response)
        self.text = f"{self.code}: {self.message}" if self.code else self.message
        super().__init__(f"{service} {self.status}: {self.text}")
        self.response = response
        self.transient = transient  # throttled or unavailable: worth trying later
        self.retry_after = retry_after


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of an error answer; the start of the body when it is not JSON."""
    try:
        error = response.json().get("error", {})
        if isinstance(error, dict):
            return str(error.get("code") or ""), str(error.get("message") or "").strip()
    except (ValueError, AttributeError):
        pass
    text = response.text.strip().replace("\n", " ")[:200]
    return "", text or response.reason_phrase


class _Answered(Retryable):
    def __init__(self, response: httpx.Response) -> None:
        code, message = error_of(response)
        wait = retry_after(response.headers.get("Retry-After"))
        super().__init__(f"{response.status_code} {code}: {message}".strip(), wait)
        self.response = response


class _NoAnswer(Retryable):
    pass


class MicrosoftClient:
    def __init__(
        self,
        service: str,
        tokens: TokenSource | None,
        *,
        verify: str | bool = True,
        base_url: str = "",
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = DEFAULT_TIMEOUT,
        log_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.service, self.tokens, self.policy, self.sleep = service, tokens, policy, sleep
        self.http = http_client(verify=verify, timeout=timeout, base_url=base_url, headers=headers)
        self.log_fields = dict(log_fields or {})
        self._token: str | None = None
        self.requests = 0  # sent, retries included

    def close(self) -> None:
        self.http.close()

    def bearer(self, refresh: bool = False) -> str:
        if self.tokens is None:
            raise SignInFailed(f"{self.service}: no credentials configured")
        if self._token is None or refresh:
            try:
                self._token = self.tokens.token(refresh=refresh).reveal()
            except SignInError as exc:
                raise SignInFailed(str(exc)) from None
        return self._token

    def request(
        self,
        method: str,
        url: str,
        *,
        authorize: bool = True,
        idempotent: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The answer to a request the service accepted (status below 400).

        `authorize=False` for pre-authorized URLs (upload sessions). A request that is
        not `idempotent` is not sent again once it may have reached the service."""
        try:
            response: httpx.Response = self.policy.retrying(
                sleep=self.sleep, on_retry=self.retried
            )(self._attempt, method, url, authorize, idempotent, headers, kwargs)
        except _Answered as exc:
            raise Refused(
                self.service, exc.response, transient=True, retry_after=exc.wait
            ) from None
        except _NoAnswer as exc:
            raise Unreachable(f"{self.service} unreachable: {exc.reason}", False) from None
        return response

    def _attempt(
        self,
        method: str,
        url: str,
        authorize: bool,
        idempotent: bool,
        headers: Mapping[str, str] | None,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        refreshed = False
        while True:
            sent = dict(headers or {})
            if authorize:
                sent["Authorization"] = f"Bearer {self.bearer(refresh=refreshed)}"
            self.requests += 1
            try:
                response = self.http.request(method, url, headers=sent, **kwargs)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if "CERTIFICATE_VERIFY_FAILED" in reason:  # no retry makes it trusted
                    raise Unreachable(f"{self.service} not trusted: {reason}", False) from None
                if not idempotent and not isinstance(exc, httpx.ConnectError):
                    raise Unreachable(f"no answer from {self.service}: {reason}", True) from None
                raise _NoAnswer(reason) from None
            if response.status_code == 401 and authorize and not refreshed:
                refreshed = True  # one fresh token: the cached one expired or was revoked
                continue
            if response.status_code in THROTTLED:
                raise _Answered(response)
            if response.status_code in UNCERTAIN:
                if not idempotent:
                    code, message = error_of(response)
                    raise Unreachable(
                        f"{self.service} answered {response.status_code} {code}: {message}; "
                        "the request may have taken effect",
                        True,
                    )
                raise _Answered(response)
            if response.status_code >= 400:
                raise Refused(self.service, response, transient=False)
            return response

    def retried(self, error: Retryable, attempt: int, wait: float) -> None:
        log.warning(
            f"{self.service.lower()}.retry",
            reason=error.reason,
            attempt=attempt,
            wait_s=round(wait, 2),
            **self.log_fields,
        )
