"""Status values, spelled as Business Central shows them."""

from __future__ import annotations

from enum import StrEnum


class EntryStatus(StrEnum):
    READY = "Ready"
    IN_PROCESS = "In Process"
    ERROR = "Error"
    ON_HOLD = "On Hold"
    ON_HOLD_INACTIVITY = "On Hold with Inactivity Timeout"
    FINISHED = "Finished"


class LogStatus(StrEnum):
    IN_PROCESS = "In Process"
    SUCCESS = "Success"
    ERROR = "Error"
