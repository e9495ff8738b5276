"""What one record's sync came to, and a run's counts of them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum


class Outcome(StrEnum):
    """A record's outcome; the value names the run counter it adds to."""

    INSERTED = "inserted"
    MODIFIED = "modified"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    FAILED_AGAIN = "failed_again"  # retried unchanged, and failed as before: no news
    CONFLICT = "conflicts"


@dataclass
class Counters:
    inserted: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    failed_again: int = 0
    conflicts: int = 0

    def count(self, outcome: Outcome, n: int = 1) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + n)

    def add(self, other: Counters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def activity(self) -> bool:
        """Whether the run did or learned something. Records that only failed again as
        they did before are no activity: the entry may sleep, and they are retried when
        it wakes (its inactivity timeout, a change to them or what they depend on)."""
        return bool(self.inserted or self.modified or self.deleted or self.failed or self.conflicts)

    @property
    def records(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
