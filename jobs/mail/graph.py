"""The Microsoft 365 and Current User connectors: Microsoft Graph mail over httpx.

Messages whose attachments total 3 MB or less go in one `sendMail` request; larger ones
are built as a draft, each large attachment uploaded through an upload session in
chunks (multiples of 320 KiB, as Graph requires), then sent. Throttling (429, 503 with
Retry-After) and server errors are retried in place a few times, then reported as
transient; a 401 gets one fresh token; other 4xx fail the message with Graph's own
error code and message. A sendMail whose response never arrived may have been
accepted, so it is reported as uncertain rather than sent again.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import httpx

from jobs.mail.errors import PermanentSendError, SendError, TransientSendError
from jobs.microsoft.client import MicrosoftClient, Refused, SignInFailed, TokenSource, Unreachable
from jobs.microsoft.retry import RetryPolicy

INLINE_LIMIT = 3 * 1024 * 1024
CHUNK = 10 * 320 * 1024  # 3.125 MiB: a multiple of 320 KiB, under Graph's 4 MiB per request
# A few tries in place; a longer throttle gives the message back to the outbox's own retry.
POLICY = RetryPolicy(max_tries=4, max_wait=60.0)


class UncertainSendError(SendError):
    """The request may have been accepted; sending again could deliver it twice."""


def _recipients(header: Any) -> list[dict[str, Any]]:
    """A parsed address header as Graph recipients, display names kept."""
    if header is None:
        return []
    found = []
    for address in header.addresses:
        entry = {"address": address.addr_spec}
        if address.display_name:
            entry["name"] = address.display_name
        found.append({"emailAddress": entry})
    return found


def _graph_message(mime: EmailMessage, bcc: list[str]) -> tuple[dict[str, Any], list[Any]]:
    body = mime.get_body(preferencelist=("html", "plain"))
    content = body.get_content() if body is not None else ""
    html = body is not None and body.get_content_subtype() == "html"
    message = {
        "subject": str(mime["Subject"] or ""),
        "body": {"contentType": "HTML" if html else "Text", "content": content},
        "toRecipients": _recipients(mime["To"]),
        "ccRecipients": _recipients(mime["Cc"]),
        "bccRecipients": [{"emailAddress": {"address": a}} for a in bcc],
        "internetMessageHeaders": [
            {"name": "X-Outbox-Message-Id", "value": str(mime["Message-ID"])}
        ],
    }
    return message, list(mime.iter_attachments())


class GraphMailConnector:
    def __init__(
        self,
        account: str,
        mailbox: str,
        tokens: TokenSource,
        *,
        graph_url: str = "https://graph.microsoft.com/v1.0",
        verify: str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.account, self.mailbox = account, mailbox
        self.graph_url = graph_url.rstrip("/")
        self.graph = MicrosoftClient(
            "Graph",
            tokens,
            verify=verify,
            policy=POLICY,
            sleep=sleep,
            log_fields={"account": account},
        )

    def close(self) -> None:
        self.graph.close()

    def send(self, mime: EmailMessage, sender: str, recipients: list[str]) -> None:
        shown = {a.addr_spec.lower() for h in ("To", "Cc") if mime[h] for a in mime[h].addresses}
        bcc = [r for r in recipients if r.lower() not in shown]
        message, attachments = _graph_message(mime, bcc)
        payloads = [
            (
                a.get_filename() or "attachment",
                a.get_content_type(),
                a.get_payload(decode=True) or b"",
            )
            for a in attachments
        ]
        user = f"{self.graph_url}/users/{self.mailbox}"
        if sum(len(data) for _, _, data in payloads) <= INLINE_LIMIT:
            message["attachments"] = [
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": name,
                    "contentType": ctype,
                    "contentBytes": base64.b64encode(data).decode(),
                }
                for name, ctype, data in payloads
            ]
            self._call(
                "POST",
                f"{user}/sendMail",
                json={"message": message, "saveToSentItems": True},
                uncertain=True,
            )
            return
        draft = self._call("POST", f"{user}/messages", json=message).json()
        for name, ctype, data in payloads:
            if len(data) <= INLINE_LIMIT:
                self._call(
                    "POST",
                    f"{user}/messages/{draft['id']}/attachments",
                    json={
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "name": name,
                        "contentType": ctype,
                        "contentBytes": base64.b64encode(data).decode(),
                    },
                )
            else:
                self._upload(f"{user}/messages/{draft['id']}", name, ctype, data)
        self._call("POST", f"{user}/messages/{draft['id']}/send", uncertain=True)

    def _upload(self, message_url: str, name: str, content_type: str, data: bytes) -> None:
        session = self._call(
            "POST",
            f"{message_url}/attachments/createUploadSession",
            json={
                "AttachmentItem": {
                    "attachmentType": "file",
                    "name": name,
                    "size": len(data),
                    "contentType": content_type,
                }
            },
        ).json()
        upload_url = session["uploadUrl"]
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            end = start + len(chunk) - 1
            # As "Upload large attachments" documents: the upload URL is pre-authorized, so
            # no Authorization header; the bytes as application/octet-stream with their
            # Content-Length and Content-Range.
            self._call(
                "PUT",
                upload_url,
                content=chunk,
                authorize=False,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{end}/{len(data)}",
                    "Content-Length": str(len(chunk)),
                },
            )

    def _call(
        self, method: str, url: str, *, uncertain: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """`uncertain`: a send that may have been accepted when no answer came."""
        try:
            return self.graph.request(method, url, idempotent=not uncertain, **kwargs)
        except SignInFailed as exc:
            raise PermanentSendError(f"{self.account}: {exc}") from None
        except Unreachable as exc:
            if exc.maybe_done:
                raise UncertainSendError(f"delivery uncertain: {method}: {exc}") from None
            raise TransientSendError(str(exc)) from None
        except Refused as exc:
            if exc.transient:
                raise TransientSendError(str(exc), retry_after=exc.retry_after) from None
            raise PermanentSendError(str(exc)) from None
