"""Pure rules of outbound email: which account sends, from which address, who may see
a message, what may be attached, and what counts as an address."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address

from domain.mail.kinds import ViewPolicy

MAX_ATTACHMENTS_BYTES = 100 * 1024 * 1024  # 100 MB per email, as Business Central allows
# The lengths the outbox columns hold (domain/mail/models.py); a subject also stays
# within RFC 5322's 998 characters of a line.
MAX_SUBJECT = 998
MAX_SCENARIO = 100
MAX_CREATED_BY = 50
MAX_ATTACHMENT_NAME = 250
MAX_CONTENT_TYPE = 100
# What str.splitlines() breaks on: any of them in a header ends the header there.
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*")


class MailRuleError(ValueError):
    """Input an email cannot be built from; the message says what to fix."""


class NoDefaultAccountError(MailRuleError):
    pass


def account_for_scenario(
    scenario: str, assignments: Mapping[str, int], default_account: int | None
) -> int:
    """The account assigned to the scenario, else the default account (which must exist)."""
    if scenario in assignments:
        return assignments[scenario]
    if default_account is None:
        raise NoDefaultAccountError(
            f"no email account for scenario {scenario!r}: set a default email account"
        )
    return default_account


def sender_address(
    account_user: str, send_as: str | None = None, approval_user_email: str | None = None
) -> str:
    """Business Central's precedence: the approval user's email (workflow messages),
    then the Send As address of the substitute account, then the account's user."""
    for candidate in (approval_user_email, send_as, account_user):
        if candidate and candidate.strip():
            return candidate.strip()
    raise MailRuleError("the email account has no user address to send from")


def parse_address(text: str) -> str:
    """One address, 'name@example.com' or 'Name <name@example.com>', as 'name@example.com'."""
    raw = text.strip()
    try:
        if "<" in raw:  # 'Display Name <addr>': the address is what counts
            raw = raw.partition("<")[2].rstrip(">").strip()
        address = Address(addr_spec=raw)
    except (HeaderParseError, ValueError, IndexError):
        raise MailRuleError(f"not an email address: {text.strip()!r}") from None
    domain = address.domain
    if not address.username or "." not in domain or domain.startswith(".") or " " in raw:
        raise MailRuleError(f"not an email address: {text.strip()!r}")
    return address.addr_spec


def parse_addresses(values: str | Iterable[str]) -> list[str]:
    """'a@x.com; b@y.com' or a list; every one must be an address."""
    if isinstance(values, str):
        values = values.replace(",", ";").split(";")
    return [parse_address(v) for v in values if v.strip()]


def check_header_text(field: str, value: str, max_length: int) -> str:
    """A value that goes into a header (or a column of that length): one line, no control
    characters, at most `max_length` characters. Returns it; refuses it naming `field`."""
    if len(value) > max_length:
        raise MailRuleError(f"the {field} is {len(value)} characters; at most {max_length}")
    for char in value:
        if char in LINE_BREAKS or (unicodedata.category(char) == "Cc" and char != "\t"):
            raise MailRuleError(
                f"the {field} contains a line break or control character (U+{ord(char):04X}); "
                "it must be one line"
            )
    return value


def check_attachment(filename: str, content_type: str) -> None:
    """An attachment's name and MIME type as a header can carry them."""
    check_header_text("attachment name", filename, MAX_ATTACHMENT_NAME)
    if not filename.strip():
        raise MailRuleError("an attachment needs a name")
    check_header_text("attachment content type", content_type, MAX_CONTENT_TYPE)
    if not _CONTENT_TYPE.fullmatch(content_type):
        raise MailRuleError(
            f"the attachment content type {content_type!r} is not a MIME type (type/subtype)"
        )


def check_attachment_sizes(sizes: Sequence[tuple[str, int]]) -> int:
    """The total size; refuses an email whose attachments exceed 100 MB together."""
    total = sum(size for _, size in sizes)
    if total > MAX_ATTACHMENTS_BYTES:
        largest = max(sizes, key=lambda item: item[1])
        raise MailRuleError(
            f"attachments total {total / 1024 / 1024:.1f} MB, over the 100 MB limit of one "
            f"email (largest: {largest[0]!r}, {largest[1] / 1024 / 1024:.1f} MB)"
        )
    return total


def effective_view_policy(user: str, policies: Mapping[str, ViewPolicy]) -> ViewPolicy:
    """The user's own policy, else the one for all users (blank user), else the documented
    default: view if access to all related records."""
    return policies.get(user) or policies.get("") or ViewPolicy.ALL_RELATED


@dataclass(frozen=True)
class RelatedRecord:
    table: str
    record_id: str


def can_view(
    policy: ViewPolicy,
    viewer: str,
    sender: str,
    related: Sequence[RelatedRecord],
    has_access: Callable[[RelatedRecord], bool],
) -> bool:
    """Whether `viewer` may see a message `sender` sent, under `policy`."""
    if viewer == sender or policy == ViewPolicy.ALL:
        return True
    if policy == ViewPolicy.OWN or not related:
        return False
    if policy == ViewPolicy.ALL_RELATED:
        return all(has_access(record) for record in related)
    return any(has_access(record) for record in related)
