"""The SMTP connector: smtplib with STARTTLS or implicit TLS, anonymous, basic or
XOAUTH2 authentication. Telemetry events say whether connecting and authenticating
worked; they never carry the password or the token."""

from __future__ import annotations

import copy
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Protocol

from domain.mail.kinds import SecureConnection, SmtpAuthentication
from domain.mail.rules import ascii_address
from jobs.mail.errors import Delivery, PermanentSendError, TransientSendError
from jobs.microsoft.identity import SignInError
from runtime.logs import get_logger
from runtime.secrets import Secret

log = get_logger("mail.smtp")
TIMEOUT_SECONDS = 60
REUSE_SECONDS = 30  # servers close idle sessions; older ones are not trusted


@dataclass(frozen=True)
class SmtpTarget:
    account: str
    server: str
    port: int
    secure_connection: SecureConnection
    authentication: SmtpAuthentication
    user_name: str = ""
    password: Secret | None = None
    tokens: TokenSource | None = None  # OAuth 2.0 access tokens (MSAL client credentials)
    ssl_context: ssl.SSLContext | None = None


class TokenSource(Protocol):
    def token(self, refresh: bool = False) -> Secret: ...


def xoauth2(user: str, token: Secret) -> str:
    """The SASL XOAUTH2 initial response before base64 (smtplib encodes it), in
    Microsoft's and Google's documented format."""
    return f"user={user}\x01auth=Bearer {token.reveal()}\x01\x01"


def _classify(exc: Exception) -> TransientSendError | PermanentSendError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _ in exc.recipients.values()}
        reason = "; ".join(
            f"{r}: {c} {m.decode(errors='replace')}" for r, (c, m) in exc.recipients.items()
        )
        if all(400 <= code < 500 for code in codes):
            return TransientSendError(f"recipients refused for now: {reason}")
        return PermanentSendError(f"recipients refused: {reason}")
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        message = f"SMTP {exc.smtp_code}: {text}"
        if 400 <= exc.smtp_code < 500:
            return TransientSendError(message)
        return PermanentSendError(message)
    # Dropped or timed out mid-send: the server may have taken the message before its
    # answer was lost, so the retry says it may deliver twice.
    return TransientSendError(f"{type(exc).__name__}: {exc}", uncertain=True)


