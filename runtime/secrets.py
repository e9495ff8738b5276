"""Secrets at rest: Fernet (AES-128-CBC + HMAC) from the cryptography package.

The key comes from JOBQUEUE_SECRET_KEY, else from the file JOBQUEUE_SECRET_KEY_FILE
(default `jobqueue.key`), created with mode 0600 on first use so the embedded default
works on a fresh machine. A `Secret` never shows its value in a repr, a log line or an
error message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

DEFAULT_KEY_FILE = "jobqueue.key"


class SecretError(ValueError):
    """A secret cannot be stored or read; the message never contains the secret."""


class Secret:
    """A value that must not be shown: str() and repr() give '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretBox:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SecretError(
                "JOBQUEUE_SECRET_KEY must be 32 url-safe base64-encoded bytes "
                "(make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecretBox:
        env = os.environ if env is None else env
        if env.get("JOBQUEUE_SECRET_KEY"):
            return cls(env["JOBQUEUE_SECRET_KEY"].encode())
        path = Path(env.get("JOBQUEUE_SECRET_KEY_FILE") or DEFAULT_KEY_FILE)
        if not path.exists():
            key = Fernet.generate_key()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
        return cls(path.read_bytes().strip())

    def encrypt(self, secret: Secret | str) -> str:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> Secret:
        try:
            return Secret(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise SecretError(
                "a stored secret cannot be decrypted with this key (was JOBQUEUE_SECRET_KEY "
                "changed?); enter the secret again"
            ) from None
