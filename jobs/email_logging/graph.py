"""The shared mailbox through Microsoft Graph (the new experience), over httpx.

Reads `/users/{mailbox}/mailFolders/inbox/messages` with `$select`, `$top`, `$skip`
and `$orderby` (oldest first), so Junk and every other folder stay unread. Moves go
to the well-known `archive` folder twenty at a time in JSON `$batch` requests. Ids are
requested as immutable (`Prefer: IdType="ImmutableId"`), so an item keeps its id and
its link when it moves. 429 and 5xx are retried after Retry-After (or a backoff), in
the batch too; a 401 gets one fresh token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx

from domain.interactions.matching import BadMessage, message
from jobs.email_logging.mailbox import Fetched, MailboxError, Moved
from jobs.graph_client import GraphClient, GraphError, GraphRefused
from jobs.identity import ClientCredentialsTokens
from runtime.logs import get_logger

log = get_logger("email_logging.graph")
SELECT = (
    "id,internetMessageId,subject,receivedDateTime,from,sender,toRecipients,"
    "ccRecipients,bccRecipients,hasAttachments,webLink"
)
BATCH_LIMIT = 20  # requests per JSON batch, as Graph allows
PAGE_LIMIT = 1000  # Graph's largest $top for messages
MAX_TRIES = 5
MAX_WAIT_SECONDS = 120.0
PREFER = 'IdType="ImmutableId"'


def _address(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    inner = value.get("emailAddress")
    return inner.get("address") if isinstance(inner, dict) else None


def _addresses(values: Any) -> list[str | None]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise BadMessage("a recipient list is not a list")
    return [_address(v) for v in values]


def _received(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadMessage(f"the received date {value!r} is not a date") from None


def fetched(raw: Any) -> Fetched:
    """A Graph message resource, checked: a Fetched with its message or the reason not."""
    item_id = str(raw.get("id", "")) if isinstance(raw, dict) else ""
    if not item_id:
        return Fetched("", error="the item has no id")
    try:
        sender = _address(raw.get("from")) or _address(raw.get("sender"))
        return Fetched(
            item_id,
            message(
                item_id=item_id,
                message_id=raw.get("internetMessageId"),
                sender=sender,
                to=_addresses(raw.get("toRecipients")),
                cc=_addresses(raw.get("ccRecipients")),
                bcc=_addresses(raw.get("bccRecipients")),
                subject=raw.get("subject"),
                received_at=_received(raw.get("receivedDateTime")),
                has_attachments=bool(raw.get("hasAttachments")),
                link=str(raw.get("webLink") or ""),
            ),
        )
    except BadMessage as exc:
        return Fetched(item_id, error=str(exc))


class GraphSharedMailbox:
    def __init__(
        self,
        mailbox: str,
        tokens: ClientCredentialsTokens,
        *,
        graph_url: str = "https://graph.microsoft.com/v1.0",
        archive: str = "archive",
        verify: str | bool = True,
        sleep: Callable[[float], None] = time.sleep,
        moves_per_batch: int = BATCH_LIMIT,
    ) -> None:
        if not 1 <= moves_per_batch <= BATCH_LIMIT:
            raise ValueError(f"moves per batch must be between 1 and {BATCH_LIMIT}")
        self.moves_per_batch = moves_per_batch
        self.mailbox, self.archive = mailbox, archive
        self.graph_url = graph_url.rstrip("/")
        self.graph = GraphClient(
            tokens,
            verify=verify,
            sleep=sleep,
            max_tries=MAX_TRIES,
            max_wait_seconds=MAX_WAIT_SECONDS,
            headers={"Prefer": PREFER},
            log_fields={"mailbox": mailbox},
        )

    @property
    def requests(self) -> int:
        """Graph requests sent, retries included."""
        return self.graph.requests

    def close(self) -> None:
        self.graph.close()

    @property
    def _user(self) -> str:
        return f"/users/{self.mailbox}"

    def check(self) -> list[str]:
        try:
            self.graph.bearer(refresh=True)
        except GraphError as exc:
            raise MailboxError(str(exc)) from None
        checked = ["signed in (client credentials)"]
        for folder in ("inbox", self.archive):
            data = self._call("GET", f"{self._user}/mailFolders/{folder}").json()
            checked.append(
                f"folder {data.get('displayName', folder)}: {data.get('totalItemCount', 0)} items"
            )
        return checked

    def read(self, size: int, skip: int) -> list[Fetched]:
        params = {
            "$select": SELECT,
            "$top": str(min(size, PAGE_LIMIT)),
            "$skip": str(skip),
            "$orderby": "receivedDateTime asc",
        }
        data = self._call("GET", f"{self._user}/mailFolders/inbox/messages", params=params).json()
        values = data.get("value") if isinstance(data, dict) else None
        if not isinstance(values, list):
            raise MailboxError("Graph answered the message list without a value array")
        return [fetched(raw) for raw in values]

    def move(self, item_ids: Sequence[str]) -> Moved:
        moved = Moved()
        step = self.moves_per_batch
        for start in range(0, len(item_ids), step):
            self._move_batch(list(item_ids[start : start + step]), moved)
        return moved

    def _move_batch(self, item_ids: list[str], moved: Moved) -> None:
        pending = dict(enumerate(item_ids))
        for attempt in range(1, MAX_TRIES + 1):
            body = {
                "requests": [
                    {
                        "id": str(key),
                        "method": "POST",
                        "url": f"{self._user}/messages/{item_id}/move",
                        "headers": {"Content-Type": "application/json", "Prefer": PREFER},
                        "body": {"destinationId": self.archive},
                    }
                    for key, item_id in pending.items()
                ]
            }
            answers = self._call("POST", "/$batch", json=body).json().get("responses", [])
            wait = 0.0
            for answer in answers:
                key = int(answer.get("id", -1))
                if key not in pending:
                    continue
                status = int(answer.get("status", 500))
                payload = answer.get("body") or {}
                if status in (200, 201):
                    moved.links[pending.pop(key)] = str(payload.get("webLink") or "")
                elif status == 429 or status >= 500:
                    headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
                    try:
                        wait = max(wait, float(headers.get("retry-after", 0)))
                    except ValueError:
                        wait = max(wait, 2.0**attempt)
                else:
                    error = payload.get("error", {}) if isinstance(payload, dict) else {}
                    moved.failed[pending.pop(key)] = (
                        f"Graph {status}: {error.get('code', '')}: {error.get('message', '')}"
                    )
            if not pending:
                return
            if attempt < MAX_TRIES:
                self.graph.sleep(min(wait or 2.0**attempt, MAX_WAIT_SECONDS))
        for item_id in pending.values():
            moved.failed[item_id] = "Graph kept throttling the move"

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.graph.call(method, f"{self.graph_url}{path}", **kwargs)
        except GraphRefused as exc:
            raise MailboxError(
                f"Graph {exc.status} on {method} {path.split('?')[0]}: {exc.text}"
            ) from None
        except GraphError as exc:
            raise MailboxError(str(exc)) from None
