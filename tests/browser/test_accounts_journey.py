"""A newcomer's first visit, end to end in a real browser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_out

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_context_args(browser_context_args):
    # The browser says it is in Los Angeles; registration should notice.
    return {**browser_context_args, "timezone_id": "America/Los_Angeles",
            "viewport": {"width": 1280, "height": 900}}


def test_register_bell_logout_login_and_change_time_zone(live_server, page, console_errors,
                                                        clock):
    clock.freeze(datetime(2026, 11, 24, 13, 0, tzinfo=UTC))
    page.goto(f"{live_server}/register")
    # The browser's zone is preselected by our own script.
    expect(page.locator("#timezone")).to_have_value("America/Los_Angeles")
    screenshot(page, "register")

    page.fill("#name", "Nora Student")
    page.fill("#email", "nora@example.com")
    page.fill("#password", "short")
    page.fill("#confirm", "short")
    page.click("button:has-text('Create account')")
    expect(page.locator(".invalid-feedback").first).to_contain_text("Use at least 10")

    page.fill("#password", "a long passphrase")
    page.fill("#confirm", "a long passphrase")
    page.click("button:has-text('Create account')")
    expect(page).to_have_url(f"{live_server}/dashboard")
    expect(page.locator("h1")).to_have_text("Hello, Nora")
    # Welcome notification in the bell, shown in the viewer's zone (LA: 05:00 PST).
    expect(page.locator("#notification-bell [data-unread-count]")).to_have_text("1")
    expect(page.get_by_text("It is Tue 24 Nov 2026, 05:00 PST.")).to_be_visible()
    screenshot(page, "dashboard-student")

    page.click("#notification-bell")
    expect(page.locator(".notification")).to_contain_text("Welcome to Skileez!")
    page.click("button:has-text('Mark read')")  # htmx swaps the item and the bell
    expect(page.locator(".notification .badge")).to_have_text("Read")
    expect(page.locator("#notification-bell [data-unread-count]")).to_have_count(0)
    screenshot(page, "notifications")

    sign_out(page)
    expect(page.get_by_text("You have been signed out.")).to_be_visible()

    page.goto(f"{live_server}/login")
    page.fill("#email", "NORA@example.com")
    page.fill("#password", "a long passphrase")
    screenshot(page, "login")
    page.click("button:has-text('Sign in')")
    expect(page).to_have_url(f"{live_server}/dashboard")

    page.goto(f"{live_server}/profile")
    expect(page.get_by_test_id("local-now")).to_have_text("Tue 24 Nov 2026, 05:00 PST")
    page.select_option("#timezone", "Asia/Tokyo")
    page.click("button:has-text('Save profile')")
    expect(page.get_by_text("Times are now shown in Asia/Tokyo")).to_be_visible()
    expect(page.get_by_test_id("local-now")).to_have_text("Tue 24 Nov 2026, 22:00 JST")
    screenshot(page, "profile")
    assert console_errors == []


def test_admin_users_page_search_and_deactivate(live_server, page, console_errors,
                                                make_user):
    make_user("admin", email="root@example.com", name="Root Admin")
    make_user(name="Ana Lopez", email="ana@example.com")
    make_user("coach", name="Bruno Coach", email="bruno@example.com")
    page.goto(f"{live_server}/login")
    page.fill("#email", "root@example.com")
    page.fill("#password", "correct horse battery")
    page.click("button:has-text('Sign in')")
    page.goto(f"{live_server}/admin/users")
    expect(page.locator("#users-table tbody tr")).to_have_count(3)
    screenshot(page, "admin-users")

    page.fill("#user-search", "bruno")  # htmx filters as you type
    expect(page.locator("#users-table tbody tr")).to_have_count(1)
    expect(page).to_have_url(f"{live_server}/admin/users?q=bruno&role=&status=")

    page.click("text=Deactivate…")
    expect(page.locator("h1")).to_have_text("Deactivate Bruno Coach?")
    page.fill("#reason", "Test account")
    page.click("button:has-text('Yes, deactivate the account')")
    expect(page.get_by_text("Bruno Coach's account has been deactivated")).to_be_visible()
    page.goto(f"{live_server}/admin/")
    screenshot(page, "admin-overview")
    page.goto(f"{live_server}/admin/mail")
    screenshot(page, "admin-mail")
    assert console_errors == []
