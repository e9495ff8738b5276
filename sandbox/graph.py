"""A local Microsoft identity platform + Microsoft Graph mail emulator over HTTPS.

It answers the documented requests with the documented shapes: the OpenID
configuration and the client-credentials token endpoint (as MSAL uses them);
`sendMail`; draft messages, attachments, `createUploadSession` with chunked PUTs
(Content-Range, nextExpectedRanges) and `send`. Faults can be injected per path:
429 with Retry-After, 5xx, and expired tokens (401 InvalidAuthenticationToken).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from sandbox.https import Fault, HttpsEmulator, Request, Response

GRAPH_RESOURCE = "https://graph.microsoft.com"
EXCHANGE_RESOURCE = "https://outlook.office365.com"  # SMTP AUTH, EWS
RESOURCES = {GRAPH_RESOURCE, EXCHANGE_RESOURCE}


@dataclass
class GraphMailbox:
    address: str
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Upload:
    mailbox: str
    message_id: str
    name: str
    content_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


def _graph_error(status: int, code: str, message: str) -> Response:
    return status, {}, {"error": {"code": code, "message": message}}


class GraphEmulator(HttpsEmulator):
    def __init__(self, folder: Path, tenant: str, client_id: str, client_secret: str) -> None:
        super().__init__(folder, "graph")
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.mailboxes: dict[str, GraphMailbox] = {}
        self.valid_tokens: dict[str, str] = {}  # access token -> the resource it is for
        self.resources = set(RESOURCES)  # resources (audiences) it issues tokens for
        self.tokens_issued = 0
        self.uploads: dict[str, _Upload] = {}
        self.graph_url = f"{self.base}/v1.0"
        self.authority = f"{self.base}/{tenant}"

    def __enter__(self) -> GraphEmulator:
        super().__enter__()
        return self

    def add_mailbox(self, address: str) -> GraphMailbox:
        box = GraphMailbox(address.lower())
        self.mailboxes[box.address] = box
        return box

    def inject(
        self, path: str, status: int, *, retry_after: int | None = None, times: int = 1
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        code = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(
            status, "InternalServerError"
        )
        body = {"error": {"code": code, "message": f"injected {status}"}}
        self.add_fault(Fault(re.compile(path), status, headers, body, times))

    def token_valid(self, token: str, resource: str) -> bool:
        """Is this an unexpired access token issued for `resource` (its audience)?"""
        with self.lock:
            return self.valid_tokens.get(token) == resource

    def expire_tokens(self) -> None:
        with self.lock:
            self.valid_tokens.clear()

    # -- routing ---------------------------------------------------------------------------
    def route(self, request: Request) -> Response:
        method, path, headers, body = request.method, request.path, request.headers, request.body
        tenant = re.escape(self.tenant)
        if method == "GET" and re.fullmatch(
            rf"/{tenant}/v2\.0/\.well-known/openid-configuration", path
        ):
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
        if method == "POST" and re.fullmatch(rf"/{tenant}/oauth2/v2\.0/token", path):
            return self._token(parse_qs(body.decode()))
        if path.startswith("/upload/") and method == "PUT":
            return self._upload_chunk(path.rsplit("/", 1)[1], headers, body)
        if not path.startswith("/v1.0/"):
            return _graph_error(404, "NotFound", f"no route {path}")
        auth = headers.get("Authorization", "")
        if not self.token_valid(auth.removeprefix("Bearer "), GRAPH_RESOURCE):
            return _graph_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        match = re.fullmatch(r"/v1\.0/users/([^/]+)(/.*)", path)
        if match is None:
            return _graph_error(400, "BadRequest", "Invalid request")
        box = self.mailboxes.get(match.group(1).lower())
        if box is None:
            return _graph_error(
                404, "ErrorInvalidUser", f"The requested user '{match.group(1)}' is invalid."
            )
        return self._mail(method, box, match.group(2), json.loads(body or b"{}"))

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

    def _mail(self, method: str, box: GraphMailbox, rest: str, body: dict[str, Any]) -> Response:
        if method == "POST" and rest == "/sendMail":
            message = body.get("message")
            if not isinstance(message, dict) or (
                not message.get("toRecipients")
                and not (message.get("ccRecipients") or message.get("bccRecipients"))
            ):
                return _graph_error(
                    400, "ErrorInvalidRecipients", "At least one recipient is not valid."
                )
            with self.lock:
                box.sent.append(message)
            return 202, {}, None
        if method == "POST" and rest == "/messages":
            message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            new_draft = {**body, "id": message_id, "isDraft": True, "attachments": []}
            with self.lock:
                box.drafts[message_id] = new_draft
            return 201, {}, new_draft
        match = re.fullmatch(r"/messages/([^/]+)(/.*)?", rest)
        draft = box.drafts.get(match.group(1)) if match else None
        if match is None or draft is None:
            return _graph_error(404, "ErrorItemNotFound", "The specified object was not found.")
        tail = match.group(2) or ""
        if method == "POST" and tail == "/attachments":
            draft["attachments"].append(body)
            return 201, {}, {**body, "id": uuid.uuid4().hex}
        if method == "POST" and tail == "/attachments/createUploadSession":
            item = body.get("AttachmentItem", {})
            session = secrets.token_urlsafe(16)
            self.uploads[session] = _Upload(
                box.address,
                draft["id"],
                item.get("name", ""),
                item.get("contentType", "application/octet-stream"),
                int(item.get("size", 0)),
            )
            expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            return (
                201,
                {},
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.uploadSession",
                    "uploadUrl": f"{self.base}/upload/{session}",
                    "expirationDateTime": expires,
                    "nextExpectedRanges": ["0-"],
                },
            )
        if method == "POST" and tail == "/send":
            with self.lock:
                box.drafts.pop(draft["id"])
                box.sent.append({**draft, "isDraft": False})
            return 202, {}, None
        return _graph_error(405, "ErrorInvalidRequest", f"{method} {rest} is not supported")

    def _upload_chunk(self, session: str, headers: Any, body: bytes) -> Response:
        upload = self.uploads.get(session)
        if upload is None:
            return _graph_error(404, "ItemNotFound", "The upload session was not found.")
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers.get("Content-Range", ""))
        if not found:
            return _graph_error(400, "InvalidRange", "Content-Range is missing or malformed.")
        start, end, total = map(int, found.groups())
        if start != len(upload.data) or end - start + 1 != len(body) or total != upload.size:
            return _graph_error(416, "InvalidRange", "The range does not follow the last one.")
        upload.data.extend(body)
        if len(upload.data) < upload.size:
            return (
                200,
                {},
                {
                    "expirationDateTime": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                    "nextExpectedRanges": [f"{len(upload.data)}-"],
                },
            )
        box = self.mailboxes[upload.mailbox]
        box.drafts[upload.message_id]["attachments"].append(
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": upload.name,
                "contentType": upload.content_type,
                "size": upload.size,
                "contentBytes": base64.b64encode(bytes(upload.data)).decode(),
            }
        )
        del self.uploads[session]
        return (
            201,
            {
                "Location": f"{self.graph_url}/users/{upload.mailbox}/messages/"
                f"{upload.message_id}/attachments/{uuid.uuid4().hex}"
            },
            None,
        )
