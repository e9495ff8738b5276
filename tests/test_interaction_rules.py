"""The matching rules: direction, case-insensitivity, one entry per pair, bad messages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.interactions.matching import (
    BadMessage,
    Directory,
    Interaction,
    interactions,
    message,
    new_pairs,
)
from domain.interactions.models import InformationFlow

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DIRECTORY = Directory.build(
    {"JO": "Jo@Cronus.example", "AM": "am@cronus.example", "XX": ""},
    {"CT1": "robin@fabrikam.example", "CT2": "KIM@adatum.example", "CT3": "kim@adatum.example"},
)


def msg(sender: str | None, to: list[str], cc: list[str] = (), bcc: list[str] = ()):  # type: ignore[assignment]
    return message(
        item_id="i",
        message_id="<m@x>",
        sender=sender,
        to=to,
        cc=cc,
        bcc=bcc,
        subject="s",
        received_at=NOW,
    )


def test_a_salesperson_writing_to_a_contact_is_outbound_case_insensitively() -> None:
    found = interactions(msg("jo@CRONUS.example", ["Robin@Fabrikam.example"]), DIRECTORY)
    assert found == [Interaction("CT1", "JO", InformationFlow.OUTBOUND)]


def test_a_contact_writing_to_salespeople_is_inbound_for_each_of_them() -> None:
    found = interactions(
        msg("robin@fabrikam.example", ["jo@cronus.example"], cc=["am@cronus.example"]), DIRECTORY
    )
    assert found == [
        Interaction("CT1", "JO", InformationFlow.INBOUND),
        Interaction("CT1", "AM", InformationFlow.INBOUND),
    ]


def test_one_entry_per_contact_and_salesperson_pair() -> None:
    found = interactions(
        msg(
            "jo@cronus.example",
            ["robin@fabrikam.example"],
            cc=["ROBIN@fabrikam.example"],
            bcc=["kim@adatum.example"],
        ),
        DIRECTORY,
    )
    assert sorted((i.contact_no, i.salesperson_code) for i in found) == [
        ("CT1", "JO"),
        ("CT2", "JO"),
        ("CT3", "JO"),  # two contacts share an address: both get the interaction
    ]


@pytest.mark.parametrize(
    ("sender", "to"),
    [
        ("jo@cronus.example", ["am@cronus.example"]),  # internal
        ("robin@fabrikam.example", ["kim@adatum.example"]),  # between contacts
        ("stranger@example.org", ["jo@cronus.example"]),  # unknown sender
        ("jo@cronus.example", ["stranger@example.org"]),  # unknown recipient
    ],
)
def test_no_salesperson_and_contact_pair_means_no_entry(sender: str, to: list[str]) -> None:
    assert interactions(msg(sender, to), DIRECTORY) == []


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"sender": None}, "the sender has no address"),
        ({"sender": "not an address"}, "is not an email address"),
        ({"to": ["jo@cronus.example", "broken@"]}, "To recipient address 'broken@'"),
        ({"message_id": ""}, "no internet message id"),
        ({"received_at": None}, "no received date"),
    ],
)
def test_a_bad_message_says_why(kwargs: dict[str, object], reason: str) -> None:
    values: dict[str, object] = {
        "item_id": "i",
        "message_id": "<m@x>",
        "sender": "jo@cronus.example",
        "to": ["robin@fabrikam.example"],
        "subject": "s",
        "received_at": NOW,
    }
    with pytest.raises(BadMessage, match=reason):
        message(**{**values, **kwargs})  # type: ignore[arg-type]


def test_a_message_read_again_adds_nothing() -> None:
    pair = Interaction("CT1", "JO", InformationFlow.OUTBOUND)
    other = Interaction("CT2", "JO", InformationFlow.OUTBOUND)
    candidates = [("<a@x>", pair), ("<a@x>", other), ("<a@x>", pair)]
    assert new_pairs(candidates, [("<a@x>", "CT1", "JO")]) == [("<a@x>", other)]
