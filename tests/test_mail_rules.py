"""Outbound email rules: scenario routing, sender precedence, addresses, size, view policies."""

from __future__ import annotations

import pytest

from domain.mail.kinds import ViewPolicy
from domain.mail.rules import (
    MAX_ATTACHMENTS_BYTES,
    MailRuleError,
    NoDefaultAccountError,
    RelatedRecord,
    account_for_scenario,
    can_view,
    check_attachment_sizes,
    effective_view_policy,
    parse_address,
    parse_addresses,
    sender_address,
)


def test_an_assigned_scenario_uses_its_account_others_the_default() -> None:
    assignments = {"Sales Invoice": 2}
    assert account_for_scenario("Sales Invoice", assignments, default_account=1) == 2
    assert account_for_scenario("Purchase Order", assignments, default_account=1) == 1


def test_without_a_default_account_an_unassigned_scenario_is_an_error() -> None:
    with pytest.raises(NoDefaultAccountError, match="set a default email account"):
        account_for_scenario("Notification", {}, default_account=None)


def test_sender_precedence_approval_user_then_send_as_then_account_user() -> None:
    assert (
        sender_address("smtp@cronus.com", "sales@cronus.com", "ann@cronus.com") == "ann@cronus.com"
    )
    assert sender_address("smtp@cronus.com", "sales@cronus.com", None) == "sales@cronus.com"
    assert sender_address("smtp@cronus.com", "", "  ") == "smtp@cronus.com"
    with pytest.raises(MailRuleError):
        sender_address("", None, None)


@pytest.mark.parametrize(
    ("text", "address"),
    [("ann@cronus.com", "ann@cronus.com"), ("Ann Smith <ann@cronus.com>", "ann@cronus.com")],
)
def test_addresses_are_parsed(text: str, address: str) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "text", ["ann", "ann@", "@cronus.com", "ann@cronus", "a b@cronus.com", "ann@@cronus.com", "<>"]
)
def test_bad_addresses_are_refused_with_the_address_named(text: str) -> None:
    with pytest.raises(MailRuleError, match="not an email address"):
        parse_address(text)


def test_address_lists_accept_semicolons_and_commas() -> None:
    assert parse_addresses("a@x.com; b@y.org, c@z.net") == ["a@x.com", "b@y.org", "c@z.net"]


def test_attachments_over_100_mb_are_refused_clearly() -> None:
    assert (
        check_attachment_sizes([("a.pdf", 60 * 2**20), ("b.pdf", 40 * 2**20)])
        == MAX_ATTACHMENTS_BYTES
    )
    with pytest.raises(MailRuleError, match=r"101\.0 MB, over the 100 MB limit.*'big\.zip'"):
        check_attachment_sizes([("big.zip", 101 * 2**20)])


def test_effective_policy_user_then_all_users_then_default() -> None:
    policies = {"ann": ViewPolicy.OWN, "": ViewPolicy.ALL}
    assert effective_view_policy("ann", policies) == ViewPolicy.OWN
    assert effective_view_policy("bob", policies) == ViewPolicy.ALL
    assert effective_view_policy("bob", {}) == ViewPolicy.ALL_RELATED


INVOICE = RelatedRecord("Sales Invoice Header", "103001")
CUSTOMER = RelatedRecord("Customer", "10000")


@pytest.mark.parametrize(
    ("policy", "access", "visible"),
    [
        (ViewPolicy.OWN, {INVOICE, CUSTOMER}, False),
        (ViewPolicy.ALL, set(), True),
        (ViewPolicy.ALL_RELATED, {INVOICE, CUSTOMER}, True),
        (ViewPolicy.ALL_RELATED, {INVOICE}, False),
        (ViewPolicy.ANY_RELATED, {INVOICE}, True),
        (ViewPolicy.ANY_RELATED, {CUSTOMER}, True),
        (ViewPolicy.ANY_RELATED, set(), False),
    ],
)
def test_view_policies_filter_other_users_emails(
    policy: ViewPolicy, access: set[RelatedRecord], visible: bool
) -> None:
    # user A sent a posted sales invoice to a customer; can user B see it?
    assert can_view(policy, "B", "A", [INVOICE, CUSTOMER], access.__contains__) is visible


@pytest.mark.parametrize("policy", list(ViewPolicy))
def test_a_sender_always_sees_their_own_emails(policy: ViewPolicy) -> None:
    assert can_view(policy, "A", "A", [INVOICE], lambda _r: False)


def test_related_policies_show_nothing_without_related_records() -> None:
    assert not can_view(ViewPolicy.ANY_RELATED, "B", "A", [], lambda _r: True)
    assert not can_view(ViewPolicy.ALL_RELATED, "B", "A", [], lambda _r: True)
