"""Webhook delivery: a notice POSTed as JSON, signed as the Standard Webhooks
specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
HMAC-SHA256 of id.timestamp.body>`), so receivers can verify it with any of its
libraries; retried with Dramatiq's backoff as a delayed message, so a receiver that is
down delays nobody and a worker restart loses nothing queued in Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from dramatiq import Message
from dramatiq.common import compute_backoff
from standardwebhooks import Webhook

from domain.clock import utcnow
from jobs.microsoft.http import http_client
from runtime.logs import get_logger
from runtime.settings import Settings

log = get_logger("notifications")

ACTOR_NAME = "deliver_webhook"
ATTEMPTS = 8  # about four minutes of retries, doubling from one second
FIRST_BACKOFF_MS, MAX_BACKOFF_MS = 1_000, 120_000
TIMEOUT_SECONDS = 10.0


class WebhookError(Exception):
    """The receiver did not take the notice (a transport error or a non-2xx answer)."""


def shown(url: str) -> str:
    """The URL as logs may show it: without its query (Power Automate's trigger URLs
    carry their signature there)."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def signed_headers(secret: str, msg_id: str, body: str) -> dict[str, str]:
    now = utcnow()
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def post(settings: Settings, url: str, msg_id: str, body: str) -> None:
    assert settings.webhook_secret is not None  # settings refuse URLs without one
    headers = signed_headers(settings.webhook_secret, msg_id, body)
    try:
        with http_client(verify=settings.verify, timeout=TIMEOUT_SECONDS) as client:
            answer = client.post(url, content=body.encode(), headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookError(f"{type(exc).__name__}: {exc}") from None
    if not answer.is_success:
        raise WebhookError(f"HTTP {answer.status_code} {answer.reason_phrase}".rstrip())


def backoff_ms(attempt: int) -> int:
    """Dramatiq's own exponential backoff with jitter, from one second."""
    return compute_backoff(attempt - 1, factor=FIRST_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS)[1]


def webhook_message(
    settings: Settings, url: str, msg_id: str, body: str, attempt: int = 1
) -> Message[None]:
    return Message(
        queue_name=settings.queue_name,
        actor_name=ACTOR_NAME,
        args=(url, msg_id, body, attempt),
        kwargs={},
        options={},
    )


def deliver(
    settings: Settings,
    enqueue: Callable[..., Any],
    url: str,
    msg_id: str,
    body: str,
    attempt: int,
) -> bool:
    """One attempt; a failed one is queued again after the backoff, the last one logged
    as undeliverable. True when the receiver took it."""
    try:
        post(settings, url, msg_id, body)
    except WebhookError as exc:
        if attempt >= ATTEMPTS:
            log.warning("notification.webhook_undeliverable", url=shown(url), webhook_id=msg_id,
                        attempts=attempt, error=str(exc))  # fmt: skip
            return False
        delay = backoff_ms(attempt)
        log.info("notification.webhook_retry", url=shown(url), webhook_id=msg_id,
                 attempt=attempt, retry_in_ms=delay, error=str(exc))  # fmt: skip
        enqueue(webhook_message(settings, url, msg_id, body, attempt + 1), delay=delay)
        return False
    log.info("notification.webhook_delivered", url=shown(url), webhook_id=msg_id, attempt=attempt)
    return True
