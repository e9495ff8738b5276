"""Issue 16 in a real browser: Playwright driving Debian's chromium against the web
process (uvicorn on a free port, the embedded SQLite database). Screenshots go to the
test's temporary directory."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from domain.clock import utcnow
from domain.db import make_engine, make_session_factory
from domain.migrations import upgrade
from domain.queue import entries as ops
from domain.users.accounts import add_user
from domain.users.models import Role
from runtime.settings import Settings
from tests.helpers import add, entry

PASSWORD = "correct horse battery"
CHROMIUM = os.environ.get("JOBQUEUE_TEST_CHROMIUM", "/usr/bin/chromium")
# As the machine notes say: headless, no sandbox as root, and nothing that calls home.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    url: str
    sessions: Any
    settings: Settings


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    from admin.web.app import create_web_app

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'web.db'}")
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        add_user(session, "ada", Role.ADMIN, PASSWORD, utcnow())
        add_user(session, "vic", Role.VIEWER, PASSWORD, utcnow())
    add(sessions, settings, "NIGHTLY", "noop", description="<script>alert(1)</script>",
        recurring=True, minutes_between_runs=60)  # fmt: skip
    add(sessions, settings, "HOURLY", "noop", description="every hour")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_web_app(settings, engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(100):
        if server.started:
            break
        deadline.wait(0.05)
    assert server.started, "the web process did not start"
    yield Site(f"http://127.0.0.1:{port}", sessions, settings)
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package"
    )
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


def sign_in(page: Page, site: Site, name: str) -> None:
    page.goto(f"{site.url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("header .me")).to_contain_text(name)


def test_an_admin_filters_edits_and_watches_statuses_live(
    site: Site, browser: Browser, tmp_path: Path
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, site, "ada")
    page.goto(f"{site.url}/entries")
    expect(page.locator("td", has_text="<script>alert(1)</script>")).to_have_count(1)  # as text
    page.fill("input[name=q]", "hour")
    page.click("form.filters button")
    expect(page.locator("tbody tr")).to_have_count(1)

    page.goto(f"{site.url}/entries")
    page.evaluate("window.__notReloaded = true")
    status = page.locator('tr[data-code="HOURLY"] td.status')
    expect(status).to_have_text("Ready")
    card = browser.new_page()  # the admin's second tab holds the entry on its card
    sign_in(card, site, "ada")
    card.goto(f"{site.url}/entries/HOURLY")
    card.click("button[value=hold]")
    expect(status).to_have_text("On Hold", timeout=1500)  # live in the first tab, no reload
    card.click("button[value=ready]")
    expect(status).to_have_text("Ready", timeout=1500)
    with site.sessions.begin() as session:  # a change made elsewhere shows up too
        ops.set_on_hold(session, "HOURLY")
    expect(status).to_have_text("On Hold", timeout=1500)
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(tmp_path / "entries.png"), full_page=True)

    page.goto(f"{site.url}/entries/NIGHTLY")
    page.fill("input[name=window]", "08:00-10:00")
    page.fill("input[name=weekdays]", "mon-fri")
    expect(page.locator("#preview li")).to_have_count(5)  # the next five runs as typed
    page.fill("input[name=window]", "25:00-06:00")
    page.click("form.card button[type=submit]")
    expect(page.locator("#error")).to_contain_text("must look like 08:00-18:00")
    assert entry(site.sessions, "NIGHTLY").starting_time is None  # nothing changed
    page.screenshot(path=str(tmp_path / "entry-error.png"), full_page=True)

    page.click("button[value=run-now]")
    expect(page.locator("table.audit")).to_contain_text("ada")
    # No CSP violation or script error; the one failed load is the refused form (422).
    assert [e for e in errors if "status of 422" not in e] == []


def test_a_viewer_sees_no_way_to_change_anything(site: Site, browser: Browser) -> None:
    page = browser.new_page()
    sign_in(page, site, "vic")
    page.goto(f"{site.url}/entries/HOURLY")
    expect(page.locator("div.actions")).to_have_count(0)
    expect(page.locator("form.card input[name=window]")).to_be_disabled()
    expect(page.locator("form.card button[type=submit]")).to_have_count(0)
    answer = page.request.post(f"{site.url}/entries/HOURLY/actions/hold", form={"x": "1"})
    assert answer.status == 403
