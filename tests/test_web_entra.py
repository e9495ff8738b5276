"""Issue 16: signing in to the console with Microsoft Entra ID (OpenID Connect
authorization code with PKCE through MSAL) against the identity platform emulator;
roles come from the token's app roles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from jobs.microsoft.http import tls
from jobs.microsoft.identity import UserSignIn
from runtime.secrets import Secret
from runtime.settings import Settings
from sandbox.identity import IdentityEmulator

TENANT, CLIENT_ID, SECRET = "contoso.onmicrosoft.com", "0c0c0c0c-0000-4000-8000-0000000000aa", "s3"


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[IdentityEmulator]:
    with IdentityEmulator(tmp_path, TENANT, CLIENT_ID, SECRET) as emulator:
        emulator.add_person("otto@contoso.com", "Otto", ["JobQueue.Operator"])
        emulator.add_person("nora@contoso.com", "Nora", [])
        yield emulator


@pytest.fixture
def console(settings: Settings, engine: Any, identity: IdentityEmulator) -> TestClient:
    from admin.web.app import create_web_app

    entra = UserSignIn(TENANT, CLIENT_ID, Secret(SECRET), authority_host=identity.base,
                       verify=identity.ca_file)  # fmt: skip
    return TestClient(create_web_app(settings, engine, entra=entra), follow_redirects=False)


def through_microsoft(console: TestClient, identity: IdentityEmulator) -> httpx.Response:
    """The browser's round trip: to the authorize endpoint and back to the callback."""
    start = console.get("/login/entra")
    assert start.status_code == 303
    authorize = start.headers["location"]
    assert authorize.startswith(f"{identity.authority}/oauth2/v2.0/authorize?")
    with httpx.Client(verify=tls(identity.ca_file)) as browser:
        back = browser.get(authorize)
    assert back.status_code == 302
    target = urlsplit(back.headers["location"])
    assert target.path == "/login/entra/callback"
    return console.get(f"{target.path}?{target.query}")


def test_a_person_signs_in_with_microsoft_and_gets_the_role_of_their_app_role(
    console: TestClient, identity: IdentityEmulator
) -> None:
    assert "Sign in with Microsoft" in console.get("/login").text
    identity.signed_in = "otto@contoso.com"
    answer = through_microsoft(console, identity)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    page = console.get("/entries").text
    assert "otto@contoso.com (operator)" in page
    assert console.get("/entries/new").status_code == 403  # an operator adds no entries


def test_no_app_role_or_no_sign_in_is_refused_with_the_reason(
    console: TestClient, identity: IdentityEmulator
) -> None:
    identity.signed_in = "nora@contoso.com"
    answer = through_microsoft(console, identity)
    assert answer.status_code == 403 and "has no role in this application" in answer.text
    assert console.get("/entries").status_code == 303  # still signed out
    identity.signed_in = None
    refused = through_microsoft(console, identity)
    assert refused.status_code == 401 and "login_required" in refused.text
    replayed = console.get("/login/entra/callback?code=x&state=y")
    assert replayed.status_code == 400 and "start again" in replayed.text


def test_entra_sign_in_is_configured_by_three_variables_or_none() -> None:
    from admin.web.app import entra_from_env

    settings = Settings(database_url="sqlite://")
    assert entra_from_env({}, settings) is None
    with pytest.raises(ValueError, match="JOBQUEUE_ENTRA_CLIENT_SECRET is not set"):
        entra_from_env({"JOBQUEUE_ENTRA_TENANT": "t", "JOBQUEUE_ENTRA_CLIENT_ID": "c"}, settings)


def test_the_console_inside_run_offers_microsoft_sign_in_too(
    settings: Settings, engine: Any, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jobqueue run` and the demo serve the console as `jobqueue web` does."""
    from admin.processes import WebThread

    for name, value in (("TENANT", TENANT), ("CLIENT_ID", CLIENT_ID), ("CLIENT_SECRET", SECRET),
                        ("AUTHORITY_HOST", identity.base)):  # fmt: skip
        monkeypatch.setenv(f"JOBQUEUE_ENTRA_{name}", value)
    from dataclasses import replace

    thread = WebThread(replace(settings, ca_file=identity.ca_file), engine, port=0)
    client = TestClient(thread.server.config.app)
    assert "Sign in with Microsoft" in client.get("/login").text
