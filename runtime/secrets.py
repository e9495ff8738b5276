"""Secrets at rest: Fernet (AES-128-CBC + HMAC) from the cryptography package.

The key comes from JOBQUEUE_SECRET_KEY, else from the file JOBQUEUE_SECRET_KEY_FILE
(default `~/.config/jobqueue/jobqueue.key`, whatever the working directory),
created with mode 0600 when the first secret is stored so the embedded default
works on a fresh machine. A `Secret` never shows its value in a repr, a log line or an
error message.
"""

from __future__ import annotations

import hashlib
import hmac
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


def default_key_file(env: Mapping[str, str]) -> Path:
    """JOBQUEUE_SECRET_KEY_FILE, else `jobqueue/jobqueue.key` in the user's configuration
    folder ($XDG_CONFIG_HOME, else ~/.config): one place whatever the working directory."""
    if env.get("JOBQUEUE_SECRET_KEY_FILE"):
        return Path(env["JOBQUEUE_SECRET_KEY_FILE"]).expanduser().absolute()
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(config).expanduser().absolute() / "jobqueue" / DEFAULT_KEY_FILE


class SecretBox:
    """Encrypts and decrypts with one Fernet key.

    From the environment, a key file that does not exist yet is created when the
    first secret is stored, never when one is read: a stored secret with no key to
    read it is an error that names the file, not a silently new key.
    """

    def __init__(self, key: bytes | None, *, source: str = "JOBQUEUE_SECRET_KEY") -> None:
        self.source = source
        self._key = key
        self._fernet: Fernet | None = None if key is None else self._make(key, source)

    @staticmethod
    def _make(key: bytes, source: str) -> Fernet:
        try:
            return Fernet(key)
        except (ValueError, TypeError):
            raise SecretError(
                f"the key in {source} must be 32 url-safe base64-encoded bytes "
                "(make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())')"
            ) from None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecretBox:
        env = os.environ if env is None else env
        if env.get("JOBQUEUE_SECRET_KEY"):
            return cls(env["JOBQUEUE_SECRET_KEY"].encode())
        path = default_key_file(env)
        try:
            key = path.read_bytes().strip() if path.exists() else None
        except OSError as exc:
            raise SecretError(f"the key file {path} cannot be read: {exc.strerror}") from None
        return cls(key, source=f"the key file {path}")

    @property
    def key_file(self) -> Path | None:
        prefix = "the key file "
        return Path(self.source[len(prefix) :]) if self.source.startswith(prefix) else None

    def _for_writing(self) -> Fernet:
        if self._fernet is None:
            path = self.key_file
            assert path is not None  # only a box from a key file starts without a key
            self._key = _create_key_file(path)
            self._fernet = self._make(self._key, self.source)
        return self._fernet

    def derive(self, label: str) -> bytes:
        """A key of its own for another purpose (signing the console's session cookie),
        derived from this one, so one secret key serves both and neither reveals the other."""
        self._for_writing()
        assert self._key is not None
        return hmac.new(self._key, label.encode(), hashlib.sha256).digest()

    def encrypt(self, secret: Secret | str) -> str:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        return self._for_writing().encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> Secret:
        if self._fernet is None:
            raise SecretError(
                f"a stored secret cannot be decrypted: {self.source} does not exist (was it "
                "moved, or is JOBQUEUE_SECRET_KEY_FILE unset?); restore it or enter the "
                "secret again"
            )
        try:
            return Secret(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken:
            raise SecretError(
                f"a stored secret cannot be decrypted with {self.source} (was the key "
                "changed?); restore the key or enter the secret again"
            ) from None


def _create_key_file(path: Path) -> bytes:
    """A new key in a new file, mode 0600; if another process made it first, that one."""
    key = Fernet.generate_key()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(f"the key file {path} cannot be created: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
