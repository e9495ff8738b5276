"""A local Microsoft identity platform over HTTPS: the OpenID configuration and the
client-credentials token endpoint, as MSAL uses them, for one tenant and one app
registration. It issues app-only tokens for the resources (audiences) it knows and
tells the service emulators whether a token is valid for theirs; `expire_tokens` makes
every token issued so far stale, as an expiry or a revocation would.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import parse_qs

from werkzeug.routing import Map, Rule

from sandbox.https import Answer, HttpsEmulator, Request, Response

GRAPH_RESOURCE = "https://graph.microsoft.com"
EXCHANGE_RESOURCE = "https://outlook.office365.com"  # SMTP AUTH, EWS


class IdentityEmulator(HttpsEmulator):
    def __init__(self, folder: Path, tenant: str, client_id: str, client_secret: str) -> None:
        super().__init__(folder, "identity")
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.valid_tokens: dict[str, str] = {}  # access token -> the resource it is for
        self.resources = {GRAPH_RESOURCE, EXCHANGE_RESOURCE}  # audiences it issues tokens for
        self.tokens_issued = 0
        self.authority = f"{self.base}/{tenant}"

    def __enter__(self) -> IdentityEmulator:
        super().__enter__()
        return self

    def token_valid(self, token: str, resource: str) -> bool:
        """Is this an unexpired access token issued for `resource` (its audience)?"""
        with self.lock:
            return self.valid_tokens.get(token) == resource

    def expire_tokens(self) -> None:
        with self.lock:
            self.valid_tokens.clear()

    routes = Map(
        [
            Rule(
                "/<tenant>/v2.0/.well-known/openid-configuration",
                endpoint="openid_configuration",
                methods=["GET"],
            ),
            Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
        ]
    )

    def unrouted(self, request: Request, status: int) -> Response:
        return status, {}, {"error": "not_found", "error_description": f"no route {request.path}"}

    def _tenant(self, tenant: str) -> None:
        if tenant.lower() != self.tenant.lower():
            raise Answer(
                (
                    400,
                    {},
                    {
                        "error": "invalid_tenant",
                        "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
                    },
                )
            )

    def openid_configuration(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        return (
            200,
            {},
            {
                "issuer": f"{self.authority}/v2.0",
                "authorization_endpoint": f"{self.authority}/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.authority}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{self.authority}/oauth2/v2.0/devicecode",
            },
        )

    def token(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        return self._token(parse_qs(request.body.decode()))

    def _token(self, form: dict[str, list[str]]) -> Response:
        def one(key: str) -> str:
            return form.get(key, [""])[0]

        if one("grant_type") != "client_credentials":
            return (
                400,
                {},
                {
                    "error": "unsupported_grant_type",
                    "error_description": "AADSTS70003: unsupported grant type",
                },
            )
        if one("client_id") != self.client_id or one("client_secret") != self.client_secret:
            return (
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        scope = one("scope")
        resource = scope.removesuffix("/.default")
        if not scope.endswith("/.default") or resource not in self.resources:
            return (
                400,
                {},
                {
                    "error": "invalid_scope",
                    "error_description": f"AADSTS70011: The provided value for scope {scope} "
                    "is not valid. Client credential flows must have a scope value with "
                    "/.default suffixed to the resource identifier (application ID URI).",
                },
            )
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.valid_tokens[token] = resource
            self.tokens_issued += 1
        return (
            200,
            {},
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            },
        )
