"""Playwright driving Debian's Chromium against a live Skileez server in this process."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import require_service

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    available = Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None
    require_service("Chromium", available, f"{CHROMIUM} not found (apt-get install chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                 "--disable-component-update", "--disable-sync", "--no-first-run"],
    }


@pytest.fixture
def live_server(app):
    """Serve the test app on a free loopback port for the length of one test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def console_errors(page):
    """Collect browser console errors (a CSP violation shows up here)."""
    errors: list[str] = []
    expected = "the server responded with a status of 422"  # a form shown again with errors

    def on_console(message):
        if message.type == "error" and expected not in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot of what the test saw, for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_out(page) -> None:
    """Open the account menu and sign out, waiting for the menu to be open first.

    Clicking the toggle while the previous page is still settling can leave the
    menu closed; the click is repeated until Bootstrap shows it.
    """
    from playwright.sync_api import expect

    page.wait_for_load_state("load")
    menu = page.locator(".navbar .dropdown-menu")
    for _ in range(5):
        page.click(".navbar .dropdown-toggle")
        try:
            expect(menu).to_be_visible(timeout=2000)
            break
        except AssertionError:
            continue
    page.click("button:has-text('Sign out')")
