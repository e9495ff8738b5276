"""A real SMTP server for tests and benchmarks (aiosmtpd) with STARTTLS and AUTH, and a
switch to drop the connection in the middle of a message the way a failing server does."""

from __future__ import annotations

import base64
import binascii
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from sandbox.tls import self_signed_cert

USER, PASSWORD = "mailer@cronus.com", "app-password-123"
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own chatter


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    at: float = 0.0  # when the server accepted it (epoch seconds)


@dataclass
class Handler:
    accepted: list[Received] = field(default_factory=list)
    drop_next: int = 0  # messages to drop mid-DATA before accepting any
    # messages to take (queued for delivery) and then drop the connection before the 250:
    # the client cannot know the server has them
    lose_answer_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # XOAUTH2 (Exchange Online's SMTP AUTH with OAuth): (user, access token) -> valid?
    # None refuses every token.
    token_check: Callable[[str, str], bool] | None = None
    xoauth2_users: list[str] = field(default_factory=list)
    # Recipients the server refuses (address -> its reply, e.g. "550 5.1.1 User unknown"),
    # each for `times` RCPTs (None: always).
    refuse: dict[str, tuple[str, int | None]] = field(default_factory=dict)

    def refuse_recipient(self, address: str, reply: str, times: int | None = None) -> None:
        with self.lock:
            self.refuse[address.lower()] = (reply, times)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            refused = self.refuse.get(address.lower())
            if refused is not None:
                reply, times = refused
                if times is not None:
                    if times <= 1:
                        del self.refuse[address.lower()]
                    else:
                        self.refuse[address.lower()] = (reply, times - 1)
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        """SASL XOAUTH2: base64("user=" user ^A "auth=Bearer " token ^A ^A)."""
        if self.token_check is None:
            return AuthResult(success=False, handled=False)
        if len(args) > 1:
            initial = args[1]
        else:
            challenge = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(challenge, bytes):
                return AuthResult(success=False, handled=False)
            initial = challenge.decode()
        try:
            fields = dict(
                part.split("=", 1)
                for part in base64.b64decode(initial, validate=True).decode().split("\x01")
                if part
            )
        except (ValueError, binascii.Error):
            return AuthResult(success=False, handled=False, message="501 5.5.2 Bad XOAUTH2")
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        if self.token_check(user, token):
            self.xoauth2_users.append(user)
            return AuthResult(success=True, auth_data=user)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.drop_next > 0:
                self.drop_next -= 1
                server.transport.close()  # gone before the 250: the message is not accepted
                return "421 closing"
            self.accepted.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    time.time(),
                )
            )
            if self.lose_answer_next > 0:
                self.lose_answer_next -= 1
                server.transport.close()
                return "421 closing"
        return "250 OK: queued"


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login.decode() == USER
        and (data.password.decode() == PASSWORD)
    )
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    def __init__(self, folder: Path, *, smtputf8: bool = True) -> None:
        """`smtputf8=False`: a server that does not offer SMTPUTF8 (RFC 6531), so only
        ASCII addresses reach it."""
        cert, key = self_signed_cert(folder)
        self.ca_file = str(cert)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        self.client_tls = ssl.create_default_context(cafile=str(cert))
        self.handler = Handler()
        self.port = free_port()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticator,
            auth_require_tls=True,
            require_starttls=True,
            tls_context=server_tls,
            enable_SMTPUTF8=smtputf8,
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()
