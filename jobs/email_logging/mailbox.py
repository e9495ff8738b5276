"""What the logger needs from a shared mailbox, whichever experience reads it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from domain.interactions.matching import MailMessage


class MailboxError(RuntimeError):
    """The mailbox could not be read or written at all (sign-in, access, service down):
    the run fails and its entry retries as its maximum attempts allow."""


@dataclass(frozen=True)
class Fetched:
    """One Inbox item: a checked message, or the reason it cannot be logged."""

    item_id: str
    message: MailMessage | None = None
    error: str | None = None


@dataclass
class Moved:
    links: dict[str, str] = field(default_factory=dict)  # item id -> link where it now is
    failed: dict[str, str] = field(default_factory=dict)  # item id -> reason it stays


class SharedMailbox(Protocol):
    def check(self) -> list[str]:
        """Signs in and opens the mailbox and its folders; what was checked, in words."""
        ...

    def pages(self, size: int) -> Iterator[list[Fetched]]:
        """The Inbox's items, oldest first, in pages of up to `size`; nothing else. The
        listing must not change while it is paged: moves wait until it is read."""
        ...

    def move(self, item_ids: Sequence[str]) -> Moved:
        """Moves the items to the storage (archive) folder."""
        ...

    def close(self) -> None: ...
