"""Pure transforms from a local record to the Dataverse payload of its mapping.

Transforms (see `domain.sales.defaults`) resolve lookups through a `Resolver` the caller
provides, so the rules stay free of I/O: a dependency that is not coupled yet skips
the record (`SkipRecord`), a value that is wrong fails it (`RecordError`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol


class SkipRecord(Exception):
    """The record cannot be synced yet (a dependency is not coupled); not an error."""


class RecordError(Exception):
    """The record is wrong for the mapping (a required value is blank, a dependency
    does not exist)."""


class Resolver(Protocol):
    def lookup(self, transform: str, value: Any, attribute: str) -> str:
        """`lookup:<table>:<set>` -> "/<set>(<id>)"; raises SkipRecord or RecordError."""

    def coupled(self, local_table: str, local_id: str, entity_set: str) -> str | None: ...

    def currency(self, code: str, attribute: str) -> str:
        """A currency code -> "/transactioncurrencies(<id>)"; blank is the local
        currency, which is the Dataverse organization's base currency."""


# How far back a watermark read starts: a row written just before the last read but
# committed after it carries an older stamp; rows read twice are recognised and skipped.
WATERMARK_OVERLAP = timedelta(seconds=60)


def since_filter(watermark: datetime | None) -> str:
    """The `$filter` clause of a read by modification time (blank: read everything)."""
    if watermark is None:
        return ""
    return f"modifiedon ge {odata_datetime(watermark - WATERMARK_OVERLAP)}"


def odata_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return odata_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def record_label(local_table: str) -> str:
    """'units_of_measure' -> 'unit of measure', 'customer_price_groups' -> 'customer
    price group', 'items' -> 'item', 'currencies' -> 'currency'."""
    words = local_table.split("_")
    head = 0 if "of" in words else len(words) - 1  # the noun that is plural
    noun = words[head]
    words[head] = noun[:-3] + "y" if noun.endswith("ies") else noun.removesuffix("s")
    return " ".join(words)


def build_payload(
    fields: list[Any], values: Mapping[str, Any], resolver: Resolver
) -> tuple[dict[str, Any], list[str]]:
    """The payload, and warnings worth a line on the run (a salesperson without a
    coupled Dataverse user: the record is owned by the integration user)."""
    payload: dict[str, Any] = {}
    warnings: list[str] = []
    for f in fields:
        if f.constant is not None:
            payload[f.dataverse_attribute] = json.loads(f.constant)
            continue
        value = values[f.local_field] if f.local_field else ""
        blank = value is None or value == ""
        if blank and f.validate:
            raise RecordError(f"{f.local_field} must not be blank")
        transform = f.transform or ""
        if transform.startswith("lookup:"):
            if not blank:
                payload[f.dataverse_attribute] = resolver.lookup(
                    transform, value, f.dataverse_attribute
                )
        elif transform == "owner":
            user = None if blank else resolver.coupled("salespersons", str(value), "systemusers")
            if user is not None:
                payload[f.dataverse_attribute] = f"/systemusers({user})"
            elif not blank:
                warnings.append(
                    f"salesperson {value!r} has no coupled Dataverse user; the record is "
                    "owned by the integration user"
                )
        elif transform == "currency":
            code = "" if blank else str(value)
            payload[f.dataverse_attribute] = resolver.currency(code, f.dataverse_attribute)
        elif transform == "state":
            payload[f.dataverse_attribute] = 1 if value else 0
        else:
            payload[f.dataverse_attribute] = to_json(value)
    return payload, warnings
