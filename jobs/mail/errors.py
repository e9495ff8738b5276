"""How a send failed decides what happens next: retried later, or failed for good."""

from __future__ import annotations


class SendError(Exception):
    pass


class TransientSendError(SendError):
    """The provider may accept it later (throttled, busy, connection dropped)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """The provider refused it for good (bad recipient, authentication refused)."""
