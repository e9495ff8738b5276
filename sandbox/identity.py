"""A local Microsoft identity platform over HTTPS: the OpenID configuration, the
client-credentials token endpoint, and the authorization-code flow with PKCE (the
authorize endpoint and the code grant, issuing an ID token with the person's app
roles), as MSAL uses them, for one tenant and one app registration. It issues
app-only tokens for the resources (audiences) it knows and tells the service emulators
whether a token is valid for theirs; `expire_tokens` makes every token issued so far
stale, as an expiry or a revocation would.

The authorize endpoint stands for a browser already signed in: it answers for the
person set in `signed_in` (or with `login_required` when nobody is), as with
`prompt=none`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from werkzeug.routing import Map, Rule

from sandbox.https import Answer, HttpsEmulator, Request, Response

GRAPH_RESOURCE = "https://graph.microsoft.com"
EXCHANGE_RESOURCE = "https://outlook.office365.com"  # SMTP AUTH, EWS


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Person:
    username: str
    name: str
    roles: list[str] = field(default_factory=list)
    oid: str = field(default_factory=lambda: str(uuid.uuid4()))


class IdentityEmulator(HttpsEmulator):
    def __init__(self, folder: Path, tenant: str, client_id: str, client_secret: str) -> None:
        super().__init__(folder, "identity")
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.valid_tokens: dict[str, str] = {}  # access token -> the resource it is for
        self.resources = {GRAPH_RESOURCE, EXCHANGE_RESOURCE}  # audiences it issues tokens for
        self.tokens_issued = 0
        self.authority = f"{self.base}/{tenant}"
        self.tenant_id = str(uuid.uuid4())
        self.people: dict[str, Person] = {}
        self.signed_in: str | None = None  # the person the "browser" is signed in as
        self._codes: dict[str, dict[str, Any]] = {}

    def add_person(self, username: str, name: str, roles: list[str]) -> Person:
        """A user of the tenant, with the app roles assigned to them for this app."""
        person = Person(username, name, roles)
        with self.lock:
            self.people[username] = person
        return person

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
            Rule("/<tenant>/oauth2/v2.0/authorize", endpoint="authorize", methods=["GET"]),
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

    def authorize(self, request: Request, tenant: str) -> Response:
        """Redirects back to the app with a code (or an error), as for `prompt=none`."""
        self._tenant(tenant)
        q = request.query
        redirect, state = q.get("redirect_uri", ""), q.get("state", "")
        if q.get("client_id") != self.client_id or not redirect:
            return 400, {}, {"error": "invalid_request",
                             "error_description": "AADSTS700016: unknown client_id"}  # fmt: skip
        if q.get("response_type") != "code" or "openid" not in q.get("scope", "").split():
            return self._back(redirect, state, "unsupported_response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return self._back(redirect, state, "invalid_request")
        person = self.people.get(self.signed_in or "")
        if person is None:
            return self._back(redirect, state, "login_required")
        code = secrets.token_urlsafe(24)
        with self.lock:
            self._codes[code] = {
                "person": person,
                "nonce": q.get("nonce", ""),
                "challenge": q.get("code_challenge", ""),
                "redirect_uri": redirect,
            }
        return 302, {"Location": f"{redirect}?{urlencode({'code': code, 'state': state})}"}, None

    @staticmethod
    def _bad_client() -> Response:
        description = "AADSTS7000215: Invalid client secret provided."
        return 401, {}, {"error": "invalid_client", "error_description": description}

    @staticmethod
    def _back(redirect: str, state: str, error: str) -> Response:
        query = urlencode({"error": error, "error_description": f"AADSTS: {error}", "state": state})
        return 302, {"Location": f"{redirect}?{query}"}, None

    def token(self, request: Request, tenant: str) -> Response:
        self._tenant(tenant)
        form = parse_qs(request.body.decode())
        if form.get("grant_type", [""])[0] == "authorization_code":
            return self._code_grant(form)
        return self._token(form)

    def _code_grant(self, form: dict[str, list[str]]) -> Response:
        def one(key: str) -> str:
            return form.get(key, [""])[0]

        if one("client_id") != self.client_id or one("client_secret") != self.client_secret:
            return self._bad_client()
        with self.lock:
            grant = self._codes.pop(one("code"), None)
        verifier = hashlib.sha256(one("code_verifier").encode()).digest()
        if (
            grant is None
            or grant["redirect_uri"] != one("redirect_uri")
            or _b64(verifier) != grant["challenge"]
        ):
            return 400, {}, {"error": "invalid_grant",
                             "error_description": "AADSTS70008: The provided authorization code "
                             "or refresh token has expired or was already used."}  # fmt: skip
        person: Person = grant["person"]
        now = int(time.time())
        claims = {
            "iss": f"{self.authority}/v2.0",
            "aud": self.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "nonce": grant["nonce"],
            "sub": _b64(hashlib.sha256(person.oid.encode()).digest()),
            "oid": person.oid,
            "tid": self.tenant_id,
            "preferred_username": person.username,
            "name": person.name,
            "roles": person.roles,
            "ver": "2.0",
        }
        header = {"typ": "JWT", "alg": "RS256", "kid": "sandbox"}
        id_token = ".".join(
            [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
             _b64(secrets.token_bytes(32))]
        )  # fmt: skip
        client_info = _b64(json.dumps({"uid": person.oid, "utid": self.tenant_id}).encode())
        return 200, {}, {
            "token_type": "Bearer",
            "scope": "openid profile email",
            "expires_in": 3599,
            "access_token": secrets.token_urlsafe(24),
            "id_token": id_token,
            "client_info": client_info,
        }  # fmt: skip

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
            return self._bad_client()
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
