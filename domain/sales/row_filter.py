"""A mapping's Dataverse filter applied to rows read through change tracking, which
takes no `$filter`: comparisons joined by `and`, the form the shipped mappings use."""

from __future__ import annotations

import re
from typing import Any

_TERM = re.compile(r"(\w+)\s+(eq|ne)\s+('(?:[^']|'')*'|true|false|null|-?\d+(?:\.\d+)?)", re.I)


def _value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return float(text)


def terms(expression: str) -> list[tuple[str, bool, Any]]:
    """(attribute, wants equal, value) per comparison; ValueError for anything else."""
    parts = [p.strip() for p in re.split(r"\s+and\s+", expression.strip(), flags=re.I) if p.strip()]
    out = []
    for part in parts:
        match = _TERM.fullmatch(part.strip("() "))
        if match is None:
            raise ValueError(f"the filter {expression!r} is not 'attribute eq|ne value and ...'")
        out.append((match.group(1), match.group(2).lower() == "eq", _value(match.group(3))))
    return out


def _same(actual: Any, wanted: Any) -> bool:
    if (
        isinstance(wanted, float)
        and isinstance(actual, (int, float))
        and not isinstance(actual, bool)
    ):
        return float(actual) == wanted
    if isinstance(wanted, str) and isinstance(actual, str):
        return actual.lower() == wanted.lower()
    return (bool(actual == wanted) and type(actual) is type(wanted)) or (
        actual is None and wanted is None
    )


def matches(expression: str, row: dict[str, Any]) -> bool:
    return all(_same(row.get(name), value) == equal for name, equal, value in terms(expression))
