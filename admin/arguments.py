"""Argument types for every command: each value is checked as it is parsed, so bad input
is one line naming the option and exit 2, before anything is read or written."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domain.queue.limits import EntryFieldError, check_number, help_for

# Whole-number options without a documented limit of their own stay in a 32-bit integer.
INT32_MAX = 2**31 - 1


def whole(name: str, lowest: int, highest: int = INT32_MAX) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{name} must be at least {lowest}, got {value}")
        if value > highest:
            raise argparse.ArgumentTypeError(f"{name}: {value} is over the maximum of {highest}")
        return value

    return parse


def entry_number(field: str) -> Callable[[str], int]:
    """A number field of a job-queue entry, checked by the entry's own limits."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        try:
            return check_number(field, value)
        except EntryFieldError as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None

    return parse


def entry_number_help(field: str, extra: str = "") -> str:
    return f"{help_for(field)}{'; ' + extra if extra else ''}"


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A parser that raises ValueError, as an argparse type (its message is the error)."""

    def wrapper(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return wrapper


def readable_file(text: str) -> Path:
    """A path to a file this process can read (not a directory, not missing)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no file {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} cannot be read (permissions)")
    return path
