"""A local Microsoft Graph mail emulator over HTTPS (tokens come from the identity
platform emulator, `sandbox.identity`, whose certificate it shares).

It answers the documented requests with the documented shapes: `sendMail`; draft
messages, attachments, `createUploadSession` with chunked PUTs (pre-authorized:
octet-stream, Content-Range, nextExpectedRanges) and `send`; mail folders (inbox,
junkemail, archive and the other well-known names) with message lists (`$select`,
`$top`, `$skip`, `$orderby`, `@odata.nextLink`), `move`, mutable or immutable ids
(`Prefer: IdType="ImmutableId"`), and JSON `$batch` (at most 20 requests, `dependsOn`
answered 424 when its dependency failed). Faults can be injected per path, inside
batches too: 429 with Retry-After, 5xx, and expired tokens (401
InvalidAuthenticationToken).
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

from werkzeug.routing import Map, Rule

from sandbox.https import Answer, Fault, HttpsEmulator, Request, Response
from sandbox.identity import EXCHANGE_RESOURCE, GRAPH_RESOURCE, IdentityEmulator

__all__ = ["EXCHANGE_RESOURCE", "GRAPH_RESOURCE", "GraphEmulator", "GraphMailbox"]


WELL_KNOWN_FOLDERS = {
    "inbox": "Inbox",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
}
IMMUTABLE = 'IdType="ImmutableId"'


def _new_id() -> str:
    return "AAMk" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _who(address: str) -> dict[str, Any]:
    return {"emailAddress": {"name": address.split("@")[0], "address": address}}


@dataclass
class GraphMailbox:
    address: str
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    # folder id -> (display name, message id -> message); well-known names map to ids
    folders: dict[str, tuple[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    well_known: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, display in WELL_KNOWN_FOLDERS.items():
            folder_id = _new_id()
            self.folders[folder_id] = (display, {})
            self.well_known[name] = folder_id

    def folder_id(self, name_or_id: str) -> str | None:
        key = self.well_known.get(name_or_id.lower(), name_or_id)
        return key if key in self.folders else None

    def messages(self, folder: str) -> dict[str, dict[str, Any]]:
        folder_id = self.folder_id(folder)
        if folder_id is None:
            raise KeyError(folder)
        return self.folders[folder_id][1]

    def find(self, message_id: str) -> tuple[str, dict[str, Any]] | None:
        for folder_id, (_, items) in self.folders.items():
            if message_id in items:
                return folder_id, items[message_id]
        return None


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
    def __init__(self, folder: Path, identity: IdentityEmulator) -> None:
        super().__init__(folder, "graph", certificate=identity.certificate)
        self.identity = identity  # tokens are its: Graph checks their audience
        self.mailboxes: dict[str, GraphMailbox] = {}
        self.uploads: dict[str, _Upload] = {}
        self.graph_url = f"{self.base}/v1.0"
        self._throttle: tuple[float, int, random.Random] | None = None

    def __enter__(self) -> GraphEmulator:
        super().__enter__()
        return self

    def add_mailbox(self, address: str) -> GraphMailbox:
        box = GraphMailbox(address.lower())
        self.mailboxes[box.address] = box
        return box

    def deliver(
        self,
        mailbox: str,
        *,
        sender: str | None,
        to: Sequence[str] = (),
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        subject: str = "",
        received: datetime | None = None,
        folder: str = "inbox",
        internet_message_id: str | None = None,
        has_attachments: bool = False,
        **raw: Any,
    ) -> dict[str, Any]:
        """Puts a message in a folder, shaped as Graph's message resource."""
        box = self.mailboxes[mailbox.lower()]
        item_id = _new_id()
        when = (received or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = {
            "@odata.etag": f'W/"{secrets.token_hex(8)}"',
            "id": item_id,
            "createdDateTime": when,
            "receivedDateTime": when,
            "sentDateTime": when,
            "hasAttachments": has_attachments,
            "internetMessageId": internet_message_id
            if internet_message_id is not None
            else f"<{uuid.uuid4().hex}@contoso.example>",
            "subject": subject,
            "bodyPreview": "",
            "isRead": False,
            "parentFolderId": box.folder_id(folder),
            "webLink": self._web_link(item_id),
            "from": _who(sender) if sender is not None else None,
            "sender": _who(sender) if sender is not None else None,
            "toRecipients": [_who(a) for a in to],
            "ccRecipients": [_who(a) for a in cc],
            "bccRecipients": [_who(a) for a in bcc],
            **raw,
        }
        with self.lock:
            box.messages(folder)[item_id] = message
        return message

    @staticmethod
    def _web_link(item_id: str) -> str:
        return (
            f"https://outlook.office365.com/owa/?ItemID={quote(item_id, safe='')}"
            "&exvsurl=1&viewmodel=ReadMessageItem"
        )

    def inject(
        self,
        path: str,
        status: int,
        *,
        retry_after: int | None = None,
        times: int = 1,
        after: bool = False,
    ) -> None:
        """Answer requests to `path` with `status` (`after`: process them, then answer)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        code = {
            429: "TooManyRequests",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }.get(status, "InternalServerError")
        body = {"error": {"code": code, "message": f"injected {status}"}}
        self.add_fault(Fault(re.compile(path), status, headers, body, times, after=after))

    def throttle(self, share: float, *, retry_after: int = 1, seed: int = 7) -> None:
        """Throttle this share of Graph requests at random (batched ones each on its own),
        429 with Retry-After, as a busy tenant would."""
        self._throttle = (share, retry_after, random.Random(seed)) if share > 0 else None

    def _throttled(self) -> Response | None:
        with self.lock:
            if self._throttle is None or self._throttle[2].random() >= self._throttle[0]:
                return None
            wait = self._throttle[1]
        return (
            429,
            {"Retry-After": str(wait)},
            {"error": {"code": "TooManyRequests", "message": "Please retry again later."}},
        )

    @property
    def tokens_issued(self) -> int:
        return self.identity.tokens_issued

    def expire_tokens(self) -> None:
        self.identity.expire_tokens()

    # -- routing ---------------------------------------------------------------------------
    routes = Map(
        [
            Rule("/upload/<session>", endpoint="upload_chunk", methods=["PUT"]),
            Rule("/v1.0/$batch", endpoint="batch", methods=["POST"]),
            Rule("/v1.0/users/<user>/mailFolders/<folder>", endpoint="folder", methods=["GET"]),
            Rule(
                "/v1.0/users/<user>/mailFolders/<folder>/messages",
                endpoint="folder_messages",
                methods=["GET"],
            ),
            Rule("/v1.0/users/<user>/sendMail", endpoint="send_mail", methods=["POST"]),
            Rule("/v1.0/users/<user>/messages", endpoint="create_draft", methods=["POST"]),
            Rule("/v1.0/users/<user>/messages/<item>", endpoint="get_message", methods=["GET"]),
            Rule("/v1.0/users/<user>/messages/<item>/move", endpoint="move", methods=["POST"]),
            Rule(
                "/v1.0/users/<user>/messages/<item>/send", endpoint="send_draft", methods=["POST"]
            ),
            Rule(
                "/v1.0/users/<user>/messages/<item>/attachments",
                endpoint="add_attachment",
                methods=["POST"],
            ),
            Rule(
                "/v1.0/users/<user>/messages/<item>/attachments/createUploadSession",
                endpoint="create_upload_session",
                methods=["POST"],
            ),
        ],
        strict_slashes=False,
    )

    def route(self, request: Request) -> Response:
        if request.path.startswith("/v1.0/"):  # Graph proper: a valid token, maybe throttled
            auth = str(request.headers.get("Authorization", ""))
            if not self.identity.token_valid(auth.removeprefix("Bearer "), GRAPH_RESOURCE):
                return _graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                )
            throttled = self._throttled()
            if throttled is not None:
                return throttled
        return super().route(request)

    def unrouted(self, request: Request, status: int) -> Response:
        if status == 405:
            return _graph_error(
                405, "ErrorInvalidRequest", f"{request.method} {request.path} is not supported"
            )
        return _graph_error(400, "BadRequest", f"Invalid request: {request.path}")

    def _box(self, user: str) -> GraphMailbox:
        box = self.mailboxes.get(user.lower())
        if box is None:
            raise Answer(
                _graph_error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
            )
        return box

    def _draft(self, box: GraphMailbox, item: str) -> dict[str, Any]:
        draft = box.drafts.get(item)
        if draft is None:
            raise Answer(
                _graph_error(404, "ErrorItemNotFound", "The specified object was not found.")
            )
        return draft

    def batch(self, request: Request) -> Response:
        """JSON batching: each request answered as if sent alone (faults included, so a
        throttled one answers 429 with its own Retry-After inside a 200 batch, as
        "Throttling and batching" documents); a request whose `dependsOn` names one that
        failed answers 424 Failed Dependency without running."""
        requests = request.json().get("requests")
        if not isinstance(requests, list) or not 0 < len(requests) <= 20:
            return _graph_error(
                400, "BadRequest", "A batch request must hold between 1 and 20 requests."
            )
        statuses: dict[str, int] = {}
        responses = []
        for sub in requests:
            sub_id = str(sub.get("id"))
            depends = [str(d) for d in sub.get("dependsOn") or []]
            if any(statuses.get(d, 424) >= 400 for d in depends):
                statuses[sub_id] = 424
                responses.append(
                    {
                        "id": sub_id,
                        "status": 424,
                        "body": {
                            "error": {"code": "FailedDependency", "message": "Failed dependency"}
                        },
                    }
                )
                continue
            url = urlparse(str(sub.get("url", "")))
            headers = Message()
            for key, value in (sub.get("headers") or {}).items():
                headers[key] = value
            headers["Authorization"] = request.headers.get("Authorization", "")
            inner = Request(
                str(sub.get("method", "GET")).upper(),
                "/v1.0" + url.path,
                {k: v[0] for k, v in parse_qs(url.query).items()},
                headers,
                json.dumps(sub.get("body")).encode() if sub.get("body") is not None else b"",
            )
            status, answer_headers, payload = self._answer(inner)
            statuses[sub_id] = status
            responses.append(
                {"id": sub_id, "status": status, "headers": answer_headers, "body": payload}
            )
        return 200, {}, {"responses": responses}

    def _folder_items(self, user: str, folder: str) -> tuple[GraphMailbox, str]:
        box = self._box(user)
        folder_id = box.folder_id(folder)
        if folder_id is None:
            raise Answer(
                _graph_error(404, "ErrorItemNotFound", "The specified object was not found.")
            )
        return box, folder_id

    def folder(self, request: Request, user: str, folder: str) -> Response:
        box, folder_id = self._folder_items(user, folder)
        display, items = box.folders[folder_id]
        return 200, {}, {"id": folder_id, "displayName": display, "totalItemCount": len(items)}

    def folder_messages(self, request: Request, user: str, folder: str) -> Response:
        box, folder_id = self._folder_items(user, folder)
        items = box.folders[folder_id][1]
        query = request.query
        rest = f"/mailFolders/{folder}/messages"
        order = query.get("$orderby", "receivedDateTime desc").split()
        try:
            top = min(int(query.get("$top", "10")), 1000)
            skip = int(query.get("$skip", "0"))
        except ValueError:
            return _graph_error(400, "BadRequest", "$top and $skip must be integers.")
        with self.lock:
            ordered = sorted(
                items.values(),
                key=lambda m: str(m.get(order[0], "")),
                reverse=len(order) > 1 and order[1].lower() == "desc",
            )
            page = ordered[skip : skip + top]
        select = [f for f in query.get("$select", "").split(",") if f]
        value = [
            {k: v for k, v in m.items() if not select or k in select or k in ("id", "@odata.etag")}
            for m in page
        ]
        result: dict[str, Any] = {"value": value}
        if skip + top < len(ordered):
            result["@odata.nextLink"] = f"{self.graph_url}/users/{box.address}{rest}?" + urlencode(
                {**dict(query), "$skip": str(skip + top)}
            )
        return 200, {}, result

    def move(self, request: Request, user: str, item: str) -> Response:
        box, item_id = self._box(user), item
        destination = box.folder_id(str(request.json().get("destinationId", "")))
        if destination is None:
            return _graph_error(400, "ErrorInvalidIdMalformed", "The destination id is invalid.")
        immutable = IMMUTABLE in str(request.headers.get("Prefer", ""))
        with self.lock:
            found = box.find(item_id)
            if found is None:
                return _graph_error(
                    404, "ErrorItemNotFound", "The specified object was not found in the store."
                )
            source, message = found
            del box.folders[source][1][item_id]
            new_id = item_id if immutable else _new_id()
            moved = {
                **message,
                "id": new_id,
                "parentFolderId": destination,
                "webLink": self._web_link(new_id),
            }
            box.folders[destination][1][new_id] = moved
        return 201, {}, moved

    def send_mail(self, request: Request, user: str) -> Response:
        box, message = self._box(user), request.json().get("message")
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

    def create_draft(self, request: Request, user: str) -> Response:
        box = self._box(user)
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        new_draft = {**request.json(), "id": message_id, "isDraft": True, "attachments": []}
        with self.lock:
            box.drafts[message_id] = new_draft
        return 201, {}, new_draft

    def get_message(self, request: Request, user: str, item: str) -> Response:
        box = self._box(user)
        with self.lock:
            stored = box.find(item)
        if stored is not None:
            return 200, {}, stored[1]
        return 200, {}, self._draft(box, item)

    def add_attachment(self, request: Request, user: str, item: str) -> Response:
        draft, body = self._draft(self._box(user), item), request.json()
        draft["attachments"].append(body)
        return 201, {}, {**body, "id": uuid.uuid4().hex}

    def create_upload_session(self, request: Request, user: str, item: str) -> Response:
        box = self._box(user)
        draft = self._draft(box, item)
        attachment = request.json().get("AttachmentItem", {})
        session = secrets.token_urlsafe(16)
        self.uploads[session] = _Upload(
            box.address,
            draft["id"],
            attachment.get("name", ""),
            attachment.get("contentType", "application/octet-stream"),
            int(attachment.get("size", 0)),
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

    def send_draft(self, request: Request, user: str, item: str) -> Response:
        box = self._box(user)
        draft = self._draft(box, item)
        with self.lock:
            box.drafts.pop(draft["id"])
            box.sent.append({**draft, "isDraft": False})
        return 202, {}, None

    def upload_chunk(self, request: Request, session: str) -> Response:
        """ "Upload large attachments": the upload URL is pre-authorized, so a PUT must
        carry no Authorization header; its bytes come as application/octet-stream with
        Content-Length and Content-Range."""
        headers, body = request.headers, request.body
        upload = self.uploads.get(session)
        if upload is None:
            return _graph_error(404, "ItemNotFound", "The upload session was not found.")
        if headers.get("Authorization"):
            return _graph_error(
                401,
                "InvalidAuthenticationToken",
                "An Authorization header must not be sent to a pre-authenticated upload URL.",
            )
        if (
            str(headers.get("Content-Type", "")).split(";")[0].strip()
            != ("application/octet-stream")
            or headers.get("Content-Length") is None
        ):
            return _graph_error(
                400,
                "InvalidRequest",
                "An upload PUT needs Content-Type: application/octet-stream and Content-Length.",
            )
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
