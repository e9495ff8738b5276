"""The shared mailbox through Microsoft Graph (the new experience), over httpx.

Reads `/users/{mailbox}/mailFolders/inbox/messages` with `$select`, `$top` and
`$orderby` (oldest first), page after page by `@odata.nextLink` as "List messages"
asks (never a `$skip` of our own), so Junk and every other folder stay unread. Moves go
to the well-known `archive` folder twenty at a time in JSON `$batch` requests. Ids are
requested as immutable (`Prefer: IdType="ImmutableId"`), so an item keeps its id and
its link when it moves. Throttling follows "Throttling and batching": a request
throttled inside a batch answers 429 with its own Retry-After (and one that depends on
it 424), so exactly those are sent again after the wait; the batch itself, like every
request, goes through the retry policy of `jobs.microsoft`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx

from domain.interactions.matching import BadMessage, message
from jobs.email_logging.mailbox import Fetched, MailboxError, Moved
from jobs.microsoft.client import MicrosoftClient, MicrosoftError, Refused, TokenSource
from jobs.microsoft.retry import RETRY_STATUSES, Retryable, RetryPolicy, retry_after
from runtime.logs import get_logger

log = get_logger("email_logging.graph")
SELECT = (
    "id,internetMessageId,subject,receivedDateTime,from,sender,toRecipients,"
    "ccRecipients,bccRecipients,hasAttachments,webLink"
)
BATCH_LIMIT = 20  # requests per JSON batch, as Graph allows
PAGE_LIMIT = 1000  # Graph's largest $top for messages
POLICY = RetryPolicy(max_tries=5, max_wait=120.0)
FAILED_DEPENDENCY = 424  # a batched request whose dependency failed: sent again with it
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


class _BatchThrottled(Retryable):
    """Some requests of a batch were throttled; they are sent again after the wait."""


class GraphSharedMailbox:
    def __init__(
        self,
        mailbox: str,
        tokens: TokenSource,
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
        self.graph = MicrosoftClient(
            "Graph",
            tokens,
            verify=verify,
            headers={"Prefer": PREFER},
            policy=POLICY,
            sleep=sleep,
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
        except MicrosoftError as exc:
            raise MailboxError(str(exc)) from None
        checked = ["signed in (client credentials)"]
        for folder in ("inbox", self.archive):
            data = self._call("GET", f"{self.graph_url}{self._user}/mailFolders/{folder}").json()
            checked.append(
                f"folder {data.get('displayName', folder)}: {data.get('totalItemCount', 0)} items"
            )
        return checked

    def pages(self, size: int) -> Iterator[list[Fetched]]:
        params: dict[str, str] | None = {
            "$select": SELECT,
            "$top": str(min(size, PAGE_LIMIT)),
            "$orderby": "receivedDateTime asc",
        }
        url: str | None = f"{self.graph_url}{self._user}/mailFolders/inbox/messages"
        while url is not None:
            data = self._call("GET", url, params=params).json()
            values = data.get("value") if isinstance(data, dict) else None
            if not isinstance(values, list):
                raise MailboxError("Graph answered the message list without a value array")
            yield [fetched(raw) for raw in values]
            next_link = data.get("@odata.nextLink")
            url, params = (next_link, None) if isinstance(next_link, str) else (None, None)

    def move(self, item_ids: Sequence[str]) -> Moved:
        moved = Moved()
        step = self.moves_per_batch
        for start in range(0, len(item_ids), step):
            self._move_batch(list(item_ids[start : start + step]), moved)
        return moved

    def _move_batch(self, item_ids: list[str], moved: Moved) -> None:
        pending = dict(enumerate(item_ids))
        try:
            POLICY.retrying(sleep=self.graph.sleep, on_retry=self.graph.retried)(
                self._send_moves, pending, moved
            )
        except _BatchThrottled:
            for item_id in pending.values():
                moved.failed[item_id] = "Graph kept throttling the move"

    def _send_moves(self, pending: dict[int, str], moved: Moved) -> None:
        """One $batch of the pending moves; the answered ones leave `pending`. Raises
        `_BatchThrottled` with the longest Retry-After when some were throttled."""
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
        answers = self._call("POST", f"{self.graph_url}/$batch", json=body).json()
        waits: list[float] = []
        throttled = 0
        for answer in answers.get("responses", []) if isinstance(answers, dict) else []:
            try:
                key = int(answer.get("id", -1))
                status = int(answer.get("status", 500))
            except (TypeError, ValueError):
                continue
            if key not in pending:
                continue
            payload = answer.get("body") or {}
            if status in (200, 201):
                moved.links[pending.pop(key)] = str(payload.get("webLink") or "")
            elif status in RETRY_STATUSES or status == FAILED_DEPENDENCY:
                throttled += 1
                headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
                wait = retry_after(headers.get("retry-after"))
                if wait is not None:
                    waits.append(wait)
            else:
                error = payload.get("error", {}) if isinstance(payload, dict) else {}
                moved.failed[pending.pop(key)] = (
                    f"Graph {status}: {error.get('code', '')}: {error.get('message', '')}"
                )
        if pending:
            raise _BatchThrottled(
                f"{throttled} of the batch's moves throttled", max(waits) if waits else None
            )

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.graph.request(method, url, **kwargs)
        except Refused as exc:
            path = url.removeprefix(self.graph_url).split("?")[0]
            raise MailboxError(f"Graph {exc.status} on {method} {path}: {exc.text}") from None
        except MicrosoftError as exc:
            raise MailboxError(str(exc)) from None
