"""Secrets are encrypted at rest and never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from runtime.secrets import Secret, SecretBox, SecretError


def test_round_trip_and_ciphertext_hides_the_value() -> None:
    box = SecretBox(Fernet.generate_key())
    token = box.encrypt("s3cr3t-password")
    assert "s3cr3t" not in token
    assert box.decrypt(token).reveal() == "s3cr3t-password"


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret!r} {secret}"


def test_a_wrong_key_gives_a_clear_error_without_the_secret() -> None:
    token = SecretBox(Fernet.generate_key()).encrypt("hunter2")
    with pytest.raises(SecretError, match="cannot be decrypted") as raised:
        SecretBox(Fernet.generate_key()).decrypt(token)
    assert "hunter2" not in str(raised.value)


def test_a_malformed_key_is_refused_clearly() -> None:
    with pytest.raises(SecretError, match="32 url-safe base64"):
        SecretBox(b"not a key")


def test_the_embedded_default_creates_a_private_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "jobqueue.key"
    box = SecretBox.from_env({"JOBQUEUE_SECRET_KEY_FILE": str(key_file)})
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    again = SecretBox.from_env({"JOBQUEUE_SECRET_KEY_FILE": str(key_file)})
    assert again.decrypt(box.encrypt("x")).reveal() == "x"
