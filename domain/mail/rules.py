"""Pure rules of outbound email: which account sends, from which address, who may see
a message, what may be attached, and what counts as an address."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import parseaddr

import idna

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
    """One address, 'name@example.com' or 'Name <name@example.com>', as 'name@example.com'.
    An internationalized one (a Unicode domain, or local part: RFC 6531) is an address
    too; the domain must be valid IDNA 2008, and the local part is checked as its ASCII
    stand-in would be."""
    raw = text.strip()
    if "<" in raw:  # 'Display Name <addr>': the address is what counts
        raw = raw.partition("<")[2].rstrip(">").strip()
    local, at, domain = raw.rpartition("@")
    refused = MailRuleError(f"not an email address: {text.strip()!r}")
    if not at or not local or " " in raw or len(raw) > 254:
        raise refused
    if not local.isascii() and any(c in '()<>[]:;@\\,"' or c.isspace() for c in local):
        raise refused
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        address = Address(addr_spec=f"{local if local.isascii() else 'u'}@{ascii_domain}")
    except (HeaderParseError, ValueError, IndexError, idna.IDNAError):
        raise refused from None
    if not address.username or "." not in address.domain or address.domain.startswith("."):
        raise refused
    return f"{local}@{domain}" if not local.isascii() else f"{address.username}@{domain}"


def parse_addresses(values: str | Iterable[str]) -> list[str]:
    """An RFC 5322 address list ('a@x.com, "Müller, Jürgen" <j@y.com>', with ';' allowed
    between addresses as Business Central writes them) or a list of such; every one
    must be an address. Display names are kept: 'Name <addr>' stays as it came."""
    texts = [values] if isinstance(values, str) else list(values)
    found: list[str] = []
    for text in texts:
        check_header_text("address list", text, 100_000)
        for chunk in _split_list(text):
            name, addr = parseaddr(chunk)
            if not addr or addr not in chunk:  # nothing, or stray words glued together
                raise MailRuleError(f"not an email address: {chunk.strip()!r}")
            spec = parse_address(addr)
            found.append(str(Address(display_name=name, addr_spec=spec)) if name else spec)
    return found


def recipient_address(recipient: str) -> str:
    """The address of a recipient as stored ('Name <addr>' or 'addr'): what the envelope
    carries."""
    return parseaddr(recipient)[1] or recipient


def ascii_address(address: str) -> str | None:
    """The address as a server without SMTPUTF8 takes it: the domain in IDNA 2008 ASCII
    (punycode); None when the local part is not ASCII (only SMTPUTF8 can carry it)."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    if domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return None


def _split_list(text: str) -> list[str]:
    """The addresses of a list: split at ',' or ';' outside quotes, comments and angle
    brackets; empty pieces dropped."""
    pieces, current, quoted, depth = [], "", False, 0
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char in "<(":
            depth += 1
        elif not quoted and char in ">)" and depth:
            depth -= 1
        elif not quoted and not depth and char in ",;":
            pieces.append(current)
            current = ""
            continue
        current += char
    pieces.append(current)
    return [p for p in pieces if p.strip()]


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