class SmtpConnector:
    """One SMTP session per account, reused for the messages of one dispatcher run."""

    def __init__(self, target: SmtpTarget) -> None:
        self.target = target
        self._client: smtplib.SMTP | None = None
        self._last_used = 0.0

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        context = t.ssl_context or ssl.create_default_context()
        try:
            if t.secure_connection == SecureConnection.SSL:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    t.server, t.port, timeout=TIMEOUT_SECONDS, context=context
                )
            else:
                client = smtplib.SMTP(t.server, t.port, timeout=TIMEOUT_SECONDS)
            client.ehlo()
            if t.secure_connection == SecureConnection.STARTTLS:
                client.starttls(context=context)
                client.ehlo()
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(
                "smtp.connection_failed",
                account=t.account,
                server=t.server,
                port=t.port,
                error=f"{type(exc).__name__}: {exc}",
            )
            raise TransientSendError(f"cannot connect to {t.server}:{t.port}: {exc}") from None
        log.info("smtp.connection_succeeded", account=t.account, server=t.server, port=t.port)
        return client

    def _authenticate(self, client: smtplib.SMTP) -> None:
        t = self.target
        try:
            if t.authentication == SmtpAuthentication.BASIC:
                assert t.password is not None
                self._login(client, t.user_name, t.password)
            elif t.authentication == SmtpAuthentication.OAUTH2:
                self._oauth2(client)
            else:
                return
        except smtplib.SMTPAuthenticationError as exc:
            log.warning(
                "smtp.authentication_failed",
                account=t.account,
                user=t.user_name,
                code=exc.smtp_code,
            )
            raise PermanentSendError(
                f"SMTP authentication failed for {t.user_name!r} ({exc.smtp_code})"
            ) from None
        log.info("smtp.authentication_succeeded", account=t.account, user=t.user_name)

    def _oauth2(self, client: smtplib.SMTP) -> None:
        """XOAUTH2 with a cached token; a refused token (expired, revoked) is replaced
        once by a fresh one before the refusal counts."""
        t = self.target
        assert t.tokens is not None
        for refresh in (False, True):
            try:
                token = t.tokens.token(refresh=refresh)
            except SignInError as exc:
                raise PermanentSendError(f"{t.account}: {exc}") from None
            try:
                client.auth(
                    "XOAUTH2",
                    lambda _challenge=None, token=token: xoauth2(t.user_name, token),
                    initial_response_ok=True,
                )
                return
            except smtplib.SMTPAuthenticationError:
                if refresh:
                    raise

    @staticmethod
    def _login(client: smtplib.SMTP, user: str, password: Secret) -> None:
        """One attempt with one mechanism (PLAIN, else LOGIN), so a refused password is
        one clear failure rather than a walk through every mechanism the server offers."""
        offered = client.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
        if mechanism is None:
            raise PermanentSendError(f"the server offers no password login (offers: {offered})")
        client.user, client.password = user, password.reveal()
        try:
            client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        finally:
            client.password = ""

    def send(self, mime: EmailMessage, sender: str, recipients: list[str]) -> Delivery:
        """Send over the open session when there is a fresh one, else a new session.
        A session is dropped after any error, so the next send starts clean. Recipients
        the server refused (some or all) come back with its reply to each."""
        if self._client is None or time.monotonic() - self._last_used > REUSE_SECONDS:
            self.close()
            client = self._connect()
            try:
                self._authenticate(client)
            except BaseException:
                _quit(client)
                raise
            self._client = client
        unsendable: dict[str, str] = {}
        to_addrs = {r: r for r in recipients}  # as the server gets it -> as the caller has it
        if not self._client.has_extn("smtputf8"):
            mime, sender, to_addrs, unsendable = _without_smtputf8(mime, sender, recipients)
        refused: dict[str, tuple[int, bytes]] = {}
        if to_addrs:
            try:
                refused = self._client.send_message(mime, from_addr=sender, to_addrs=list(to_addrs))
            except smtplib.SMTPRecipientsRefused as exc:  # every one refused; nothing sent
                refused = exc.recipients
            except (TimeoutError, smtplib.SMTPException, OSError) as exc:
                self.close()
                raise _classify(exc) from None
        self._last_used = time.monotonic()
        replies = {
            to_addrs.get(a, a): f"{code} {reply.decode(errors='replace')}"
            for a, (code, reply) in refused.items()
        }
        return Delivery(unsendable | replies)

    def close(self) -> None:
        if self._client is not None:
            _quit(self._client)
            self._client = None


NEEDS_SMTPUTF8 = "553 5.6.7 the local part is not ASCII and the server does not offer SMTPUTF8"


def _without_smtputf8(
    mime: EmailMessage, sender: str, recipients: list[str]
) -> tuple[EmailMessage, str, dict[str, str], dict[str, str]]:
    """For a server without SMTPUTF8: domains in IDNA 2008 ASCII (punycode) in the
    envelope and the address headers; a recipient whose local part is not ASCII cannot
    be reached this way and is refused at once (returned with why), a sender so is a
    permanent error. Returns (message, sender, server address -> recipient, refused)."""
    ascii_sender = ascii_address(sender)
    if ascii_sender is None:
        raise PermanentSendError(
            f"the sender {sender!r} has a non-ASCII local part and the server does not "
            "offer SMTPUTF8"
        )
    to_addrs: dict[str, str] = {}
    refused: dict[str, str] = {}
    for recipient in recipients:
        converted = ascii_address(recipient)
        if converted is None:
            refused[recipient] = NEEDS_SMTPUTF8
        else:
            to_addrs[converted] = recipient
    if all(a.isascii() for a in [sender, *recipients]):
        return mime, ascii_sender, to_addrs, refused
    mime = copy.deepcopy(mime)
    for name in ("From", "To", "Cc"):
        header = mime[name]
        if header is None:
            continue
        addresses = []
        for address in header.addresses:
            converted = ascii_address(address.addr_spec)
            addresses.append(
                Address(address.display_name, addr_spec=converted) if converted else address
            )
        del mime[name]
        mime[name] = tuple(addresses)
    return mime, ascii_sender, to_addrs, refused


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
