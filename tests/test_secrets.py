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
    token = box.encrypt("first secret")  # the key is made when the first secret is stored
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert SecretBox.from_env({"JOBQUEUE_SECRET_KEY_FILE": str(key_file)}).decrypt(token)
    again = SecretBox.from_env({"JOBQUEUE_SECRET_KEY_FILE": str(key_file)})
    assert again.decrypt(box.encrypt("x")).reveal() == "x"


def test_the_default_key_file_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"HOME": str(tmp_path / "home")}
    token = SecretBox.from_env(env).encrypt("hunter2")
    key_file = tmp_path / "home" / ".config" / "jobqueue" / "jobqueue.key"
    assert key_file.exists()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        assert SecretBox.from_env(env).decrypt(token).reveal() == "hunter2"
        assert not (tmp_path / folder / "jobqueue.key").exists()
    xdg = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    SecretBox.from_env(xdg).encrypt("x")
    assert (tmp_path / "xdg" / "jobqueue" / "jobqueue.key").exists()


def test_a_missing_key_file_is_an_error_naming_it_never_a_new_key(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "jobqueue.key"
    env = {"JOBQUEUE_SECRET_KEY_FILE": str(key_file)}
    token = SecretBox.from_env(env).encrypt("hunter2")
    key_file.unlink()
    with pytest.raises(SecretError, match=str(key_file)) as raised:
        SecretBox.from_env(env).decrypt(token)
    assert "does not exist" in str(raised.value) and "hunter2" not in str(raised.value)
    assert not key_file.exists()  # reading made no new key


def test_a_wrong_key_file_is_named_in_the_error(tmp_path: Path) -> None:
    token = SecretBox(Fernet.generate_key()).encrypt("hunter2")
    key_file = tmp_path / "other.key"
    key_file.write_bytes(Fernet.generate_key())
    with pytest.raises(SecretError, match="cannot be decrypted with the key file") as raised:
        SecretBox.from_env({"JOBQUEUE_SECRET_KEY_FILE": str(key_file)}).decrypt(token)
    assert str(key_file) in str(raised.value)
