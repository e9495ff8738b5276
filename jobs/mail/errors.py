"""How a send failed decides what happens next: retried later, or failed for good."""

from __future__ import annotations

from dataclasses import dataclass, field


class SendError(Exception):
    pass


class TransientSendError(SendError):
    """The provider may accept it later (throttled, busy, connection dropped)."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, uncertain: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.uncertain = uncertain  # the server may have the message already


class PermanentSendError(SendError):
    """The provider refused it for good (bad recipient, authentication refused)."""


@dataclass(frozen=True)
class Delivery:
    """What the server said of each recipient it refused (address -> its reply, such
    as "550 5.1.1 User unknown"); the others were accepted."""

    refused: dict[str, str] = field(default_factory=dict)

    def temporary(self) -> dict[str, str]:
        """Refused for now (4xx): worth sending to them again later."""
        return {a: why for a, why in self.refused.items() if why[:1] == "4"}

    def permanent(self) -> dict[str, str]:
        return {a: why for a, why in self.refused.items() if why[:1] != "4"}
