"""A local sales record as people and files give it (text, or JSON values) checked
against its table: every field known, every value of its column's type and size, the
business key present. One check for every way data comes in (the `data import`
command, the HTTP API); a bad value raises FieldValueError naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Boolean, Date, Enum, Integer, Numeric, String, Table

from domain.base import Base
from domain.sales.models import LOCAL_MODELS, SalesInvoiceLine, SalesLine, SalesPrice, table

# The columns the application stamps itself: never taken from outside.
STAMPED = frozenset({"modified_at", "modified_by", "statistics_modified_at", "id"})
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off", ""}


class FieldValueError(ValueError):
    """A value that does not fit its field; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass(frozen=True)
class LocalTable:
    """A table data may be imported into, and the columns that identify a record."""

    name: str
    table: Table
    key: tuple[str, ...]

    @property
    def fields(self) -> list[str]:
        return [c.name for c in self.table.columns if c.name not in STAMPED]

    def key_of(self, record: Mapping[str, Any]) -> tuple[Any, ...]:
        """The record's business key, fields left out taking their defaults."""
        return tuple(record.get(k, self.default(k)) for k in self.key)

    def default(self, name: str) -> Any:
        """The value a field left out gets (its column's plain default, else None)."""
        default = self.table.c[name].default
        return getattr(default, "arg", None) if default is not None and default.is_scalar else None


def _business_key(t: Table) -> tuple[str, ...]:
    if t.name == table(SalesPrice).name:  # a surrogate id; the key is its unique constraint
        return ("sales_type", "sales_code", "item_no", "unit_of_measure_code",
                "minimum_quantity", "starting_date")  # fmt: skip
    return tuple(c.name for c in t.primary_key.columns)


_MODELS: dict[str, type[Base]] = {
    **LOCAL_MODELS,
    "sales_invoice_lines": SalesInvoiceLine,
    "sales_lines": SalesLine,
}
IMPORTABLE: dict[str, LocalTable] = {
    name: LocalTable(name, table(model), _business_key(table(model)))
    for name, model in _MODELS.items()
}


def local_table(name: str) -> LocalTable:
    try:
        return IMPORTABLE[name]
    except KeyError:
        raise FieldValueError(
            "table", f"no local table {name!r} (tables: {', '.join(sorted(IMPORTABLE))})"
        ) from None


def check_record(target: LocalTable, values: Mapping[str, Any]) -> dict[str, Any]:
    """The record's values as its columns store them; its key fields must be given."""
    unknown = sorted(set(values) - set(target.fields))
    if unknown:
        name = unknown[0]
        why = "is set by the system" if name in STAMPED else "no such field"
        raise FieldValueError(name, f"{why} (fields: {', '.join(target.fields)})")
    missing = [k for k in target.key if k not in values and not _nullable(target, k)]
    if missing:
        raise FieldValueError(missing[0], "missing; it identifies the record")
    checked = {name: check_value(target, name, raw) for name, raw in values.items()}
    for name in target.key:
        if target.table.c[name].primary_key and checked.get(name) == "":
            raise FieldValueError(name, "must not be empty; it identifies the record")
    return checked


def _nullable(target: LocalTable, name: str) -> bool:
    column = target.table.c[name]
    return bool(column.nullable) or column.default is not None


def check_value(target: LocalTable, name: str, raw: Any) -> Any:
    column = target.table.c[name]
    kind = column.type
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and column.nullable):
        if column.nullable:
            return None
        if isinstance(kind, String):
            return ""
        raise FieldValueError(name, "must have a value")
    if isinstance(kind, Boolean):
        return _flag(name, raw)
    if isinstance(kind, Integer):
        return _whole(name, raw)
    if isinstance(kind, Numeric):
        return _number(name, raw, kind.precision or 18, kind.scale or 0)
    if isinstance(kind, Date):
        return _date(name, raw)
    if isinstance(kind, Enum):  # before String: an Enum is stored as a string
        return _choice(name, raw, list(kind.enums))
    if isinstance(kind, String):
        return _text(name, raw, kind.length)
    raise FieldValueError(name, f"cannot be imported ({kind})")


def _flag(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in _TRUE | _FALSE:
        raise FieldValueError(name, f"{raw!r} is not yes or no")
    return text in _TRUE


def _whole(name: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise FieldValueError(name, f"{raw!r} is not a whole number")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise FieldValueError(name, f"{raw!r} is not a whole number") from None
    if not -(2**31) <= value < 2**31:
        raise FieldValueError(name, f"{value} is out of range")
    return value


def _number(name: str, raw: Any, precision: int, scale: int) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise FieldValueError(name, f"{raw!r} is not a number")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise FieldValueError(name, f"{raw!r} is not a number (use a point: 12.50)") from None
    if not value.is_finite() or abs(value) >= Decimal(10) ** (precision - scale):
        raise FieldValueError(name, f"{raw!r} is out of range")
    if value.as_tuple().exponent < -scale:  # type: ignore[operator]
        raise FieldValueError(name, f"{raw!r} has more than {scale} decimals")
    return value


def _choice(name: str, raw: Any, choices: list[str]) -> str:
    if not isinstance(raw, str) or raw not in choices:
        raise FieldValueError(name, f"{raw!r} is not one of {', '.join(choices)}")
    return raw


def _date(name: str, raw: Any) -> date:
    if isinstance(raw, date):
        return raw
    try:
        return date.fromisoformat(str(raw).strip())
    except ValueError:
        raise FieldValueError(name, f"{raw!r} is not a date (YYYY-MM-DD)") from None


def _text(name: str, raw: Any, length: int | None) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise FieldValueError(name, f"{raw!r} is not text")
    text = str(raw)
    if "\x00" in text:
        raise FieldValueError(name, "contains a NUL character")
    if length is not None and len(text) > length:
        raise FieldValueError(name, f"{len(text)} characters is over the maximum of {length}")
    return text
