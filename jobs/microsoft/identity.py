"""Microsoft identity platform tokens for app-only (client credentials) access, via MSAL.

MSAL caches the token and hands out a new one before the old expires; `token(refresh=True)`
drops the cached one after a 401, so an expired or revoked token is replaced once.
`tokens_for` keeps one token source (one MSAL cache) per app registration, resource and
sign-in endpoint in the process, so every client and every run of a job share it.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from typing import Any

import msal
import requests

from runtime.secrets import Secret

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"  # SMTP AUTH and EWS, app-only
PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com"


class SignInError(RuntimeError):
    """The identity platform refused to issue a token; the message carries its error code."""


class _Session(requests.Session):
    """Passes `verify` on every request: requests would otherwise let REQUESTS_CA_BUNDLE
    override a session-level CA file."""

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._verify = verify

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self._verify)
        return super().request(*args, **kwargs)


class ClientCredentialsTokens:
    def __init__(
        self,
        tenant: str,
        client_id: str,
        client_secret: Secret,
        *,
        scope: str = GRAPH_SCOPE,
        authority_host: str = PUBLIC_AUTHORITY_HOST,
        verify: str | bool = True,
    ) -> None:
        session = _Session(verify)
        self.scope = scope
        self._lock = threading.Lock()
        self._app = msal.ConfidentialClientApplication(
            client_id,
            client_credential=client_secret.reveal(),
            authority=f"{authority_host.rstrip('/')}/{tenant}",
            http_client=session,
            instance_discovery=authority_host == PUBLIC_AUTHORITY_HOST,
            token_cache=msal.TokenCache(),
        )

    def token(self, refresh: bool = False) -> Secret:
        with self._lock:
            cache = self._app.token_cache
            if refresh:
                for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(item)
            result = self._app.acquire_token_for_client(scopes=[self.scope])
        if "access_token" not in result:
            error = result.get("error", "unknown_error")
            description = str(result.get("error_description", "")).split("\n")[0]
            raise SignInError(f"sign-in refused: {error}: {description}")
        return Secret(result["access_token"])


_SHARED: dict[tuple[str, ...], ClientCredentialsTokens] = {}
_SHARED_LOCK = threading.Lock()


def tokens_for(
    tenant: str, client_id: str, client_secret: Secret, **options: Any
) -> ClientCredentialsTokens:
    """The process's token source for this app registration, resource and sign-in
    endpoint (`options`: scope, authority_host, verify, as for `ClientCredentialsTokens`).
    A changed secret (rotated by an admin) is a new key, so it takes effect at once."""
    secret_hash = hashlib.sha256(client_secret.reveal().encode()).hexdigest()
    key = (tenant, client_id, secret_hash, *(f"{k}={v}" for k, v in sorted(options.items())))
    with _SHARED_LOCK:
        tokens = _SHARED.get(key)
        if tokens is None:
            tokens = _SHARED[key] = ClientCredentialsTokens(
                tenant, client_id, client_secret, **options
            )
        return tokens


class UserSignIn:
    """People signing in with Microsoft Entra ID: the OpenID Connect authorization-code
    flow with PKCE, through MSAL (which checks the state, the nonce and the ID token's
    audience, issuer and lifetime). The flow lives in the caller's session between the
    two halves."""

    def __init__(
        self,
        tenant: str,
        client_id: str,
        client_secret: Secret,
        *,
        authority_host: str = PUBLIC_AUTHORITY_HOST,
        verify: str | bool = True,
    ) -> None:
        self._app = msal.ConfidentialClientApplication(
            client_id,
            client_credential=client_secret.reveal(),
            authority=f"{authority_host.rstrip('/')}/{tenant}",
            http_client=_Session(verify),
            instance_discovery=authority_host == PUBLIC_AUTHORITY_HOST,
            token_cache=msal.TokenCache(),
        )

    def begin(self, redirect_uri: str) -> dict[str, Any]:
        """The flow to keep; send the browser to its `auth_uri`. The answer comes back in
        the query, not as a form post: the flow waits in a SameSite=Lax session cookie,
        which a cross-site POST would not carry."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = self._app.initiate_auth_code_flow(
                scopes=[], redirect_uri=redirect_uri, response_mode="query"
            )
        return dict(flow)

    def finish(self, flow: dict[str, Any], answer: dict[str, str]) -> dict[str, Any]:
        """The ID token's claims once the identity platform's answer checks out."""
        result = self._app.acquire_token_by_auth_code_flow(flow, answer)
        if "id_token_claims" not in result:
            error = result.get("error", "unknown_error")
            description = str(result.get("error_description", "")).split("\n")[0]
            raise SignInError(f"sign-in refused: {error}: {description}".rstrip(": "))
        return dict(result["id_token_claims"])
