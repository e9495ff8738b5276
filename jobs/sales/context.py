"""What a mapping's behaviour may use while a chunk of records is written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from jobs.dataverse.client import DataverseClient
from jobs.sales.lookups import Lookups


@dataclass
class SyncContext:
    db: Engine
    client: DataverseClient
    integration_user_id: str
    now: Callable[[], datetime]
    lookups: Lookups
    cache: dict[str, Any] = field(default_factory=dict)

    def coupled(self, local_table: str, local_id: str, entity_set: str) -> str | None:
        return self.lookups.coupled(local_table, local_id, entity_set)

    def lookup(self, transform: str, value: Any, attribute: str) -> str:
        return self.lookups.lookup(transform, value, attribute)

    def currency(self, code: str, attribute: str) -> str:
        return self.lookups.currency(code, attribute)
